"""tfrecords/preprocessing.py on a tiny corpus in the real formats: mp3s encoded with soundfile, an
ultimate.csv, and a clean_lastfm.db with the real three-table schema."""

import csv
import errno
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from orpheus.formats import dataset as datasets
from orpheus.formats import tfrecord as spec

from orpheus.audio import decode as audio
from orpheus.audio import features as audio_features
from tfrecords import plan, runners
from tfrecords import preprocessing as pp
from tfrecords import shards as shards_module
from tests.fixtures_disk import make_disk_full, mounted
from tests.fixtures_preprocessing import (  # noqa: F401  (corpus, logmel_run: fixtures)
    CORPUS, GOOD, RATE, SPLIT, TAGS, _cli, _expected_multi_hot, _read_shards, _signal, _snapshot, build_corpus,
    clean_miniature_msd, corpus, logmel_run)

def test_shards_dataset_json_and_tags(corpus, logmel_run):
    root, _ = corpus
    info, examples = _read_shards(logmel_run)
    assert info.features.format == "log-mel-spectrogram" and info.features.sample_rate == RATE and info.features.preset == "db"
    assert (info.features.n_mels, info.features.n_fft, info.features.hop_length, info.features.n_mfcc, info.storage) == (96, 2048, 512, None, "float32")
    assert info.tags == tuple(TAGS)  # ROWID order, not alphabetical
    assert "--num-files 4" in info.command and info.command.startswith("python tfrecords/preprocessing.py")
    assert sorted(examples) == sorted(GOOD)
    for tid, ex in examples.items():
        np.testing.assert_array_equal(ex["tags"], _expected_multi_hot(tid))
        assert ex["artist_id"].decode() == CORPUS[tid][0]
    # counts and positives per split agree with what the shards hold
    for split in datasets.SPLITS:
        in_split = [tid for tid, ex in examples.items() if ex["split"] == split]
        assert info.counts[split] == len(in_split)
        expected = sum((_expected_multi_hot(t) for t in in_split), np.zeros(len(TAGS), int))
        assert info.positives[split] == expected.tolist()
    # the features are exactly orpheus.audio.decode's, on the trimmed span where ultimate.csv gives one
    y, _ = audio.load_audio(root / "audio" / "3/TR03.clip.mp3", RATE)
    np.testing.assert_array_equal(examples["TR03"]["audio"], audio_features.log_mel(y, RATE, 96))
    trimmed, _ = audio.load_audio(root / "audio" / "8/TR08.clip.mp3", RATE, offset_s=0.5, duration_s=17.5)
    assert examples["TR08"]["audio"].shape == (1 + len(trimmed) // 512, 96)
    np.testing.assert_array_equal(examples["TR08"]["audio"], audio_features.log_mel(trimmed, RATE, 96))
    # the shard names follow the spec and the 4 files are shared among the splits in use
    names = sorted(p.name for p in logmel_run.glob("*.tfrecord"))
    assert len(names) == 4
    for name in names:
        split, index, _, count = name[:-len(".tfrecord")].split("-")
        assert name == datasets.shard_name(split, int(index), int(count))


def test_skipped_report(logmel_run):
    with open(logmel_run / "skipped.csv", newline="") as f:
        rows = {row["track_id"]: row["reason"] for row in csv.DictReader(f)}
    assert set(rows) == {"TRBAD", "TRSHORT", "TRNOTAG", "TRGONE"}
    assert rows["TRNOTAG"] == "no clean tag"
    assert rows["TRSHORT"].startswith("too short")
    assert rows["TRBAD"].startswith("decode failed") and "TRBAD.clip.mp3" in rows["TRBAD"]
    assert rows["TRGONE"].startswith("decode failed") and "not found" in rows["TRGONE"]


def test_artist_separation_and_split_determinism(corpus, logmel_run):
    root, _ = corpus
    _, examples = _read_shards(logmel_run)
    split_of_artist = {}
    for ex in examples.values():
        assert split_of_artist.setdefault(ex["artist_id"], ex["split"]) == ex["split"]
    assert set(split_of_artist.values()) == set(datasets.SPLITS)
    for artist, split in split_of_artist.items():
        assert plan.sha256_split(artist.decode(), (40, 30, 30)) == split
    # the hash is SHA-256 of the artist id, not Python's salted hash(): check it independently
    for artist in ("AR1", "AR2", "AR5"):
        position = int.from_bytes(hashlib.sha256(artist.encode()).digest()[:8], "big") / 2 ** 64 * 100
        expected = "train" if position < 80 else "valid" if position < 90 else "test"
        assert plan.sha256_split(artist, (80, 10, 10)) == expected
    # over many artists the split sizes follow the percentages
    shares = [plan.sha256_split(f"AR{i:05d}", (70, 20, 10)) for i in range(5000)]
    assert abs(shares.count("train") / 5000 - 0.7) < 0.03 and abs(shares.count("test") / 5000 - 0.1) < 0.02
    first = plan.plan(root / "ultimate.csv", root / "clean_lastfm.db", root / "audio", split=(50, 25, 25),
                    split_file=None, num_files=5)
    again = plan.plan(root / "ultimate.csv", root / "clean_lastfm.db", root / "audio", split=(50, 25, 25),
                    split_file=None, num_files=5)
    assert first == again
    tracks = [t.track_id for shard in first[1] for t in shard.tracks]
    assert sorted(tracks) == sorted(GOOD + ["TRBAD", "TRSHORT", "TRGONE"])


def test_shards_per_split_is_proportional():
    assert plan.shards_per_split({"train": 800, "valid": 100, "test": 100}, 100) == {"train": 80, "valid": 10, "test": 10}
    assert plan.shards_per_split({"train": 50, "valid": 1, "test": 0}, 10) == {"train": 9, "valid": 1, "test": 0}
    assert plan.shards_per_split({"train": 3, "valid": 2, "test": 2}, 100) == {"train": 3, "valid": 2, "test": 2}


def test_split_file(corpus, tmp_path):
    _, inputs = corpus
    split_file = tmp_path / "split.csv"
    chosen = {"TR01": "test", "TR02": "train", "TR03": "valid", "TR04": "train", "TR05": "train"}
    split_file.write_text("track_id,split\n" + "".join(f"{t},{s}\n" for t, s in chosen.items()))
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs, "--split-file", str(split_file), "--num-files", "3") == 0
    info, examples = _read_shards(out)
    assert {tid: ex["split"] for tid, ex in examples.items()} == chosen
    assert info.counts == {"train": 3, "valid": 1, "test": 1}
    with open(out / "skipped.csv", newline="") as f:
        reasons = {row["track_id"]: row["reason"] for row in csv.DictReader(f)}
    assert reasons["TR06"] == "not in --split-file"


def test_resume_redoes_only_incomplete_shards(corpus, tmp_path):
    _, inputs = corpus
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs) == 0
    before = _snapshot(out)
    names = sorted(before)
    half, kept = out / names[0], names[1:]
    half.write_bytes(before[names[0]][1][: len(before[names[0]][1]) // 2])  # a kill mid-write under the final name
    (out / f".{names[1]}.abc.tmp").write_bytes(b"partial")                  # a temp file left by a kill
    os.remove(out / "dataset.json")
    assert _cli("log-mel-spectrogram", out, inputs) == 0
    after = _snapshot(out)
    assert after[names[0]][1] == before[names[0]][1]             # redone, whole again
    assert after[names[0]][0] != before[names[0]][0]
    for name in kept:
        assert after[name] == before[name]                       # untouched: same mtime, same bytes
    assert not list(out.glob(".*.tmp"))
    assert sum(datasets.read_dataset_info(out).counts.values()) == len(GOOD)
    # a third run has nothing to do
    assert _cli("log-mel-spectrogram", out, inputs) == 0
    assert _snapshot(out) == after


def test_shard_index_jobs_rebuild_the_full_run(corpus, logmel_run, tmp_path):
    _, inputs = corpus
    out = tmp_path / "out"
    for index in range(4):
        assert not (out / "dataset.json").exists()
        assert _cli("log-mel-spectrogram", out, inputs, "--shard-index", str(index)) == 0
        assert len(list(out.glob("*.tfrecord"))) == index + 1
    full = {name: data for name, (_, data) in _snapshot(logmel_run).items()}
    assert {name: data for name, (_, data) in _snapshot(out).items()} == full
    sharded, whole = (json.loads((d / "dataset.json").read_text()) for d in (out, logmel_run))
    assert "--shard-index" not in sharded["command"]  # the same command line for every array job
    assert sharded.pop("command").replace(str(out), "OUT") == whole.pop("command").replace(str(logmel_run), "OUT")
    assert sharded == whole
    assert (out / "skipped.csv").read_text() == (logmel_run / "skipped.csv").read_text()
    assert _cli("log-mel-spectrogram", out, inputs, "--shard-index", "4") == 1  # only 4 shards
    # an array job on another machine is another process: its shard must still be byte-identical
    other = tmp_path / "other"
    script = Path(pp.__file__).resolve()
    subprocess.run([sys.executable, str(script), "log-mel-spectrogram", str(other), *inputs, "--sample-rate", str(RATE),
                    "--num-files", "4", "--jobs", "1", "--quiet", "--split", *SPLIT, "--shard-index", "2"],
                   check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True)
    [written] = other.glob("*.tfrecord")
    assert written.read_bytes() == full[written.name]


def test_parallel_jobs_write_the_same_bytes(corpus, logmel_run, tmp_path):
    _, inputs = corpus
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs, "--jobs", "2") == 0
    assert {n: d for n, (_, d) in _snapshot(out).items()} == {n: d for n, (_, d) in _snapshot(logmel_run).items()}


def test_shards_equal_tensorflows_writer_of_the_same_features(corpus, logmel_run, tmp_path):
    """The TensorFlow-free writer against the reference: each track's `orpheus.audio.features` features, its
    `spec.to_example` serialised by protobuf and framed by `tf.io.TFRecordWriter`, byte for byte."""
    root, inputs = corpus
    _, shards, _ = plan.plan(root / "ultimate.csv", root / "clean_lastfm.db", root / "audio",
                           split=[float(x) for x in SPLIT], split_file=None, num_files=4)
    schema = spec.example_spec("log-mel-spectrogram", 96, len(TAGS))
    for shard in shards:
        written = json.loads((logmel_run / shards_module.PROGRESS_DIR / f"{shard.name}.json").read_text())["tracks"]
        reference = tmp_path / shard.name
        with tf.io.TFRecordWriter(str(reference)) as writer:
            for track in (t for t in shard.tracks if t.track_id in written):
                duration = None if track.end_s is None else track.end_s - track.start_s
                y, _ = audio.load_audio(track.path, RATE, offset_s=track.start_s, duration_s=duration)
                values = {"tid": track.track_id, "artist_id": track.artist_id, "audio": audio_features.log_mel(y, RATE, 96),
                          "tags": _expected_multi_hot(track.track_id)}
                writer.write(spec.serialize(spec.to_example(values, schema)))
        assert (logmel_run / shard.name).read_bytes() == reference.read_bytes()


# sha256 of the shards (in name order) that the code before the TensorFlow-free writer wrote for
# `_pcm_corpus` (PCM in, no resampling: no arithmetic that depends on the CPU or library versions)
PCM_SHARDS_SHA256 = {
    "float32": "f217dfd13a93038d1988d03e228bee4fd7ad55567ab71dd15f167ae3ab9f3af2",
    "float16": "213f54011c9c51ee1a6c2279d781a15335e8dbca1ab3a8776b8d0f84a36ab3a9",
}


def _pcm_corpus(root):
    """Four WAV tracks at 8 kHz (two stereo, one trimmed) with integer-generated samples, and their tables."""
    (root / "audio").mkdir(parents=True)
    rows = []
    db = sqlite3.connect(root / "clean_lastfm.db")
    for table in ("tids (tid TEXT)", "tags (tag TEXT)", "tid_tag (tid INTEGER, tag INTEGER, val FLOAT)"):
        db.execute(f"CREATE TABLE {table}")
    db.executemany("INSERT INTO tags (tag) VALUES (?)", [(t,) for t in TAGS])
    for k in range(4):
        n = RATE * (3 + k)
        left = (np.arange(n, dtype=np.int64) * (7919 + 104729 * k) % 65536 - 32768).astype(np.int16)
        samples = np.stack([left, left[::-1]], axis=1) if k % 2 else left
        sf.write(root / "audio" / f"t{k}.wav", samples, RATE, subtype="PCM_16")
        start, end = ("0.25", "4.5") if k == 2 else ("", "")
        rows.append([f"TRPCM{k}", f"ARPCM{k % 3}", f"t{k}.wav", start, end])
        rowid = db.execute("INSERT INTO tids (tid) VALUES (?)", (f"TRPCM{k}",)).lastrowid
        db.executemany("INSERT INTO tid_tag VALUES (?, ?, 100)", [(rowid, 1 + k % 4), (rowid, 1 + (k + 1) % 4)])
    db.commit()
    db.close()
    with open(root / "ultimate.csv", "w", newline="") as f:
        csv.writer(f).writerows([["track_id", "artist_id", "mp3_path", "audio_start", "audio_end"], *rows])
    return ["--csv-path", str(root / "ultimate.csv"), "--tag-path", str(root / "clean_lastfm.db"),
            "--root-dir", str(root / "audio")]


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_waveform_shards_are_the_bytes_earlier_versions_wrote(tmp_path, storage):
    inputs = _pcm_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    assert pp.main(["waveform", str(out), *inputs, "--sample-rate", str(RATE), "--dtype", storage, "--min-length-s", "0",
                    "--num-files", "3", "--split", "50", "25", "25", "--jobs", "1", "--quiet"]) == 0
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out.glob("*.tfrecord"))))
    assert len(list(out.glob("*.tfrecord"))) == 3 and digest.hexdigest() == PCM_SHARDS_SHA256[storage]


def test_float16_storage(corpus, logmel_run, tmp_path):
    _, inputs = corpus
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs, "--dtype", "float16") == 0
    info, half = _read_shards(out)
    _, full = _read_shards(logmel_run)
    assert info.storage == "float16"
    worst = max(float(np.abs(half[t]["audio"] - full[t]["audio"]).max()) for t in GOOD)
    assert 0 < worst <= 2 ** -6  # half an ulp of float16 for |x| < 64 dB
    size = lambda d: sum(p.stat().st_size for p in d.glob("*.tfrecord"))  # noqa: E731
    assert size(out) < 0.6 * size(logmel_run)


def test_mfcc_and_waveform_formats(corpus, tmp_path):
    root, inputs = corpus
    y, _ = audio.load_audio(root / "audio" / "5/TR05.clip.mp3", RATE)
    out = tmp_path / "mfcc"
    assert _cli("mfcc", out, inputs, "--n-mfcc", "13", "--n-mels", "40") == 0
    info, examples = _read_shards(out)
    assert (info.features.format, info.features.n_mfcc, info.features.n_mels, info.features.preset, info.features.n_bins) == ("mfcc", 13, 40, "db", 13)
    np.testing.assert_array_equal(examples["TR05"]["audio"], audio_features.mfcc(y, RATE, 13, 40, 2048, 512))
    out = tmp_path / "wave"
    assert _cli("waveform", out, inputs) == 0
    info, examples = _read_shards(out)
    assert (info.features.format, info.features.n_mels, info.features.n_fft, info.features.preset) == ("waveform", None, None, None)
    np.testing.assert_array_equal(examples["TR05"]["audio"], y)
    assert sorted(examples) == sorted(GOOD)


def test_musicnn_preset(corpus, tmp_path):
    root, inputs = corpus
    out = tmp_path / "mn"
    assert _cli("log-mel-spectrogram", out, inputs, "--preset", "musicnn") == 0
    info, examples = _read_shards(out)
    assert (info.features.preset, info.features.n_fft, info.features.hop_length, info.features.n_mels) == ("musicnn", 512, 256, 96)
    y, _ = audio.load_audio(root / "audio" / "1/TR01.clip.mp3", RATE)
    np.testing.assert_array_equal(examples["TR01"]["audio"], audio_features.log_mel(y, RATE, 96, 512, 256, "log10"))


def test_refuses_other_settings_without_overwrite(corpus, tmp_path, capsys):
    _, inputs = corpus
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs, "--shard-index", "0") == 0
    assert _cli("log-mel-spectrogram", out, inputs, "--n-mels", "64", "--shard-index", "0") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert _cli("log-mel-spectrogram", out, inputs, "--num-files", "2") == 1  # shards of another plan
    assert _cli("log-mel-spectrogram", out, inputs, "--num-files", "2", "--n-mels", "64", "--overwrite") == 0
    assert sorted(p.name for p in out.glob("*.tfrecord")) == sorted(
        s.name for s in plan.plan(*(inputs[i] for i in (1, 3, 5)), split=(40, 30, 30), split_file=None,
                                num_files=2)[1])
    assert datasets.read_dataset_info(out).features.n_mels == 64


def test_bad_inputs_are_one_line_errors(corpus, tmp_path, capsys):
    root, inputs = corpus
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("track_id,mp3_path\nTR01,x.mp3\n")
    assert pp.main(["waveform", str(tmp_path / "o"), "--csv-path", str(bad_csv), "--tag-path", inputs[3],
                    "--root-dir", inputs[5], "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "bad.csv" in err and "artist_id" in err and len(err.strip().splitlines()) == 1
    not_db = tmp_path / "tags.db"
    not_db.write_text("hello")
    assert pp.main(["waveform", str(tmp_path / "o"), "--csv-path", inputs[1], "--tag-path", str(not_db),
                    "--root-dir", inputs[5], "--quiet"]) == 1
    assert "tags.db" in capsys.readouterr().err
    assert _cli("waveform", tmp_path / "o", inputs, "--split", "80", "10", "5") == 1
    assert "sum" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_on_the_miniature_msd(tmp_path):
    """msd.miniature.synthetic_msd -> the four cleaning commands -> preprocessing; checked against the generator's truth."""
    import pandas as pd

    from msd.lastfm import LastFm

    msd, clean = clean_miniature_msd(tmp_path, tracks=40, seed=3, duration_s=20)
    shards = tmp_path / "shards"
    assert pp.main(["log-mel-spectrogram", str(shards), "--csv-path", str(clean / "ultimate.csv"), "--tag-path",
                    str(clean / "clean_lastfm.db"), "--root-dir", str(msd / "audio"), "--num-files", "6",
                    "--split", "60", "20", "20", "--jobs", "2", "--quiet"]) == 0

    truth = pd.read_csv(msd / "truth.csv", keep_default_na=False)
    ultimate = pd.read_csv(clean / "ultimate.csv")
    info, examples = _read_shards(shards)
    with open(shards / "skipped.csv", newline="") as f:
        skipped = {row["track_id"]: row["reason"] for row in csv.DictReader(f)}
    assert set(examples) | set(skipped) == set(ultimate["track_id"])  # nothing lost silently
    no_clean_tag = set(truth.loc[truth["fault"] == "no_clean_tag", "track_id"]) & set(ultimate["track_id"])
    assert no_clean_tag and all(skipped[t] == "no clean tag" for t in no_clean_tag)
    assert set(skipped) == no_clean_tag  # healthy previews of 20 s all decode and are long enough
    with LastFm(clean / "clean_lastfm.db") as db:
        assert list(info.tags) == db.vocabulary()
        tids = sorted(examples)
        np.testing.assert_array_equal(np.stack([examples[t]["tags"] for t in tids]), db.multi_hot(tids, info.tags))
    artists = {}
    for ex in examples.values():
        assert artists.setdefault(ex["artist_id"], ex["split"]) == ex["split"]
        assert ex["audio"].shape[1] == 96 and ex["audio"].shape[0] >= 15 * 16000 // 512
    assert sum(info.counts.values()) == len(examples)


def test_pool_batches_bound_memory():
    def settings(fmt, dtype="float32"):
        return shards_module.resolve_settings(fmt, sample_rate=16000, n_mels=96, preset="db", n_fft=None, hop_length=None,
                                   n_mfcc=20, dtype=dtype, min_length_s=15)
    for fmt in ("waveform", "log-mel-spectrogram", "mfcc"):
        for jobs in (1, 2, 16):
            n = runners.tracks_in_flight(settings(fmt), jobs)
            assert jobs * 4 <= n <= jobs * runners.TRACKS_IN_FLIGHT_PER_JOB
    # one minute of 16 kHz float32 waveform is 3.84 MB: 16 jobs may not hold 16 x 128 of them
    assert runners.tracks_in_flight(settings("waveform"), 16) * 3.84e6 <= runners.IN_FLIGHT_MEMORY_BYTES * 1.01
    assert runners.tracks_in_flight(settings("waveform", "float16"), 16) > runners.tracks_in_flight(settings("waveform"), 16)


def test_flag_names(corpus, logmel_run, tmp_path):
    _, inputs = corpus
    out = tmp_path / "out"
    assert pp.main(["log-mel-spectrogram", str(out), *inputs, "--sample-rate", str(RATE), "--n-mels", "96",
                    "--num-files", "4", "--jobs", "1", "--quiet", "--split", *SPLIT]) == 0
    assert _snapshot_bytes(out) == _snapshot_bytes(logmel_run)  # the reference run's settings, the same shards
    help_text = pp.build_parser().format_help()
    assert "--sample-rate SAMPLE_RATE" in help_text and "--n-mels N_MELS" in help_text
    for old in ("--sr", "--mels"):     # the names of unreleased first drafts: refused, not aliased
        assert f"{old} " not in help_text
        with pytest.raises(SystemExit) as exit_info:
            pp.build_parser().parse_args(["waveform", "o", *inputs, old, "40"])
        assert exit_info.value.code == 2


def _snapshot_bytes(out_dir):
    return {name: data for name, (_, data) in _snapshot(out_dir).items()}


def test_the_stage_reads_the_tag_database_without_the_cleaning_stage(corpus):
    """The stages meet through files: planning (which reads clean_lastfm.db) imports no `msd` module."""
    root, _ = corpus
    code = ("import sys; from tfrecords import plan, preprocessing; "
            f"vocabulary, shards, _ = plan.plan({str(root / 'ultimate.csv')!r}, {str(root / 'clean_lastfm.db')!r}, "
            f"{str(root / 'audio')!r}, split=(40, 30, 30), split_file=None, num_files=4); "
            "print(vocabulary, sum(len(s.tracks) for s in shards)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'msd'))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(pp.__file__).resolve().parents[1]))).stdout
    assert out.splitlines() == [f"{TAGS} 13", "[]"]


def _one_line_error(capsys, folder):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("orpheus preprocess: error: ") and str(folder) in err
    return err


def test_full_disk_is_one_line_and_leaves_nothing_a_rerun_would_trust(corpus, logmel_run, tmp_path, monkeypatch,
                                                                      capsys):
    _, inputs = corpus
    out = tmp_path / "out"
    make_disk_full(monkeypatch, ending=".tfrecord", after=1)  # full from the second shard on
    assert _cli("log-mel-spectrogram", out, inputs) == 1
    assert "no space left on device" in _one_line_error(capsys, out).lower()
    done = list(out.glob("*.tfrecord"))
    assert len(done) == 1 and not list(out.glob(".*.tmp"))  # the shard being written is gone, no temp file
    assert sorted(p.name for p in (out / shards_module.PROGRESS_DIR).glob("*.json")) == [f"{done[0].name}.json"]
    # an OSError (ENOSPC) from the sidecar's write: the same one line
    monkeypatch.undo()

    def no_space(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(shards_module, "write_json_atomic", no_space)
    assert _cli("log-mel-spectrogram", out, inputs) == 1
    assert "no space left on device" in _one_line_error(capsys, out).lower()
    assert len(list(out.glob("*.tfrecord"))) == 1 and not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert _cli("log-mel-spectrogram", out, inputs) == 0  # space again: the rerun completes the folder
    assert _snapshot_bytes(out) == _snapshot_bytes(logmel_run)


def test_an_output_folder_that_cannot_be_created_is_one_line(corpus, tmp_path, capsys):
    _, inputs = corpus
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert _cli("log-mel-spectrogram", blocker / "shards", inputs) == 1
    _one_line_error(capsys, blocker / "shards")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert _cli("log-mel-spectrogram", locked / "shards", inputs) == 1
            _one_line_error(capsys, locked)
        finally:
            locked.chmod(0o700)


def test_sha256_split_keeps_every_key_where_it_was():
    """Users' splits must not move: the split of 300 artist ids, pinned (r train, v valid, t test)."""
    letters = "".join({"train": "r", "valid": "v", "test": "t"}[plan.sha256_split(f"AR{i:05d}", (70, 20, 10))]
                      for i in range(300))
    assert hashlib.sha256(letters.encode()).hexdigest() == \
        "34eafb69688d9bf08b035a99e309a1428dbf2e6ffea74099c8076203fcc334c5"


# --------------------------------------------------------------------------- the pool's hand-over in files
@pytest.mark.parametrize("tasks_per_job, longest_task", [(16, 1), (2, 3), (1, 4)])  # shards of 3 or 4 tracks
def test_pool_workers_hand_tracks_over_in_files_and_the_shards_stay_the_same(corpus, logmel_run, tmp_path, monkeypatch,
                                                                           tasks_per_job, longest_task):
    root, inputs = corpus
    monkeypatch.setattr(runners, "TASKS_PER_JOB", tasks_per_job)
    _, planned, _ = plan.plan(root / "ultimate.csv", root / "clean_lastfm.db", root / "audio",
                              split=[float(x) for x in SPLIT], split_file=None, num_files=4)
    spans = runners.pool_tasks(planned, 2)
    assert max(stop - first for _, first, stop in spans) == longest_task and spans[-1][2] - spans[-1][1] == 1
    assert [(s.name, i) for s, first, stop in spans for i in range(first, stop)] == \
        [(s.name, i) for s in planned for i in range(len(s.tracks))]  # every track once, in order
    out = tmp_path / "out"
    assert _cli("log-mel-spectrogram", out, inputs, "--jobs", "2") == 0
    assert _snapshot_bytes(out) == _snapshot_bytes(logmel_run)
    assert (out / "skipped.csv").read_text() == (logmel_run / "skipped.csv").read_text()
    assert not list(out.glob(".*.tmp"))


def test_a_fresh_process_forks_its_workers_and_writes_the_same_bytes(corpus, logmel_run, tmp_path):
    """The command in its own process (no TensorFlow loaded, as a user runs it) forks its workers."""
    _, inputs = corpus
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(Path(pp.__file__).resolve()), "log-mel-spectrogram", str(out), *inputs,
                           "--sample-rate", str(RATE), "--num-files", "4", "--jobs", "2", "--split", *SPLIT, "--verbose"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tracks: 2 workers started by fork" in done.stderr
    assert _snapshot_bytes(out) == _snapshot_bytes(logmel_run)
    # libmpg123's notes on the damaged mp3 (TRBAD) come as debug lines naming the file, with --verbose only
    notes = [line for line in done.stderr.splitlines() if "Illegal Audio-MPEG-Header" in line]
    assert notes and all("TRBAD" in line and "DEBUG" in line for line in notes), done.stderr[-2000:]
    quiet = subprocess.run([sys.executable, str(Path(pp.__file__).resolve()), "log-mel-spectrogram",
                            str(tmp_path / "quiet"), *inputs, "--sample-rate", str(RATE), "--num-files", "4", "--jobs",
                            "2", "--split", *SPLIT], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "MPEG" not in quiet.stderr and "Note:" not in quiet.stderr, quiet.stderr[-2000:]


def test_a_disk_that_fills_under_the_pool_is_one_line_and_a_rerun_completes(corpus, logmel_run, tmp_path, capsys):
    _, inputs = corpus
    disk = tmp_path / "disk"
    disk.mkdir()
    total = sum(len(data) for data in _snapshot_bytes(logmel_run).values())
    with mounted(disk, "-t", "tmpfs", "-o", f"size={total // 2}", "tmpfs"):
        out = disk / "out"
        assert _cli("log-mel-spectrogram", out, inputs, "--jobs", "2") == 1
        assert "no space left on device" in _one_line_error(capsys, out).lower()
        assert not list(out.glob(".*.tmp"))  # neither the workers' files nor the shard being written
        for shard in out.glob("*.tfrecord"):  # what is there is whole and recorded
            assert shard.read_bytes() == (logmel_run / shard.name).read_bytes()
            assert (out / shards_module.PROGRESS_DIR / f"{shard.name}.json").is_file()
        subprocess.run(["mount", "-o", f"remount,size={4 * total}", str(disk)], check=True)
        assert _cli("log-mel-spectrogram", out, inputs, "--jobs", "2") == 0
        assert _snapshot_bytes(out) == _snapshot_bytes(logmel_run) and not list(out.glob(".*.tmp"))
