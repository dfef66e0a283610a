"""Tests of the tagged-music synthesiser: shapes, determinism, no silences, and that tags are audible."""

from __future__ import annotations

import numpy as np
import pytest

from msd.miniature import music_synth
from tests.fixtures_audio import longest_silence_s

SAMPLE_RATE = 16000


def _log_mel(audio: np.ndarray) -> np.ndarray:
    """float32 [n_samples, 2] at 16 kHz -> log-mel float [96, n_frames], as the models see it."""
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(y=audio.mean(axis=1), sr=SAMPLE_RATE, n_fft=512, hop_length=256, n_mels=96)
    return librosa.power_to_db(mel, ref=np.max)


def test_render_track_shape_range_and_determinism():
    audio = music_synth.render_track(["rock", "male"], seed=3, duration_s=2.5, sample_rate=SAMPLE_RATE)
    assert audio.shape == (40000, 2) and audio.dtype == np.float32
    assert np.all(np.abs(audio) <= 1.0) and np.abs(audio).max() > 0.3
    assert not np.allclose(audio[:, 0], audio[:, 1])  # a real stereo mix
    again = music_synth.render_track(["rock", "male"], seed=3, duration_s=2.5, sample_rate=SAMPLE_RATE)
    other = music_synth.render_track(["rock", "male"], seed=4, duration_s=2.5, sample_rate=SAMPLE_RATE)
    assert np.array_equal(audio, again)
    assert not np.allclose(audio, other)


def test_render_track_rejects_unknown_tags_and_bad_lengths():
    with pytest.raises(ValueError, match="unknown tags"):
        music_synth.render_track(["polka"], seed=0, duration_s=1)
    with pytest.raises(ValueError, match="positive"):
        music_synth.render_track(["rock"], seed=0, duration_s=0)


def test_recipe_tables_are_consistent():
    assert set(music_synth.TAG_RECIPES) == set(music_synth.TAGS)
    assert len(music_synth.TAGS) == 16 and "hip hop" in music_synth.TAGS
    for tag, recipe in music_synth.TAG_RECIPES.items():
        assert set(recipe.instruments) <= set(music_synth.INSTRUMENTS), tag
        assert recipe.drums is None or recipe.drums in music_synth.DRUM_STYLES or recipe.drums == "gated_snare"
        assert (recipe.tempo_bpm is not None) == (recipe.kind == "genre"), tag
    for style in music_synth.DRUM_STYLES.values():
        assert all(p.shape == (music_synth.STEPS_PER_BAR,) for p in style.values())


def test_draw_tags_is_realistic_and_seeded():
    rng = np.random.default_rng(0)
    drawn = [music_synth.draw_tags(rng) for _ in range(400)]
    assert drawn[:20] == [music_synth.draw_tags(r) for r in [np.random.default_rng(0)] for _ in range(20)]
    for tags in drawn:
        assert 1 <= sum(t in music_synth.GENRES for t in tags) <= 2
        assert sum(t in ("female", "male", "instrumental") for t in tags) == 1  # a voice has a gender
        assert "rap" not in tags or "instrumental" not in tags
    flat = [t for tags in drawn for t in tags]
    assert set(flat) == set(music_synth.TAGS)  # every tag occurs
    assert not any("classical" in tags and ("male" in tags or "female" in tags) for tags in drawn)


@pytest.mark.parametrize("tags", [[g, "instrumental"] for g in music_synth.GENRES]
                         + [["female"], ["rap", "male", "90s"], ["jazz", "80s", "male"]])
def test_no_long_silence_in_any_genre(tags):
    audio = music_synth.render_track(tags, seed=11, duration_s=6.0, sample_rate=SAMPLE_RATE)
    assert longest_silence_s(audio, SAMPLE_RATE) < 0.1


def test_tempo_and_low_end_follow_the_genre():
    """Simple statistics: metal is denser in onsets than classical; hip hop has more sub-100 Hz energy than folk."""
    librosa = pytest.importorskip("librosa")

    def onset_rate(tags):
        audio = music_synth.render_track(tags, seed=5, duration_s=6.0, sample_rate=SAMPLE_RATE).mean(axis=1)
        return len(librosa.onset.onset_detect(y=audio, sr=SAMPLE_RATE)) / 6.0

    def low_share(tags):
        audio = music_synth.render_track(tags, seed=5, duration_s=6.0, sample_rate=SAMPLE_RATE).mean(axis=1)
        power = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
        return power[freqs < 100].sum() / power.sum()

    assert onset_rate(["metal", "instrumental"]) > 2 * onset_rate(["classical", "instrumental"])
    assert low_share(["hip hop", "instrumental"]) > 3 * low_share(["folk", "instrumental"])


def test_tags_are_audible_to_a_linear_model_on_log_mel():
    """A logistic regression on mean/std log-mel bands of rendered tracks separates every tag on held-out renders."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    vocals = (["female"], ["male"], ["instrumental"], ["rap", "male"], ["female"], ["instrumental"])
    tag_sets = []
    for i in range(66):
        genre = music_synth.GENRES[i % len(music_synth.GENRES)]
        vocal = ["instrumental"] if genre == "classical" else vocals[(i // len(music_synth.GENRES) + i) % len(vocals)]
        tag_sets.append([genre] + vocal)
    features, labels = [], []
    for i, tags in enumerate(tag_sets):
        mel = _log_mel(music_synth.render_track(tags, seed=100 + i, duration_s=6.0, sample_rate=SAMPLE_RATE))
        features.append(np.concatenate([mel.mean(axis=1), mel.std(axis=1)]))
        labels.append([t in tags for t in music_synth.TAGS])
    x, y = np.array(features), np.array(labels)
    train, test = np.arange(len(x)) < 44, np.arange(len(x)) >= 44
    x = (x - x[train].mean(axis=0)) / (x[train].std(axis=0) + 1e-6)
    aucs = {}
    for j, tag in enumerate(music_synth.TAGS):
        if y[train, j].sum() < 2 or not 0 < y[test, j].sum() < test.sum():
            continue
        model = LogisticRegression(C=0.1, max_iter=2000).fit(x[train], y[train, j])
        aucs[tag] = roc_auc_score(y[test, j], model.decision_function(x[test]))
    assert set(music_synth.GENRES) | {"female", "male", "instrumental"} <= set(aucs)
    assert min(aucs.values()) > 0.8, aucs
    assert np.mean(list(aucs.values())) > 0.9, aucs
