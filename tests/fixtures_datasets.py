"""End-to-end helpers for the MagnaTagATune and FMA tests: converter outputs -> shards -> training -> test.

They call the real stages through their `main(argv)`, exactly as a user would run them.
"""

from __future__ import annotations

import json
from pathlib import Path

from orpheus.commands import predict_and_test
from orpheus.commands import train as train_command
from tfrecords import preprocessing

WINDOW_S = 2.0
TINY_CONFIG = {
    "data": {"window_s": WINDOW_S, "top_n_tags": None, "shuffle_buffer": 16},
    "model": {"name": "pons_log_mel", "n_filters": 4, "n_dense": 16},
    "train": {"batch_size": 4, "early_stopping_patience": 0},
}


def shards_from_clean(clean_dir: Path, audio_root: Path, shard_dir: Path, *, n_files: int = 3) -> dict:
    """Run `preprocessing.py log-mel-spectrogram` on a converter's outputs with its split file; return dataset.json."""
    status = preprocessing.main([
        "log-mel-spectrogram", str(shard_dir), "--csv-path", str(clean_dir / "ultimate.csv"),
        "--tag-path", str(clean_dir / "clean_tags.db"), "--root-dir", str(audio_root),
        "--split-file", str(clean_dir / "split.csv"), "--num-files", str(n_files), "--min-length-s", str(WINDOW_S),
        "--jobs", "1", "--quiet"])
    if status != 0:
        raise AssertionError(f"preprocessing failed with status {status}")
    return json.loads((shard_dir / "dataset.json").read_text())


def train_and_test(shard_dir: Path, work: Path) -> dict:
    """Two training steps on the shards, then `test_model.py test` on the test split; return metrics.json."""
    config = work / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    run_dir = work / "run"
    status = train_command.main(["log-mel-spectrogram", "--tfrecords-dir", str(shard_dir), "--config", str(config),
                            "--epochs", "1", "--steps-per-epoch", "2", "--run-dir", str(run_dir), "--quiet"])
    if status != 0:
        raise AssertionError(f"training failed with status {status}")
    report = work / "report"
    status = predict_and_test.main(["test", "--run-dir", str(run_dir), "--tfrecords-dir", str(shard_dir),
                              "--out", str(report), "--quiet"])
    if status != 0:
        raise AssertionError(f"test_model test failed with status {status}")
    return json.loads((report / "metrics.json").read_text())
