"""A full output disk met by training and by test_model: one line naming the folder, nothing left to trust."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tests.fixtures_disk import make_disk_full
from tests.fixtures_tagging import tiny_run_dir  # noqa: F401  (fixture)
from tests.fixtures_training import write_learnable_shards

FULL = "no space left on device; free space or choose another output folder"


def test_training_on_a_full_disk_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    from orpheus.commands.train import main
    shards = tmp_path / "shards"
    write_learnable_shards(shards, {"train": 8, "valid": 8, "test": 8}, n_frames=24)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"data": {"window_s": 0.5, "top_n_tags": 3},
                                  "model": {"n_filters": 1, "n_dense": 8}}))
    run_dir = tmp_path / "runs" / "full"
    make_disk_full(monkeypatch)
    assert main(["log-mel-spectrogram", "--tfrecords-dir", str(shards), "--config", str(config), "--epochs", "1",
                 "--run-dir", str(run_dir), "--quiet"]) == 1
    assert capsys.readouterr().err == f"orpheus train: error: {run_dir}: {FULL}\n"
    assert not run_dir.exists()  # a rerun starts afresh, without --overwrite


def test_predict_embeddings_on_a_full_disk_is_one_line(tmp_path, capsys, tiny_run_dir, monkeypatch):  # noqa: F811
    from orpheus.commands import predict_and_test
    rng = np.random.default_rng(0)
    song = tmp_path / "song.wav"
    sf.write(song, (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)
    out = tmp_path / "out"
    make_disk_full(monkeypatch)
    status = predict_and_test.main(["predict", "--run-dir", str(tiny_run_dir), "--quiet", "--jobs", "1",
                              "--embeddings", str(out / "emb.npy"), "--mp3", str(song)])
    assert status == 1
    assert capsys.readouterr().err.endswith(f"error: {out}: {FULL}\n")
    assert list(out.iterdir()) == []
