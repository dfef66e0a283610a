"""tfrecords/runners.py: the Apache Beam runner writes the pool's bytes, resumes, and the folder lock.

The corpus and the pool's reference run come from tests/tfrecords/test_preprocessing.py (mp3s encoded with
soundfile, ultimate.csv, a clean_lastfm.db with the real schema).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_preprocessing import (RATE, SPLIT, _cli, _snapshot, clean_miniature_msd, corpus,  # noqa: F401
                                          logmel_run)
from tests.fixtures_disk import make_disk_full
from tfrecords import shards
from tfrecords import preprocessing as pp
from tfrecords import runners
from tfrecords.plan import Shard, Track, plan

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("apache_beam", reason="the [beam] extra is not installed")


def _bytes(out_dir):
    return {name: data for name, (_, data) in _snapshot(out_dir).items()}


def _dataset_json_without_command(out_dir):
    info = json.loads((out_dir / "dataset.json").read_text())
    info.pop("command")
    return info


def test_beam_runner_writes_the_pool_shards(corpus, logmel_run, tmp_path, capfd):
    _, inputs = corpus
    out = tmp_path / "beam"
    assert _cli("log-mel-spectrogram", out, inputs, "--runner", "beam", "--jobs", "2") == 0
    err = capfd.readouterr().err  # Beam's worker processes print nothing of their own without --verbose
    assert "Logging handler created" not in err and "apitools" not in err and "Illegal Audio-MPEG-Header" not in err
    assert _bytes(out) == _bytes(logmel_run) and len(_bytes(out)) == 4
    assert _dataset_json_without_command(out) == _dataset_json_without_command(logmel_run)
    assert (out / "skipped.csv").read_text() == (logmel_run / "skipped.csv").read_text()
    assert "--runner beam" in json.loads((out / "dataset.json").read_text())["command"]


@pytest.mark.slow
def test_beam_and_pool_write_the_same_miniature_msd_and_beam_resumes(tmp_path):
    """msd.miniature.synthetic_msd -> the cleaning commands -> preprocessing with each runner: identical shards; then a
    beam rerun after a shard lost its sidecar redoes only that shard."""
    msd, clean = clean_miniature_msd(tmp_path, tracks=10, seed=5, duration_s=16)
    inputs = ["--csv-path", str(clean / "ultimate.csv"), "--tag-path", str(clean / "clean_lastfm.db"),
              "--root-dir", str(msd / "audio"), "--num-files", "4", "--split", "50", "25", "25", "--jobs", "2",
              "--quiet"]
    pool, beam = tmp_path / "pool", tmp_path / "beam"
    assert pp.main(["log-mel-spectrogram", str(pool), *inputs]) == 0
    assert pp.main(["log-mel-spectrogram", str(beam), *inputs, "--runner", "beam"]) == 0
    assert len(_bytes(pool)) >= 3 and _bytes(beam) == _bytes(pool)
    assert _dataset_json_without_command(beam) == _dataset_json_without_command(pool)
    assert (beam / "skipped.csv").read_text() == (pool / "skipped.csv").read_text()
    before = _snapshot(beam)
    names = sorted(before)
    os.remove(beam / shards.PROGRESS_DIR / f"{names[1]}.json")  # as if killed before that shard was complete
    assert pp.main(["log-mel-spectrogram", str(beam), *inputs, "--runner", "beam"]) == 0
    after = _snapshot(beam)
    assert after[names[1]][0] != before[names[1]][0] and after[names[1]][1] == before[names[1]][1]
    assert all(after[name] == before[name] for name in names if name != names[1])


def test_beam_steps_assemble_a_shard_from_its_spans_in_any_order_retried_or_failed(corpus, logmel_run, tmp_path):
    """Beam's two steps without Beam: spans encoded in any worker, a retried span (run twice) and spans grouped out
    of order still give the pool's shard; a shard with a span that could not be written is not written."""
    _, inputs = corpus
    args = dict(zip(inputs[::2], inputs[1::2]))
    vocabulary, planned, _ = plan(args["--csv-path"], args["--tag-path"], args["--root-dir"],
                                  split=[float(p) for p in SPLIT], split_file=None, num_files=4)
    settings = shards.resolve_settings("log-mel-spectrogram", sample_rate=RATE, n_mels=96, preset="db", n_fft=None,
                                       hop_length=None, n_mfcc=20, dtype="float32", min_length_s=10.0)
    shard = max(planned, key=lambda s: len(s.tracks))
    assert len(shard.tracks) >= 3
    out = tmp_path / "out"
    out.mkdir()
    fingerprint = shards.fingerprint(settings, vocabulary, shard)
    keyed = [runners.encode_span_element((shard.name, i, shard.tracks[i:i + 1]), str(out), settings, len(vocabulary))
             for i in range(len(shard.tracks))]
    assert runners.encode_span_element((shard.name, 0, shard.tracks[:1]), str(out), settings,
                                       len(vocabulary)) == keyed[0]  # a retried bundle: the same file, whole
    assert {key for key, _ in keyed} == {shard.name}
    spans = [span for _, span in reversed(keyed)]
    about = {shard.name: (shard.split, shard.index, shard.count, fingerprint)}
    assert runners.write_shard_element((shard.name, spans), str(out), about, vocabulary) == shard.name
    assert (out / shard.name).read_bytes() == (logmel_run / shard.name).read_bytes()
    assert shards.shard_state(out, shard, fingerprint) == "done" and not list(out.glob(".*.tmp"))

    failed = tmp_path / "failed"
    failed.mkdir()
    spans = [runners.encode_span_element((shard.name, 0, shard.tracks[:1]), str(failed), settings,
                                         len(vocabulary))[1], (1, None, (), tuple(shard.tracks[1:]))]
    runners.write_shard_element((shard.name, spans), str(failed), about, vocabulary)
    assert shards.shard_state(failed, shard, fingerprint) == "todo" and not (failed / shard.name).exists()
    shards.remove_leftovers(failed, shard)  # what the driver does for a shard that is not done
    assert not list(failed.iterdir())


def test_beam_progress_counts_tracks_as_spans_are_encoded_and_shards_written(tmp_path, monkeypatch):
    """The driver's bar moves with the workers: a span's tracks once its record file is in place, a shard's once
    it is done; spans not yet encoded do not count; a shard whose spans are all in place waits for its file."""
    import io
    import threading

    tracks = [Track(f"TR{i}", "AR", f"{i}.mp3", f"/audio/{i}.mp3") for i in range(9)]
    first, second, third = Shard("train", 0, 3, tracks[:4]), Shard("train", 1, 3, tracks[4:7]), Shard("train", 2, 3,
                                                                                                     tracks[7:])
    spans = [(first, 0, 2), (first, 2, 4), (second, 0, 3), (third, 0, 2)]
    fingerprints = {first.name: "a", second.name: "b", third.name: "c"}
    for start in (0, 2):  # both spans of the first shard encoded, the shard not yet written
        shards.record_file_path(tmp_path, first.name, start).write_bytes(b"records")
    shards.write_shard(tmp_path, second, [(b"x", "")] * 3, ["rock"], "b")  # the second shard: done
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    stop, stream = threading.Event(), io.StringIO()
    watcher = threading.Thread(target=runners._watch_progress, args=(tmp_path, spans, fingerprints, False, stop, stream))
    watcher.start()
    time.sleep(1.7)  # three polls
    stop.set()
    watcher.join()
    assert not errors
    assert stream.getvalue().replace("\r", "\n").strip().splitlines()[-1].startswith("tracks:  78%|") \
        and "7/9" in stream.getvalue()


def test_beam_flags_default_to_all_local_cores_and_pass_options_through():
    flags = runners.beam_flags("", jobs=2, verbose=False)
    assert {"--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"} <= set(flags)
    mine = runners.beam_flags("--runner=FlinkRunner --flink_master=host:8081 --direct_num_workers 5", 2, True)
    assert mine[:4] == ["--runner=FlinkRunner", "--flink_master=host:8081", "--direct_num_workers", "5"]
    assert "--runner=DirectRunner" not in mine and "--direct_num_workers=2" not in mine
    args = pp.build_parser().parse_args(["waveform", "o", "--csv-path", "a", "--tag-path", "b", "--root-dir", "c",
                                         "--runner", "beam", "--beam-options=--runner=FlinkRunner --flink_master=h:1"])
    assert (args.runner, args.beam_options) == ("beam", "--runner=FlinkRunner --flink_master=h:1")


def test_beam_runner_without_the_extra_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    _, inputs = corpus
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # what `import apache_beam` meets without the extra
    assert _cli("log-mel-spectrogram", tmp_path / "out", inputs, "--runner", "beam") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "[beam]" in err


LOCK_HOLDER = """
import sys
from pathlib import Path
from tfrecords.runners import folder_lock
index = None if sys.argv[2] == "all" else int(sys.argv[2])
with folder_lock(Path(sys.argv[1]), index):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _hold_lock(out_dir, index):
    """Another process holding the folder lock as a run over all shards or one --shard-index job would."""
    out_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out_dir), index], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_into_the_same_folder_is_refused_in_one_line(corpus, tmp_path, capsys):
    _, inputs = corpus
    out = tmp_path / "out"
    holder = _hold_lock(out, "all")
    try:
        for extra in ((), ("--shard-index", "1"), ("--runner", "beam")):
            assert _cli("log-mel-spectrogram", out, inputs, *extra) == 1
            err = capsys.readouterr().err.strip()
            assert err.endswith(f"another preprocessing run is writing to {out} (pid {holder.pid}); wait for it "
                                "or choose another folder") and len(err.splitlines()) == 1
        assert not list(out.glob("*.tfrecord"))
    finally:
        holder.communicate("")
    holder = _hold_lock(out, "0")  # an array job writing shard 0: other shards may go ahead, shard 0 not
    try:
        assert _cli("log-mel-spectrogram", out, inputs, "--shard-index", "1") == 0
        assert _cli("log-mel-spectrogram", out, inputs, "--shard-index", "0") == 1
        assert _cli("log-mel-spectrogram", out, inputs) == 1
        assert "another preprocessing run is writing to" in capsys.readouterr().err
    finally:
        holder.communicate("")
    assert _cli("log-mel-spectrogram", out, inputs) == 0  # the lock goes with its process


def _start_run(out_dir, inputs):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, str(REPO / "tfrecords" / "preprocessing.py"), "log-mel-spectrogram",
                             str(out_dir), *inputs, "--sample-rate", str(RATE), "--num-files", "4", "--jobs", "1", "--quiet",
                             "--split", *SPLIT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_two_real_runs_into_one_folder(corpus, logmel_run, tmp_path):
    """Two preprocessing processes started together: one writes, the other finishes or says why it
    cannot in one line; never a traceback, and the folder ends complete with the reference bytes."""
    _, inputs = corpus
    out = tmp_path / "out"
    first = _start_run(out, inputs)
    time.sleep(0.2)
    second = _start_run(out, inputs)
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    assert 0 in [rc for rc, _, _ in results]
    for rc, _, err in results:
        assert "Traceback" not in err
        if rc != 0:
            assert rc == 1 and "another preprocessing run is writing to" in err
    assert _bytes(out) == _bytes(logmel_run)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("ending", [".tfrecord", ""], ids=["writing a shard", "encoding its spans"])
def test_beam_worker_write_errors_reach_the_driver_as_one_line(corpus, tmp_path, monkeypatch, capsys, ending):
    """A full disk met by a Beam worker, in either step: reported through Beam's metrics, printed by the driver
    in one line; the in-memory DirectRunner runs the workers in this process, where the disk is made full."""
    _, inputs = corpus
    out = tmp_path / "out"
    make_disk_full(monkeypatch, ending=ending)
    assert _cli("log-mel-spectrogram", out, inputs, "--runner", "beam",
                "--beam-options=--direct_running_mode=in_memory") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "no space left on device" in err[0].lower()
    assert not list(out.glob("*.tfrecord")) and not list(out.glob(".*.tmp"))
    assert not list((out / "progress").glob("*.json"))
