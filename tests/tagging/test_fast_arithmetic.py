"""`--precision fast`'s arithmetic: the int8 front end (`orpheus.tagging.quantize`), the generated calibration music
(`orpheus.tagging.calibration`) and the per-CPU choice (`orpheus.tagging.fast_arithmetic`). Fast's promise on music, for
each arithmetic, is tested in test_inference.py."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from orpheus.tagging import tagger as tagging
from tests.fixtures_tagging import tiny_run_dir  # noqa: F401  (fixture)

N_FRAMES, N_BINS = 40, 16


def front_end_model():
    """A small OpenVINO model with musicnn's kinds of single-channel convolutions: a timbral one (7 x 5 taps,
    time padded) and temporal ones (20 taps "same_upper", 9 taps with explicit padding), each max-pooled
    over frequency, then a dense sigmoid layer: windows [batch, 40, 16] -> [batch, 3]."""
    import openvino as ov
    import openvino.opset13 as ops
    rng = np.random.default_rng(0)
    windows = ops.parameter([-1, N_FRAMES, N_BINS], np.float32, "windows")
    x = ops.reshape(windows, np.array([0, 1, N_FRAMES, N_BINS], np.int64), special_zero=True)
    branches = []
    for shape, pad, begin, end in (((6, 1, 7, 5), "explicit", [3, 0], [3, 0]),
                                   ((4, 1, 20, 1), "same_upper", [0, 0], [0, 0]),
                                   ((4, 1, 9, 1), "explicit", [4, 0], [4, 0])):
        w = (rng.normal(size=shape) / np.sqrt(np.prod(shape[2:]))).astype(np.float32)
        conv = ops.relu(ops.convolution(x, ops.constant(w), [1, 1], begin, end, [1, 1], pad))
        branches.append(ops.reduce_max(conv, np.array([3], np.int64)))   # [batch, filters, time]
    pooled = ops.reduce_mean(ops.concat(branches, 1), np.array([2], np.int64))  # [batch, 14]
    dense = rng.normal(size=(14, 3)).astype(np.float32)
    return ov.Model([ops.sigmoid(ops.matmul(pooled, ops.constant(dense), False, False))], [windows], "front_end")


def smooth_windows(n: int, seed: int) -> np.ndarray:
    """Spectrogram-like input: smoothed noise over time and frequency, float32 [n, 40, 16]."""
    from scipy.ndimage import uniform_filter
    x = np.random.default_rng(seed).normal(size=(n, N_FRAMES, N_BINS))
    return (uniform_filter(x, size=(1, 3, 3)) * 2).astype(np.float32)


def run(model, windows: np.ndarray, precision: str = "f32"):
    import openvino as ov
    import openvino.properties.hint as hints
    compiled = ov.Core().compile_model(model, "CPU", {hints.inference_precision: precision})
    return np.array(compiled.create_infer_request().infer({0: windows})[0]), compiled


def test_fold_time_taps_keeps_every_sum():
    """Time taps as channels, dilated: the same outputs in float32 (valid, same_upper and explicit padding,
    7, 20 and 9 taps: fewer than a group, not a multiple of it, odd)."""
    pytest.importorskip("openvino")
    from orpheus.tagging.quantize import fold_time_taps, single_channel_convolutions
    model = front_end_model()
    model.reshape([-1, N_FRAMES, N_BINS])
    windows = smooth_windows(5, 1)
    expected, _ = run(model, windows)
    folded_model = model.clone()
    folded = fold_time_taps(folded_model, single_channel_convolutions(folded_model))
    assert [c.input_value(1).get_partial_shape().to_shape()[1] for c in folded] == [7, 8, 8]
    assert not single_channel_convolutions(folded_model)
    np.testing.assert_allclose(run(folded_model, windows)[0], expected, atol=1e-6)


def test_quantized_front_end_runs_in_int8_close_to_float32():
    pytest.importorskip("openvino")
    from orpheus.tagging.quantize import quantize_front_end
    model = front_end_model()
    model.reshape([-1, N_FRAMES, N_BINS])
    windows = smooth_windows(16, 2)
    expected, _ = run(model, windows)
    quantized = quantize_front_end(model, smooth_windows(24, 3))
    got, compiled = run(quantized, windows)
    assert np.abs(got - expected).max() < 0.01
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
                  if op.get_rt_info()["layerType"].astype(str) == "Convolution"}
    assert precisions <= {"i8", "u8"}, precisions  # all three convolutions run on integers
    assert quantize_front_end(front_end_model_without_single_channel(), windows) is None


def front_end_model_without_single_channel():
    import openvino as ov
    import openvino.opset13 as ops
    windows = ops.parameter([-1, N_FRAMES, N_BINS], np.float32, "windows")
    x = ops.transpose(windows, np.array([0, 2, 1], np.int64))  # [batch, 16 channels, time]
    w = np.random.default_rng(0).normal(size=(3, N_BINS, 5)).astype(np.float32)
    out = ops.reduce_mean(ops.convolution(x, ops.constant(w), [1], [0], [0], [1]), np.array([2], np.int64))
    return ov.Model([out], [windows], "conv1d")


def test_gptq_rounding_beats_rounding_to_nearest():
    """On correlated inputs (neighbouring spectrogram cells), GPTQ's rounding leaves a smaller output error."""
    from orpheus.tagging.quantize import gptq_round
    rng = np.random.default_rng(0)
    inputs = np.cumsum(rng.normal(size=(4000, 24)), axis=1) / 5           # strongly correlated columns
    weights = rng.normal(size=(10, 24))
    scale = np.abs(weights).max(axis=1) / 127
    nearest = np.round(weights / scale[:, None]) * scale[:, None]
    gptq = gptq_round(weights, inputs.T @ inputs / len(inputs), scale)
    steps = gptq / scale[:, None]
    assert np.allclose(steps, np.round(steps)) and np.abs(np.round(steps)).max() <= 127  # on the int8 grid
    error = lambda w: np.square(inputs @ (w - weights).T).mean()  # noqa: E731
    assert error(gptq) < 0.5 * error(nearest)


def test_calibration_music_is_a_function_of_its_seed():
    from orpheus.tagging.calibration import calibration_audio
    first, again, other = calibration_audio(3, 16000), calibration_audio(3, 16000), calibration_audio(4, 16000)
    assert first.shape == (160000,) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    for seed in range(6):
        peak_db = 20 * np.log10(np.abs(calibration_audio(seed, 16000, duration_s=2.0)).max())
        assert -24.01 <= peak_db <= 0.01


def test_the_choice_is_made_once_per_cpu_and_refuses_what_fails_the_check(  # noqa: F811
        tiny_run_dir, tmp_path, monkeypatch, caplog):  # noqa: F811
    pytest.importorskip("openvino")
    from orpheus.tagging import fast_arithmetic
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.fast_arithmetic"):
        first = tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert [m for m in caplog.messages if "choosing" in m]
    (choice,) = (tmp_path / "cache" / "openvino-fast").glob("*/*/choice.json")
    record = json.loads(choice.read_text())
    offered = [c for c in fast_arithmetic.available_candidates() if not c.startswith("int8")]  # tiny: no 1-channel conv
    assert sorted(record["candidates"]) == sorted(offered) and record["window_frames"] == 187
    timed = {n: c["cpu_ms_per_window"] for n, c in record["candidates"].items() if c["passes"]}
    assert record["chosen"] == min(timed, key=timed.get) and first.backend.endswith(f", {record['chosen']})")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.fast_arithmetic"):
        tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert not caplog.messages                                     # read from the cache
    choice.write_text("{not json")
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.fast_arithmetic"):
        tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert [m for m in caplog.messages if "choosing again" in m] and json.loads(choice.read_text())["chosen"]
    monkeypatch.setattr(fast_arithmetic, "CHECK_BOUND", 0.0)  # another recipe: only float32 itself passes
    assert tagging.TaggingEngine(tiny_run_dir, precision="fast").backend.endswith(", float32)")
    monkeypatch.setattr(fast_arithmetic, "cpu_info", lambda: ("Another CPU", ["avx2"]))  # another CPU
    tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert len(list((tmp_path / "cache" / "openvino-fast").glob("*/*/choice.json"))) == 3
