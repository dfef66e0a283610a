import json

import librosa
import numpy as np
import pandas as pd
import pytest

from msd import silence
from tests.fixtures_msd import SAMPLE_RATE, interrupt_after, noise, track_id, write_mp3

HOP_S = silence.HOP_LENGTH / SAMPLE_RATE
FRAME_S = silence.FRAME_LENGTH / SAMPLE_RATE


def with_silences(rng, layout):
    """layout: list of (seconds, loud?) -> float32 mono."""
    return np.concatenate([noise(s, rng) if loud else np.zeros(int(s * SAMPLE_RATE), np.float32)
                           for s, loud in layout])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_librosa_split(seed):
    rng = np.random.default_rng(seed)
    audio = with_silences(rng, [(0.3, False), (1.0, True), (0.5, False), (0.7, True), (0.2, False)])
    audio[30000:40000] *= 10 ** (-rng.uniform(40, 80) / 20)  # a quiet stretch near the threshold
    audio = audio[: len(audio) - int(rng.integers(0, 511))]
    np.testing.assert_allclose(silence.frame_rms(audio), librosa.feature.rms(y=audio)[0], atol=1e-6)
    np.testing.assert_array_equal(silence.non_silent_intervals(audio), librosa.effects.split(audio, top_db=60))


def test_threshold_is_60_db_below_the_loudest_frame():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    loud = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    quiet_55 = loud * 10 ** (-55 / 20)
    quiet_65 = loud * 10 ** (-65 / 20)
    audio = np.concatenate([loud, quiet_55, quiet_65]).astype(np.float32)
    intervals = silence.non_silent_intervals(audio) / SAMPLE_RATE
    assert len(intervals) == 1
    assert intervals[0, 0] == 0 and intervals[0, 1] == pytest.approx(2.0, abs=FRAME_S)


def test_statistics_of_known_silences():
    rng = np.random.default_rng(0)
    # 1 s lead silence, 2 s sound, 1.5 s gap, 1 s sound, 0.5 s gap, 2 s sound, 1 s tail silence
    audio = with_silences(rng, [(1, False), (2, True), (1.5, False), (1, True), (0.5, False), (2, True), (1, False)])
    stats = silence.analyse_audio(audio, SAMPLE_RATE)
    tol = FRAME_S  # centred frames reach half a frame into the silence on each side
    assert stats["audio_start"] == pytest.approx(1.0, abs=tol)
    assert stats["audio_end"] == pytest.approx(8.0, abs=tol)
    assert stats["effective_clip_length"] == pytest.approx(7.0, abs=2 * tol)
    assert stats["non_silence_length"] == pytest.approx(5.0, abs=6 * tol)
    assert stats["mid_silence_length"] == pytest.approx(2.0, abs=6 * tol)
    assert stats["max_silence_length"] == pytest.approx(1.5, abs=2 * tol)
    assert stats["silence_percentage"] == pytest.approx(100 * stats["mid_silence_length"]
                                                        / stats["effective_clip_length"])
    intervals = json.loads(stats["non_silent_intervals"])
    assert len(intervals) == 3 and all(len(pair) == 2 for pair in intervals)
    assert intervals[1][0] == pytest.approx(4.5, abs=tol)


def test_statistics_without_gaps_and_empty():
    stats = silence.silence_stats(np.array([[0.5, 3.0]]))
    assert stats["max_silence_length"] == 0 and stats["mid_silence_length"] == 0
    assert stats["effective_clip_length"] == 2.5 and stats["silence_percentage"] == 0
    assert silence.silence_stats(np.zeros((0, 2)))["effective_clip_length"] == 0


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    """ok: 6 s of sound; gappy: a 2 s gap; gaps: four 0.9 s gaps; short: 2 s; corrupt; tiny."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("silence") / "audio"
    layouts = {
        "ok": [(6, True)],
        "gappy": [(2, True), (2, False), (3, True)],
        "gaps": [(1, True), (0.9, False)] * 4 + [(1, True)],
        "short": [(2, True)],
    }
    rows = []
    for i, (name, layout) in enumerate(layouts.items(), 1):
        rel = f"{i}/{name}.clip.mp3"
        write_mp3(root / rel, with_silences(rng, layout))
        rows.append((track_id(i), f"AR{i:016d}", rel, (root / rel).stat().st_size, name))
    (root / "9").mkdir()
    (root / "9" / "corrupt.clip.mp3").write_bytes(rng.bytes(30_000))
    rows.append((track_id(9), "AR9", "9/corrupt.clip.mp3", 30_000, "corrupt"))
    table = pd.DataFrame(rows, columns=["track_id", "artist_id", "file_path", "file_size", "name"])
    table.to_csv(root.parent / "wrangle.csv", index=False)
    return root, table


def test_filters_and_reasons(tracks, tmp_path, capsys):
    root, table = tracks
    out = tmp_path / "ultimate.csv"
    args = [str(root.parent / "wrangle.csv"), str(out), "--root-dir", str(root), "--quiet", "--jobs", "1",
            "--filter-trim-length", "5", "--filter-tot-silence", "3", "--filter-max-silence", "1"]
    assert silence.main(args) == 0
    kept = pd.read_csv(out)
    assert kept["name"].tolist() == ["ok"]
    assert list(kept.columns[:3]) == ["track_id", "artist_id", "mp3_path"]
    assert kept.columns[-8:].tolist() == silence.ANALYSIS_COLUMNS
    assert kept["mp3_path"].tolist() == kept["file_path"].tolist()
    dropped = pd.read_csv(tmp_path / "ultimate.dropped.csv").set_index("name")["reason"]
    assert dropped["gappy"] == "long_silence" and dropped["short"] == "too_short"
    assert dropped["gaps"] == "too_much_silence"
    assert dropped["corrupt"].startswith("decode_failed: ") and "corrupt.clip.mp3" in dropped["corrupt"]
    assert "decode_failed" in capsys.readouterr().out


def test_no_filters_keeps_all_decodable_and_min_size_is_strict(tracks, tmp_path):
    root, table = tracks
    kept, dropped = silence.run(root.parent / "wrangle.csv", tmp_path / "all.csv", root_dir=root, quiet=True)
    assert sorted(kept["name"]) == ["gappy", "gaps", "ok", "short"] and dropped["name"].tolist() == ["corrupt"]
    gappy = kept.set_index("name").loc["gappy"]
    assert gappy["max_silence_length"] == pytest.approx(2.0, abs=0.1)
    assert len(json.loads(gappy["non_silent_intervals"])) == 2
    size = int(table.set_index("name").loc["ok", "file_size"])
    kept, dropped = silence.run(root.parent / "wrangle.csv", tmp_path / "strict.csv", root_dir=root, quiet=True,
                                filters=silence.Filters(min_size=size))
    assert "ok" in set(dropped.loc[dropped["reason"] == "too_small", "name"])
    kept, _ = silence.run(root.parent / "wrangle.csv", tmp_path / "strict2.csv", root_dir=root, quiet=True,
                          filters=silence.Filters(min_size=size - 1))
    assert "ok" in set(kept["name"])


def test_analysed_input_is_not_decoded_again(tracks, tmp_path):
    root, _ = tracks
    first, _ = silence.run(root.parent / "wrangle.csv", tmp_path / "analysed.csv", root_dir=root, quiet=True)
    empty_root = tmp_path / "no_audio"
    empty_root.mkdir()  # the files are gone: any decoding would fail
    again, dropped = silence.run(tmp_path / "analysed.csv", tmp_path / "filtered.csv", root_dir=empty_root,
                                 quiet=True, filters=silence.Filters(trim_length_s=5))
    assert dropped["reason"].tolist() == ["too_short"]
    pd.testing.assert_frame_equal(again, first[first["name"] != "short"].reset_index(drop=True))


def test_parallel_jobs_give_identical_output(tracks, tmp_path):
    root, _ = tracks
    one, _ = silence.run(root.parent / "wrangle.csv", tmp_path / "a.csv", root_dir=root, quiet=True, jobs=1)
    two, _ = silence.run(root.parent / "wrangle.csv", tmp_path / "b.csv", root_dir=root, quiet=True, jobs=2)
    pd.testing.assert_frame_equal(one, two)


def test_bad_input_one_line(tmp_path, capsys):
    (tmp_path / "w.csv").write_text("a,b\n1,2\n")
    assert silence.main([str(tmp_path / "w.csv"), str(tmp_path / "u.csv"), "--root-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "w.csv" in err[0] and "missing columns" in err[0]
    assert silence.main([str(tmp_path / "none.csv"), str(tmp_path / "u.csv"), "--root-dir", str(tmp_path)]) == 1
    assert "none.csv" in capsys.readouterr().err


def test_interrupted_run_resumes_from_its_log(tracks, tmp_path, monkeypatch):
    root, _ = tracks
    work_root = tmp_path / "audio"
    import shutil
    shutil.copytree(root, work_root)
    real, calls = interrupt_after(monkeypatch, silence, "analyse_file")
    with pytest.raises(KeyboardInterrupt):
        silence.run(root.parent / "wrangle.csv", tmp_path / "u.csv", root_dir=work_root, quiet=True, jobs=1)
    assert not (tmp_path / "u.csv").exists() and silence.partial_path(tmp_path / "u.csv").is_file()
    for path in calls:  # the finished tracks are gone: decoding them again would fail
        (work_root / path[len(str(work_root)) + 1:]).write_bytes(b"")
    monkeypatch.setattr(silence, "analyse_file", real)
    kept, dropped = silence.run(root.parent / "wrangle.csv", tmp_path / "u.csv", root_dir=work_root, quiet=True,
                                jobs=1)
    reference, _ = silence.run(root.parent / "wrangle.csv", tmp_path / "ref.csv", root_dir=root, quiet=True, jobs=1)
    pd.testing.assert_frame_equal(kept, reference)
    assert dropped["name"].tolist() == ["corrupt"]
    assert not silence.partial_path(tmp_path / "u.csv").exists()
