"""orpheus.export: every format that installs here loads and matches the Keras model (float32, <= 1e-4)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from orpheus import export
from orpheus.commands import export as export_command
from orpheus.errors import ConfigError, MissingInputError, OutputExistsError
from orpheus.models.pretrained import resolve_model
from orpheus.tagging.tagger import TaggingEngine
from tests.fixtures_tagging import TINY_TAGS, tiny_run_dir  # noqa: F401  (fixture)

NEEDS = {"savedmodel": None, "onnx": "tf2onnx", "openvino": "openvino", "litert": "ai_edge_litert"}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_exported_model_matches_keras(fmt, tiny_run_dir, tmp_path):  # noqa: F811
    if NEEDS[fmt] and importlib.util.find_spec(NEEDS[fmt]) is None:
        pytest.skip(f"{NEEDS[fmt]} is not installed")
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    out = tmp_path / fmt
    assert export_command.main([str(tiny_run_dir), str(out), "--format", fmt, "--quiet"]) == 0
    tagger = TaggingEngine(tiny_run_dir)
    windows = np.random.default_rng(0).normal(size=(5, tagger.window_frames, 96)).astype(np.float32)
    expected = np.asarray(tagger.model(windows, training=False))
    got = export.load_exported(out, fmt)(windows)
    assert got.shape == expected.shape == (5, len(TINY_TAGS))
    assert np.abs(got - expected).max() <= 1e-4
    one = export.load_exported(out, fmt)(windows[:1])  # the batch axis is free
    assert np.abs(one - expected[:1]).max() <= 1e-4
    features = json.loads((out / "features.json").read_text())
    assert features["sample_rate"] == 16000 and features["stft"]["n_fft"] == 512
    assert features["stft"]["hop_length"] == 256 and features["mel"]["n_mels"] == 96
    assert features["log_compression"] == "log10(10000 * mel + 1)"
    assert features["window"]["frames"] == tagger.window_frames and features["front_end_inside_model"] is False
    assert features["tags"] == list(TINY_TAGS) == (out / "tags.txt").read_text().split()
    assert features["normalise"]["method"] == "per_example"


def test_export_refuses_to_overwrite_and_unknown_input(tiny_run_dir, tmp_path):  # noqa: F811
    out = tmp_path / "saved"
    out.mkdir()
    for name in ("features.json", "tags.txt"):   # an export of an earlier version (no ownership marker)
        (out / name).write_text("{}")
    with pytest.raises(OutputExistsError, match="an export written by Orpheus is already there; pass --overwrite"):
        export.export_model(tiny_run_dir, out, "savedmodel")
    with pytest.raises(MissingInputError, match="neither a pretrained model .* nor a run directory"):
        export.export_model(tmp_path / "nowhere", tmp_path / "x", "savedmodel")
    with pytest.raises(ConfigError, match="--format"):
        export.export_model(tiny_run_dir, tmp_path / "y", "pickle")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_pretrained_musicnn_exports_match(fmt, tmp_path):
    """The converted MSD_musicnn checkpoint, through each format that installs here (~10-30 s each)."""
    pytest.importorskip("musicnn")
    if NEEDS[fmt] and importlib.util.find_spec(NEEDS[fmt]) is None:
        pytest.skip(f"{NEEDS[fmt]} is not installed")
    out = export.export_model("MSD_musicnn", tmp_path / fmt, fmt)
    tagger = TaggingEngine(resolve_model("MSD_musicnn")[0])
    windows = np.abs(np.random.default_rng(1).normal(size=(3, tagger.window_frames, 96))).astype(np.float32)
    expected = np.asarray(tagger.model(windows, training=False))
    assert np.abs(export.load_exported(out, fmt)(windows) - expected).max() <= 1e-4
    if fmt == "openvino":  # one output, the tags: not the dropout layers' seed state that the converter also returns
        import openvino
        assert len(openvino.Core().read_model(str(out / export.MODEL_FILES[fmt])).outputs) == 1
