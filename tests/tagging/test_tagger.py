"""The tagging pipeline on music clips with a tiny real model: windows, aggregation, streaming, errors.

The clips: generated ones always, the real ones of ../shared/audio too when present (`music_dir`).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from orpheus.tagging import tagger as tagging
from orpheus.tagging import inputs
from orpheus.audio.decode import load_audio
from orpheus.errors import ConfigError, MissingInputError
from orpheus.audio.features import compute_features
from orpheus.audio.windows import cut_windows, normalise_windows, window_starts
from tests.fixtures_tagging import link_clips, tiny_run_dir  # noqa: F401  (fixture)

CLIPS = ["asc_frontiers.ogg", "fof_armygeddon_mix.ogg"]


@pytest.fixture(scope="module")
def tagger(tiny_run_dir):  # noqa: F811
    return tagging.TaggingEngine(tiny_run_dir, embeddings=True, batch_size=16)


def reference_scores(tagger, path, hop_frames=None):
    """The whole-file path spelled out: decode, features, cut_windows, normalise, model, mean."""
    samples, _ = load_audio(path, 16000)
    windows = cut_windows(compute_features(samples, tagger.settings), tagger.window_frames, hop_frames)
    probs = np.asarray(tagger.model(normalise_windows(windows, tagger.info), training=False))
    return probs


def test_list_audio_files_recursive_sorted(tmp_path, music_dir):
    link_clips(music_dir, tmp_path / "b", [CLIPS[0]])
    link_clips(music_dir, tmp_path / "a" / "deep", [CLIPS[1]])
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "Z.WAV").write_bytes(b"")
    files = inputs.list_audio_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["Z.WAV", f"a/deep/{CLIPS[1]}", f"b/{CLIPS[0]}"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no mp3/ogg/opus/flac/wav"):
        inputs.list_audio_files(tmp_path / "empty")
    with pytest.raises(MissingInputError, match="no such file"):
        inputs.list_audio_files(tmp_path / "missing")


@pytest.mark.parametrize("n_frames,width,hop,block", [(1000, 187, 187, 64), (1000, 187, 94, 1000), (150, 187, 187, 40),
                                                      (187, 187, 187, 10), (2000, 100, 33, 333), (561, 187, 187, 187)])
def test_windows_from_blocks_matches_cut_windows(n_frames, width, hop, block):
    features = np.random.default_rng(n_frames).normal(size=(n_frames, 3)).astype(np.float32)
    blocks = [features[i:i + block] for i in range(0, n_frames, block)]
    pieces = list(tagging.windows_from_blocks(blocks, width, hop))
    windows = np.concatenate([w for w, _ in pieces])
    starts = np.concatenate([s for _, s in pieces])
    np.testing.assert_array_equal(starts, window_starts(max(n_frames, width), width, hop))
    np.testing.assert_array_equal(windows, cut_windows(features, width, hop))


def test_track_score_is_mean_of_window_scores(tagger, music_dir):
    path = music_dir / CLIPS[0]
    result = next(tagger.tag_files([path], quiet=True))
    expected = reference_scores(tagger, path)
    assert result.error is None and result.window_scores.shape == (4, 6)  # 10 s -> 3 + 1 end-aligned windows
    np.testing.assert_allclose(result.window_scores, expected, atol=1e-5)
    np.testing.assert_allclose(result.scores, expected.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(result.window_start_s, window_starts(626, 187) * 256 / 16000)
    assert result.embeddings.shape == (4, 16) and result.embeddings.dtype == np.float32


def test_max_aggregation_and_hop(tiny_run_dir, music_dir):  # noqa: F811
    path = music_dir / CLIPS[1]
    mean = next(tagging.TaggingEngine(tiny_run_dir).tag_files([path], quiet=True))
    max_tagger = tagging.TaggingEngine(tiny_run_dir, aggregate="max", hop_s=1.5)
    top = next(max_tagger.tag_files([path], quiet=True))
    expected = reference_scores(max_tagger, path, hop_frames=94)
    assert top.window_scores.shape[0] == len(window_starts(626, 187, 94)) == 6  # 0, 94, ..., 376 and 439
    np.testing.assert_allclose(top.scores, expected.max(axis=0), atol=1e-5)
    assert not np.allclose(top.scores, mean.scores)
    with pytest.raises(ConfigError, match="aggregate"):
        tagging.TaggingEngine(tiny_run_dir, aggregate="median")


def test_longer_window_on_free_time_axis(tiny_run_dir, music_dir):  # noqa: F811
    result = next(tagging.TaggingEngine(tiny_run_dir, window_s=6.0).tag_files([music_dir / CLIPS[0]], quiet=True))
    assert result.window_scores.shape == (2, 6)  # 375 frames per window over 626 -> starts 0 and 251
    np.testing.assert_allclose(result.window_start_s, [0, 251 * 256 / 16000])


def test_folder_in_pool_keeps_order_and_reports_bad_file(tagger, tmp_path, music_dir):
    links = link_clips(music_dir, tmp_path, CLIPS)
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"\x00" * 1000)
    files = inputs.list_audio_files(tmp_path)
    results = list(tagger.tag_files(files, jobs=2, quiet=True))
    assert [r.file for r in results] == [str(f) for f in files] == [str(links[0]), str(bad), str(links[1])]
    assert results[1].error is not None and "broken.mp3" in results[1].error and results[1].scores is None
    for result, link in zip((results[0], results[2]), links):
        np.testing.assert_allclose(result.scores, reference_scores(tagger, link).mean(axis=0), atol=1e-5)


def test_stream_features_equal_whole_file(tagger, music_dir):
    path = music_dir / CLIPS[1]
    whole = compute_features(load_audio(path, 16000)[0], tagger.settings)
    blocks = list(inputs.stream_features(path, tagger.settings, block_s=1.3))
    assert len(blocks) > 4
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=2e-3)


def test_long_file_streams_in_bounded_memory(tiny_run_dir, tmp_path):  # noqa: F811
    """A 6-minute file tagged in 20 s blocks: Python-side peak far below the whole decoded signal."""
    rate, seconds = 16000, 360
    path = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        for minute in range(seconds // 60):
            t = np.arange(60 * rate) / rate
            f.write((0.3 * np.sin(2 * np.pi * (220 + 40 * minute) * t) + 0.05 * rng.normal(size=t.size)) / 1.5)
    tagger = tagging.TaggingEngine(tiny_run_dir)

    def peak_of(**kwargs):
        tracemalloc.start()
        try:
            result = next(tagger.tag_files([path], quiet=True, **kwargs))
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    streamed, stream_peak = peak_of(stream_threshold_s=60, block_s=20)
    whole, whole_peak = peak_of()
    # the streamed peak is the feature code's fixed working set plus one block, whatever the length
    print(f"peaks: streamed {stream_peak / 1e6:.1f} MB, whole {whole_peak / 1e6:.1f} MB")
    assert stream_peak < whole_peak / 2 and stream_peak < seconds * rate * 4, (stream_peak, whole_peak)
    assert streamed.window_scores.shape == whole.window_scores.shape == (len(window_starts(22501, 187)), 6)
    np.testing.assert_allclose(streamed.window_scores, whole.window_scores, atol=1e-4)


def test_worker_side_imports_no_tensorflow():
    """Pool workers unpickle `decode_features` from this module: it must not pull in TensorFlow."""
    import subprocess
    import sys
    code = "import sys, orpheus.tagging.tagger; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2])).stdout
    assert out.split() == ["False", "False"]


def test_file_shorter_than_a_window_gets_one_padded_window(tagger, tmp_path):
    short = tmp_path / "click.wav"
    sf.write(str(short), np.zeros(100, np.float32), 16000)  # 1 frame of 187
    result = next(tagger.tag_files([short], quiet=True))
    assert result.error is None and result.window_scores.shape == (1, 6)
    np.testing.assert_allclose(result.scores, reference_scores(tagger, short)[0], atol=1e-6)
