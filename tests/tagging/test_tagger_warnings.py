"""predict's input warnings (near-silent, very short, truncated) and `--precision`, on generated audio."""

from __future__ import annotations

import io
import json
import logging
import sys

import numpy as np
import pytest
import soundfile as sf

from orpheus.tagging import tagger as tagging
from orpheus.tagging.predict import run_predict
from tests.fixtures_tagging import tiny_run_dir  # noqa: F401  (fixture)


def music(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """A few seconds of chords over noise: loud enough to be music, not silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    return (0.5 * chord * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) / 1.5 + 0.02 * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    sf.write(str(folder / "fine.wav"), music(8, 16000), 16000)
    sf.write(str(folder / "silence.flac"), np.zeros(180 * 16000, np.float32), 16000, subtype="PCM_16")
    sf.write(str(folder / "short.wav"), music(0.5, 16000, seed=1), 16000)
    whole = folder.parent / "whole.mp3"
    sf.write(str(whole), np.stack([music(30, 44100, seed=2)] * 2, axis=1), 44100, format="MP3")
    data = whole.read_bytes()
    (folder / "truncated.mp3").write_bytes(data[:len(data) * 6 // 30])
    return folder


def test_predict_warns_on_silent_short_and_truncated_input(tiny_run_dir, odd_files, caplog):  # noqa: F811
    stream = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="orpheus.tagging.predict"):
        tally = run_predict(run_dir=str(tiny_run_dir), mp3=str(odd_files), fmt="json", jobs=2, quiet=True, stream=stream)
    assert tally.status == 0 and tally.total == len(list(odd_files.iterdir()))
    records = {r["file"].rsplit("/", 1)[-1]: r for r in map(json.loads, stream.getvalue().splitlines())}
    assert records["fine.wav"]["warnings"] == []
    assert len(records["silence.flac"]["warnings"]) == 1
    assert "near-silent (digital silence" in records["silence.flac"]["warnings"][0]
    assert len(records["short.wav"]["warnings"]) == 1 and "very short (0.50 s" in records["short.wav"]["warnings"][0]
    (truncated,) = records["truncated.mp3"]["warnings"]
    assert truncated.startswith("truncated: decoded ") and "of the 30.0 s its header announces" in truncated
    decoded_s = float(truncated.split()[2])
    assert 4.5 < decoded_s < 7.5, truncated
    assert all(len(r["tags"]) == len(tagging.TaggingEngine(tiny_run_dir).tags) for r in records.values())
    logged = [m for m in caplog.messages if "truncated" in m or "near-silent" in m or "very short" in m]
    assert len(logged) == 3


def test_streamed_long_file_and_recording_warn_too(tiny_run_dir, odd_files):  # noqa: F811
    tagger = tagging.TaggingEngine(tiny_run_dir)
    streamed = next(tagger.tag_files([odd_files / "silence.flac"], quiet=True, stream_threshold_s=60, block_s=20))
    whole = next(tagger.tag_files([odd_files / "silence.flac"], quiet=True))
    assert streamed.warnings == whole.warnings and "near-silent" in streamed.warnings[0]
    np.testing.assert_allclose(streamed.scores, whole.scores, atol=1e-5)
    quiet_recording = tagger.tag_audio("<microphone>", music(5, 16000) * 1e-4)
    assert quiet_recording.warnings and "RMS -" in quiet_recording.warnings[0]
    assert tagger.tag_audio("<microphone>", music(5, 16000)).warnings == []


@pytest.mark.parametrize("arithmetic", ["float32", "bf16"])
def test_fast_precision_matches_exact(tiny_run_dir, odd_files, arithmetic, monkeypatch, tmp_path, caplog):  # noqa: F811
    """OpenVINO float32 equals TensorFlow (1e-4); bf16 stays within the bound `fast` promises (0.03)."""
    pytest.importorskip("openvino")
    from orpheus.tagging import fast_arithmetic
    if arithmetic not in fast_arithmetic.available_candidates():
        pytest.skip(f"this CPU has no {arithmetic} instructions")
    monkeypatch.setattr(fast_arithmetic, "available_candidates", lambda flags=None: (arithmetic,))
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "cache"))
    exact = tagging.TaggingEngine(tiny_run_dir, embeddings=True, engine="tensorflow")
    with caplog.at_level(logging.INFO, logger="orpheus"):
        fast = tagging.TaggingEngine(tiny_run_dir, embeddings=True, precision="fast")
    assert [m for m in caplog.messages if "converting" in m] and [m for m in caplog.messages if "choosing" in m]
    assert exact.backend == "exact (TensorFlow, float32)"
    assert fast.backend == f"fast (OpenVINO {openvino_version()}, {arithmetic})"
    files = sorted(odd_files.glob("*"))
    bound = 1e-4 if arithmetic == "float32" else 0.03
    for e, f in zip(exact.tag_files(files, quiet=True), fast.tag_files(files, quiet=True)):
        assert np.abs(e.window_scores - f.window_scores).max() <= bound
        assert np.abs(e.embeddings - f.embeddings).max() <= bound * max(1.0, np.abs(e.embeddings).max())
    cached = tmp_path / "cache" / "openvino"
    assert [p.parent.name.endswith("-emb") for p in cached.glob("*/model.xml")] == [True]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="orpheus"):
        again = tagging.TaggingEngine(tiny_run_dir, embeddings=True, precision="fast")  # from the cached conversion
    assert again.backend == fast.backend
    assert not [m for m in caplog.messages if "converting" in m or "choosing" in m]


def openvino_version() -> str:
    import openvino
    return openvino.__version__


def test_fast_precision_without_openvino_says_so_and_runs_exact(tiny_run_dir, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with caplog.at_level(logging.WARNING, logger="orpheus.tagging.backends"):
        tagger = tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert tagger.backend == "exact (TensorFlow, float32)" and tagger.batch_size == tagging.BATCH_SIZES["tensorflow"]
    assert [m for m in caplog.messages if "OpenVINO is not installed" in m and "running exact" in m]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orpheus.tagging.backends"):
        assert tagging.TaggingEngine(tiny_run_dir).backend == "exact (TensorFlow, float32)"
    assert not caplog.messages  # exact without OpenVINO is simply TensorFlow
    with pytest.raises(tagging.ConfigError, match="--precision"):
        tagging.TaggingEngine(tiny_run_dir, precision="half")
