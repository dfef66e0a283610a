"""What runs `--precision fast` on this CPU: candidate arithmetics, measured once per CPU, the choice cached.

Candidates (those this CPU has the instructions for):

    bf16       the checked float32 IR compiled at bf16 inference precision (AVX512-BF16 or AMX-BF16)
    int8+bf16  its single-channel convolutions in int8 (`orpheus.tagging.quantize`), the rest bf16 (same CPUs)
    int8       the same with the rest in float32 (CPUs without bf16)
    float32    exact's arithmetic: always a candidate, so fast is never slower than exact

At first use (per CPU model, model digest, window length and OpenVINO version) each candidate is
compiled, timed (CPU ms per window, `TIMING_BATCH` windows a call, the fastest of `TIMING_ROUNDS`
interleaved rounds) and checked against float32 on music generated in code (`orpheus.tagging.calibration`:
`CHECK_SEEDS`, other clips than the quantization's `CALIBRATION_SEEDS`). A candidate whose clip scores
(mean over a clip's windows, every output) differ from float32's by more than `CHECK_BOUND`, half of
fast's promise, is refused; the fastest one left wins. The choice, with every candidate's figures, is
`choice.json` in

    $ORPHEUS_CACHE/openvino-fast/<model digest>[-emb]-<window frames>/<sha256 of CPU model, flags, OpenVINO
                                                                         version, candidates and recipe>/

with the quantized model beside it when an int8 candidate won. Measured on the 2-core AMD EPYC (Zen 4:
AVX512-BF16 and VNNI, no AMX), MSD_musicnn, one thread, under load: bf16 17.3-19.2 CPU ms a window,
int8+bf16 11.5-12.5, float32 32-33; over 50 real 10 s clips, max |p - p_exact| 0.009 (bf16) and
0.008 (int8+bf16), top-3 tags equal on 47 clips with both (the other 3 have their 3rd and 4th tags
within 0.002). The choice costs 12-17 CPU s (under load) and peaks at 0.74 GB, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orpheus import cpu
from orpheus.files import publish_dir, write_json_atomic
from orpheus.tagging import quantize
from orpheus.tagging.calibration import calibration_windows
from orpheus.tagging.quantize import quantize_front_end, single_channel_convolutions

log = logging.getLogger(__name__)

CHECK_BOUND = 0.015   # max |clip score - float32's| a candidate may show on the check clips (promise: 0.03)
CALIBRATION_SEEDS = range(16)      # generated clips the int8 ranges and weights are fitted to (64 windows)
CHECK_SEEDS = range(1000, 1008)    # other clips every candidate is checked on
TIMING_BATCH = 8      # windows per call when timing and checking (fast's batch per stream on 2 cores)
TIMING_ROUNDS = 3
CHOICE_FILE = "choice.json"
MAX_STREAMS = 2


@dataclass(frozen=True)
class FastModel:
    """What `--precision fast` compiles: an OpenVINO model, its compile-time settings and a short name."""

    model: object          # openvino.Model
    config: dict
    arithmetic: str        # one of the candidate names


def cpu_info() -> tuple[str, list[str]]:
    """(CPU model name, its flags that matter here, sorted): the key the cached choice is stored under."""
    return cpu.cpu_name(), [flag for flag in cpu.cpu_flags() if flag != "amx_tile"]


def available_candidates(flags: list[str] | None = None) -> tuple[str, ...]:
    """The candidates this CPU (its `flags`, default this machine's) has the instructions for, best guess first."""
    flags = cpu_info()[1] if flags is None else flags
    if any(flag in flags for flag in cpu.BF16_FLAGS):
        return "int8+bf16", "bf16", "float32"
    return "int8", "float32"


def _precision(arithmetic: str) -> str:
    return "bf16" if arithmetic.endswith("bf16") else "f32"


def candidate_model(model, arithmetic: str, calibration: np.ndarray | None):
    """`model` (static shape) as `arithmetic` runs it (int8: quantized on the `calibration` windows)."""
    if arithmetic.startswith("int8"):
        return quantize_front_end(model, calibration)
    return model


def with_static_window(model, window_frames: int):
    """A copy of `model` whose time axis (the input's second), where free, is fixed at `window_frames`."""
    import openvino as ov
    model = model.clone()
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() >= 2 and shape[1].is_dynamic:
        dims = [ov.Dimension(-1), ov.Dimension(window_frames)] + [shape[i] for i in range(2, shape.rank.get_length())]
        model.reshape(ov.PartialShape(dims))
    return model


def compile_config(arithmetic: str) -> dict:
    """OpenVINO's settings for `arithmetic`: its precision, and `MAX_STREAMS` throughput streams (2 cores: 2
    streams of one thread, each its own batch), which keep each core busy without waiting for the other's
    half of a batch while decoding takes CPU time here and there. More streams would each hold a batch's
    activations (MSD_musicnn: about 0.1 GB for 8 windows)."""
    import openvino.properties as props
    import openvino.properties.hint as hints
    return {hints.inference_precision: _precision(arithmetic), hints.performance_mode: hints.PerformanceMode.THROUGHPUT,
            props.num_streams: min(MAX_STREAMS, os.cpu_count() or 1)}


def _one_stream(arithmetic: str) -> dict:
    """The settings to check and time `arithmetic` with: one stream of one thread, what each of tagging's
    streams runs (CPU time per window is the same), holding one stream's memory (all candidates stay
    compiled while they are timed in turns)."""
    import openvino.properties as props
    return {**compile_config(arithmetic), props.num_streams: 1, props.inference_num_threads: 1}


def measure(compiled: dict, windows: np.ndarray) -> dict[str, float]:
    """CPU ms per window of each compiled model on `windows` (the fastest of interleaved rounds)."""
    requests = {name: c.create_infer_request() for name, c in compiled.items()}
    for request in requests.values():  # warm-up: the first call allocates and JITs
        request.infer({0: windows})
    best = {name: float("inf") for name in compiled}
    for _ in range(TIMING_ROUNDS):
        for name, request in requests.items():
            start = time.process_time()
            request.infer({0: windows})
            best[name] = min(best[name], (time.process_time() - start) * 1000 / windows.shape[0])
    return best


def clip_means(request, windows: np.ndarray, clips: np.ndarray) -> list[np.ndarray]:
    """Every output of `request` on `windows`, averaged over each clip's windows: [n_clips, ...] per output."""
    outputs: list[list[np.ndarray]] = []
    for start in range(0, windows.shape[0], TIMING_BATCH):
        result = request.infer({0: windows[start:start + TIMING_BATCH]})
        outputs.append([np.array(result[i]) for i in range(len(result))])
    per_output = [np.concatenate(parts) for parts in zip(*outputs)]
    return [np.stack([o[clips == c].mean(axis=0) for c in np.unique(clips)]) for o in per_output]


def choose(model, info, window_frames: int, candidates: tuple[str, ...] | None = None) -> tuple[FastModel, dict]:
    """Measure the candidates on this CPU and return the fastest that passes the check, with the record.

    Args:
        model: the float32 OpenVINO model (the checked IR).
        info: the run's `RunInfo` (features and normalisation, for the generated windows).
        window_frames: the time axis the tagger feeds.
        candidates: names to try; default `available_candidates()`.
    """
    import openvino as ov

    static = with_static_window(model, window_frames)
    quantizable = bool(single_channel_convolutions(static))
    candidates = [c for c in (available_candidates() if candidates is None else candidates)
                  if quantizable or not c.startswith("int8")]
    check, clips = calibration_windows(info, CHECK_SEEDS, window_frames)
    calibration = (calibration_windows(info, CALIBRATION_SEEDS, window_frames)[0]
                   if any(c.startswith("int8") for c in candidates) else None)
    core = ov.Core()
    float32 = core.compile_model(static, "CPU", _one_stream("float32"))
    reference = clip_means(float32.create_infer_request(), check, clips)
    models, compiled, record = {}, {}, {}
    for name in candidates:
        models[name] = candidate = candidate_model(static, name, calibration)
        compiled[name] = float32 if name == "float32" else core.compile_model(candidate, "CPU", _one_stream(name))
        got = clip_means(compiled[name].create_infer_request(), check, clips)
        worst = max(float(np.abs(g - r).max() / max(1.0, float(np.abs(r).max()))) for g, r in zip(got, reference))
        record[name] = {"max_abs_difference": round(worst, 5), "passes": worst <= CHECK_BOUND}
        if not record[name]["passes"]:
            del compiled[name]  # its memory back before the next candidate
    del float32
    timing = np.resize(check, (TIMING_BATCH, *check.shape[1:]))  # the first windows, repeated if too few
    for name, ms in measure(compiled, timing).items():
        record[name]["cpu_ms_per_window"] = round(ms, 3)
    passing = list(compiled) or ["float32"]
    chosen = min(passing, key=lambda n: record.get(n, {}).get("cpu_ms_per_window", float("inf")))
    if chosen not in models:  # nothing passed and float32 was not among the candidates
        models[chosen] = static
    return FastModel(models[chosen], compile_config(chosen), chosen), record


def choice_dir(cache_root: Path, model_key: str, window_frames: int) -> Path:
    """The folder of this CPU's choice for a model (see the module docstring); the candidates and the
    recipe (quantization and check settings) are part of the key, so that a version that changes them
    chooses again."""
    import openvino as ov

    name, flags = cpu_info()
    recipe = [list(CALIBRATION_SEEDS), list(CHECK_SEEDS), CHECK_BOUND, quantize.GROUP, quantize.GPTQ_DAMPING,
              quantize.HESSIAN_STRIDE]
    key = json.dumps([name, flags, ov.__version__, available_candidates(flags), recipe])
    machine = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root / "openvino-fast" / f"{model_key}-{window_frames}" / machine


def fast_model(ir, info, window_frames: int, cache_root: Path | None, model_key: str | None) -> FastModel:
    """The model, settings and name `--precision fast` runs on this CPU: read from the cache, else chosen
    (`choose`) and cached. `ir` is the float32 IR (a model.xml path or a read model); without a cache
    (`cache_root` or `model_key` None, or an unwritable folder) the choice is made again in each process."""
    import openvino as ov
    model = ov.Core().read_model(str(ir)) if isinstance(ir, Path) else ir
    folder = choice_dir(cache_root, model_key, window_frames) if cache_root and model_key else None
    if folder is not None and (folder / CHOICE_FILE).is_file():
        try:
            chosen = json.loads((folder / CHOICE_FILE).read_text())["chosen"]
            if chosen.startswith("int8"):
                return FastModel(ov.Core().read_model(str(folder / "model.xml")), compile_config(chosen), chosen)
            return FastModel(with_static_window(model, window_frames), compile_config(chosen), chosen)
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # a damaged record: choose again
            log.info("%s: unreadable (%s); choosing again", folder, err)
    name, _ = cpu_info()
    log.info("choosing --precision fast's arithmetic for this CPU (%s) once: each candidate timed and checked "
             "against float32", name)
    chosen, record = choose(model, info, window_frames)
    log.info("--precision fast on this CPU: %s (%s)", chosen.arithmetic,
             ", ".join(f"{n}: {r.get('cpu_ms_per_window', '-')} CPU ms/window, max |dp| {r['max_abs_difference']}"
                       for n, r in record.items()))
    if folder is not None:
        _cache_choice(folder, chosen, record, window_frames)
    return chosen


def _cache_choice(folder: Path, chosen: FastModel, record: dict, window_frames: int) -> None:
    import openvino as ov

    name, flags = cpu_info()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="orpheus-fast-", dir=folder.parent) as tmp:
            if chosen.arithmetic.startswith("int8"):
                ov.save_model(chosen.model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
            write_json_atomic(Path(tmp) / CHOICE_FILE, {
                "chosen": chosen.arithmetic, "cpu": name, "cpu_flags": flags, "openvino": ov.__version__,
                "window_frames": window_frames, "check_bound": CHECK_BOUND, "candidates": record})
            shutil.rmtree(folder, ignore_errors=True)  # a damaged record
            publish_dir(Path(tmp), folder)
    except OSError as err:  # a read-only cache only costs the choice next time
        log.info("cannot cache --precision fast's choice in %s (%s)", folder, err)
