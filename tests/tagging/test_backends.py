"""The tagging backends (`orpheus.tagging.backends`): fast's bound on music, no TensorFlow on the fast path, errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orpheus.tagging import backends as inference

from orpheus.tagging import tagger as tagging
from orpheus.errors import ConfigError, DataFormatError
from tests.fixtures_tagging import tiny_run_dir  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def msd_exact_scores():
    """MSD_musicnn's exact track scores per music folder (computed once per folder)."""
    from orpheus.models.pretrained import pretrained_run_dir
    run_dir, scores = pretrained_run_dir("MSD_musicnn"), {}

    def exact(folder: Path) -> dict[str, np.ndarray]:
        if folder not in scores:
            files = sorted(folder.glob("*.ogg"))
            scores[folder] = {r.file: r.scores for r in tagging.TaggingEngine(run_dir).tag_files(files, quiet=True)}
        return scores[folder]
    return run_dir, exact


@pytest.mark.parametrize("arithmetic", ["int8+bf16", "bf16", "int8"])
def test_fast_meets_its_bound_on_music(music_dir, msd_exact_scores, arithmetic, monkeypatch):
    """The promise of --precision fast, for each arithmetic it may choose on this CPU: track scores within 0.03
    of exact, top-3 tags equal on >= 90% of files."""
    pytest.importorskip("openvino")
    from orpheus.tagging import fast_arithmetic
    if arithmetic not in fast_arithmetic.available_candidates():
        pytest.skip(f"this CPU does not offer {arithmetic}")
    monkeypatch.setattr(fast_arithmetic, "available_candidates", lambda flags=None: (arithmetic,))
    run_dir, exact_scores = msd_exact_scores
    exact = exact_scores(music_dir)
    fast_tagger = tagging.TaggingEngine(run_dir, precision="fast")
    assert fast_tagger.backend.startswith("fast (OpenVINO") and fast_tagger.backend.endswith(f", {arithmetic})")
    fast = {r.file: r.scores for r in fast_tagger.tag_files(sorted(music_dir.glob("*.ogg")), quiet=True)}
    assert len(fast) == len(exact) >= 3
    worst = max(float(np.abs(exact[f] - fast[f]).max()) for f in exact)
    same_top3 = [set(np.argsort(-exact[f])[:3]) == set(np.argsort(-fast[f])[:3]) for f in exact]
    assert worst <= 0.03
    assert sum(same_top3) >= 0.9 * len(same_top3)


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_tagging_on_openvino_imports_no_tensorflow(tiny_run_dir, tmp_path, precision):  # noqa: F811
    """Once converted, both precisions tag without TensorFlow (start-up and ~0.7 GB of memory saved)."""
    pytest.importorskip("openvino")
    env = {**os.environ, "ORPHEUS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    script = (
        "import sys, json, numpy as np\n"
        "from orpheus.tagging.tagger import TaggingEngine\n"
        f"tagger = TaggingEngine({str(tiny_run_dir)!r}, precision={precision!r})\n"
        "result = tagger.tag_audio('noise', np.random.default_rng(0).normal(size=48000).astype('float32') * 0.1)\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules or 'keras' in sys.modules, 'backend': tagger.backend,\n"
        "                  'n': len(result.scores)}))\n")
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]
    for run in runs:  # the first run converts in a child process, the second reads the cache
        assert run["tf"] is False and run["backend"].startswith(f"{precision} (OpenVINO") and run["n"] == 6
    cached = list((tmp_path / "cache" / "openvino").glob("*/check.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["max_abs_difference"] <= 1e-4


def test_a_model_openvino_cannot_take_runs_in_tensorflow(tiny_run_dir, tmp_path, monkeypatch, caplog):  # noqa: F811
    """A deterministic conversion failure is a WARNING, remembered for this OpenVINO version, and the model goes to
    TensorFlow (here: it is unreadable, so TensorFlow's one-line error follows)."""
    openvino = pytest.importorskip("openvino")
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((tiny_run_dir / "run.json").read_text())
    (broken / "model.keras").write_bytes(b"not a keras archive")
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.backends"):
        with pytest.raises(DataFormatError, match=r"broken/model.keras: cannot load the model"):
            tagging.TaggingEngine(broken, precision="fast")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warned if "OpenVINO" in m and "cannot run this model exactly" in m and "cannot load" in m
            and "delete it to try again" in m]
    recorded = [p.name for p in (tmp_path / "cache" / "openvino").glob("*/*")]
    assert recorded == [inference.failed_file(openvino.__version__)]   # a newer OpenVINO tries again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.backends"):
        with pytest.raises(DataFormatError, match="cannot load the model"):
            tagging.TaggingEngine(broken)
    assert not [m for m in caplog.messages if "converting" in m]  # the failure was remembered
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warned if "runs in TensorFlow, slower" in m]   # every fall back says so


def test_an_unwritable_cache_only_costs_the_conversion_next_time(tiny_run_dir, tmp_path, monkeypatch, caplog):  # noqa: F811
    pytest.importorskip("openvino")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("ORPHEUS_CACHE", str(tmp_path / "a-file" / "cache"))  # mkdir fails, even for root
    with caplog.at_level(logging.INFO, logger="orpheus.tagging.backends"):
        tagger = tagging.TaggingEngine(tiny_run_dir, precision="fast")
    assert "OpenVINO" in tagger.backend and [m for m in caplog.messages if "cannot cache" in m]
    noise = np.random.default_rng(1).normal(size=32000).astype(np.float32) * 0.1
    reference = tagging.TaggingEngine(tiny_run_dir, engine="tensorflow").tag_audio("noise", noise).scores
    np.testing.assert_allclose(tagger.tag_audio("noise", noise).scores, reference, atol=0.03)


def test_batch_size_defaults_follow_the_engine(tiny_run_dir):  # noqa: F811
    tensorflow = tagging.TaggingEngine(tiny_run_dir, engine="tensorflow")
    assert tensorflow.batch_size == tagging.BATCH_SIZES["tensorflow"] == 8
    assert tagging.TaggingEngine(tiny_run_dir, engine="tensorflow", batch_size=3).batch_size == 3
    pytest.importorskip("openvino")
    for precision in ("exact", "fast"):
        tagger = tagging.TaggingEngine(tiny_run_dir, precision=precision)
        assert "OpenVINO" in tagger.backend and tagging.BATCH_SIZES["openvino"] == 16
        assert tagger.batch_size * tagger._in_flight == 16  # fast runs batches at once: 16 windows in all
    with pytest.raises(ConfigError, match="engine"):
        tagging.TaggingEngine(tiny_run_dir, engine="onnx")
