"""Model backends for tagging: `--precision exact` (float32) and `--precision fast` (int8 or bf16 where it pays).

Both run the model as OpenVINO IR where OpenVINO is installed (`pip install orpheus-tagger[openvino]`)
and the conversion reproduces TensorFlow, and as the Keras model in TensorFlow otherwise:

exact: float32. OpenVINO's float32 equals TensorFlow's to about 1e-6; every conversion is checked
       against the Keras model on a seeded batch (max |difference| <= `EXACT_TOLERANCE`) before it is
       used, and a model that fails the check (or does not convert) runs in TensorFlow: the Keras model
       wrapped once in a `tf.function` whose batch axis is free, so one graph serves every batch size.
fast:  the same IR in the arithmetic `orpheus.tagging.fast_arithmetic` chose for this CPU at first use, by
       timing each candidate and checking it against float32 on generated music: int8+bf16 (the
       spectrogram-reading convolutions in int8, `orpheus.tagging.quantize`, the rest bf16) or bf16 where the
       CPU has bf16 instructions (AVX512-BF16, AMX-BF16), int8 or float32 elsewhere. Without OpenVINO
       (or a usable conversion) it says so in one log line and runs exact.

OpenVINO runs a batch in the background (`Backend.start`) while the tagging thread reads and cuts the
next tracks.

The IR is cached under `$ORPHEUS_CACHE/openvino/<sha256 of model.keras>[-emb]` with its check
(`check.json`); a cache miss converts and checks once in a child process (`convert_command`), so a tagging process on OpenVINO never imports TensorFlow: TensorFlow alone is 0.70 GB of
resident memory and seconds of start-up. A deterministic failure (the converter refuses the model, or
its float32 differs from TensorFlow's) is remembered too, per OpenVINO version (`failed-<version>.txt`);
a cached IR that no longer loads is discarded and converted again. Every fall back to TensorFlow is a
WARNING that says why and how to try again.

Measured (MSD_musicnn, CPU ms per 3 s window on the 2-core AVX512-BF16 machine without AMX, batches
of 8-16 windows; track-score difference from TensorFlow over 47 real clips):

    TensorFlow float32                    21.8 ms (oneDNN's allocator, 1.26 GB peak) to 32.6 ms
                                          (system allocator, freed blocks unmapped: 0.86 GB peak)
    OpenVINO float32 (exact)              17.5 ms   max |dp| 4e-7, peak 0.45 GB
    OpenVINO bf16                         11.3 ms   max |dp| 0.007, top-3 tags equal on 46 of 47 clips
    OpenVINO int8, NNCF's defaults        16.4 ms   max |dp| 0.27-0.49 whichever layers are quantised
    OpenVINO int8+bf16                    about two thirds of bf16's time (`orpheus.tagging.quantize`; one thread,
                                          under load: 11.7 against 17.9 ms); max |dp| 0.008 over 50 real clips
    ONNX Runtime float32                  slower than TensorFlow

On a 2-core machine with AMX-BF16 (stop 17's), oneDNN runs fast's convolutions on AMX tiles
(`brgconv_avx512_amx_bf16`): 7.3 CPU ms a window for bf16 against 21.6 for float32 (OpenVINO's
per-node profile at 16 windows a call). The timbral convolutions are 65% of float32's time and the
temporal ones 18%; float32 runs them near the cores' AVX-512 peak, so exact cannot go much faster
without changing the arithmetic.

Int8 everywhere misses fast's bound (max |dp| <= 0.03): per-tensor activation scales cannot hold the
753 concatenated front-end/mid-end features, whose ranges differ by 30x; and convolutions with one
input channel (the timbral and temporal ones, 89% of the arithmetic) stay bf16 or float32 when
quantised as they are. `orpheus.tagging.quantize` folds their time taps into channels so that they run in
int8, and quantizes only them.
"""

from __future__ import annotations

import collections
import os
import hashlib
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from orpheus.cli import add_common_args, make_parser, quiet_tensorflow, run_main
from orpheus.errors import ConfigError, DataFormatError
from orpheus.tagging.fast_arithmetic import fast_model
from orpheus.files import default_cache_dir, publish_dir, write_json_atomic
from orpheus.formats.rundir import MODEL_FILE, load_model, read_run_info

log = logging.getLogger(__name__)

PRECISIONS = ("exact", "fast")
ENGINES = ("auto", "tensorflow")   # auto: OpenVINO where installed and checked, else TensorFlow
Forward = Callable[[np.ndarray], list[np.ndarray]]  # float32 windows -> [probabilities(, embeddings)]
Start = Callable[[np.ndarray], Callable[[], list[np.ndarray]]]  # windows -> a wait for forward's outputs
EXACT_TOLERANCE = 1e-4   # max |OpenVINO float32 - TensorFlow| on the check batch for exact to use OpenVINO
CHECK_BATCH = 4          # windows in that check batch (seeded normal noise)
CHECK_FILE, FAILED_FILE = "check.json", "failed.txt"


@dataclass(frozen=True)
class Backend:
    """What runs the model: its forward function and the shapes it declares.

    input_shape: the model input's shape, batch axis first (None where free).
    n_tags:      the width of the first output (the tag probabilities).
    engine:      what runs it, "tensorflow" or "openvino" (the default batch size depends on it).
    start:       `start(windows)` begins `forward(windows)` in the background and returns a function that
                 waits for its outputs; at most `in_flight` may run at once, and their waits are called in
                 the order they were started. None: only `forward`.
    """

    forward: Forward
    description: str
    input_shape: tuple[int | None, ...]
    n_tags: int
    engine: str          # "tensorflow" or "openvino"
    start: Start | None = None
    in_flight: int = 1


MMAP_THRESHOLD = 256 * 1024  # bytes: larger blocks are mapped per allocation and unmapped when freed


def use_system_allocator() -> None:
    """Make oneDNN allocate through the system allocator, which gives every batch's activations back; its own
    caches them (measured: predict's peak RSS 1.13 GB -> 0.95 GB at 8 windows per call, 1.36 -> 1.01 GB at 16).
    An environment variable TensorFlow reads when it loads: the tagging commands set it at start."""
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")


def return_freed_memory() -> None:
    """Make glibc hand large freed blocks (a batch's activations) back to the OS at once (TensorFlow).

    glibc's dynamic mmap threshold grows to 32 MB, after which activations are served from the heap,
    kept after the batch and fragmented over a long run: MSD_musicnn's peak RSS grew from 0.8 to 1.15 GB
    over an hour of audio. A fixed 256 kB threshold keeps the peak at one batch (about 0.85 GB at 8
    windows), at the price of page faults on every batch (about a third of TensorFlow's time). Keeping
    the blocks instead (one arena, no trimming) was faster but fragmented: 0.92-1.04 GB on the same hour.
    Only where glibc is the C library; a no-op elsewhere.
    """
    import ctypes
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols: glibc's mallopt where glibc is linked
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also turns the dynamic threshold off)
    except (OSError, AttributeError):
        pass


def forward_model(model, embeddings: bool):
    """`model`, or a Keras model with its "embedding" layer's output as a second output."""
    if not embeddings:
        return model
    import keras
    try:
        embedding = model.get_layer("embedding").output
    except ValueError as err:
        raise DataFormatError('--embeddings needs a layer named "embedding"; this model has none') from err
    return keras.Model(model.inputs, [model.output, embedding])


def compiled_model(forward_model, rank: int, window_frames: int | None = None):
    """`forward_model` (a Keras model) in a `tf.function` for any batch size, returning a list of outputs.

    The batch axis (and the time axis where the model leaves it free) is free; the feature axis is the
    model's own: with an unknown channel count Keras runs the first convolution through XLA, which
    exporters cannot convert. `window_frames` fixes a free time axis (for LiteRT).
    """
    import tensorflow as tf
    shape = [None] + list(forward_model.input_shape[1:rank])
    if window_frames is not None and rank > 1:
        shape[1] = window_frames

    @tf.autograph.experimental.do_not_convert
    def infer(windows):
        out = forward_model(windows, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return tf.function(infer, input_signature=[tf.TensorSpec(shape, tf.float32)])


def openvino_model(function, n_outputs: int):
    """A traced model (`compiled_model(...).get_concrete_function()`) as an OpenVINO model with exactly its
    `n_outputs` outputs: `openvino.convert_model` also returns Keras's seed-generator state as scalar outputs."""
    import openvino as ov
    converted = ov.convert_model(function)
    if len(converted.outputs) > n_outputs:
        converted = ov.Model([converted.output(i) for i in range(n_outputs)], converted.get_parameters(), "orpheus")
    return converted


def tf_backend(model) -> Backend:
    """The exact backend: one traced graph for every batch size."""
    compiled = compiled_model(model, len(model.inputs[0].shape))
    output_shape = model.outputs[0].shape
    return Backend(lambda windows: [t.numpy() for t in compiled(windows)], "exact (TensorFlow, float32)",
                   tuple(model.inputs[0].shape), int(output_shape[-1]), "tensorflow")


def model_digest(model_file: Path) -> str:
    """sha256 of the model file (the OpenVINO cache key)."""
    digest = hashlib.sha256()
    with open(model_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def openvino_ir(run_dir: Path, embeddings: bool) -> Path | None:
    """The checked OpenVINO IR of `run_dir`'s model (converted once, cached), or None with the reason logged.

    Only a deterministic failure ("cannot convert", "differs from TensorFlow by X") is remembered, in
    `failed-<OpenVINO version>.txt`, so a newer OpenVINO tries again; a conversion that failed for a
    passing reason (the child killed for memory, a full /tmp) is tried again by the next run."""
    import openvino as ov

    cache = default_cache_dir() / "openvino" / f"{model_digest(run_dir / MODEL_FILE)}{'-emb' if embeddings else ''}"
    failed = cache / failed_file(ov.__version__)
    if (cache / "model.xml").is_file() and (cache / CHECK_FILE).is_file():
        return cache / "model.xml"
    if failed.is_file():
        log.warning("%s: runs in TensorFlow, slower: OpenVINO %s cannot run this model exactly (%s); delete %s to "
                    "try again", run_dir, ov.__version__, failed.read_text().strip(), failed)
        return None
    with tempfile.TemporaryDirectory(prefix="orpheus-openvino-") as tmp:
        out = Path(tmp) / "ir"
        failure = convert_in_child(run_dir, out, embeddings)
        if failure is not None and not (out / FAILED_FILE).is_file():   # a passing cause: nothing remembered
            log.warning("%s: runs in TensorFlow this time, slower: the conversion to OpenVINO failed (%s); the next "
                        "run tries again", run_dir, failure)
            return None
        if failure is not None:
            log.warning("%s: runs in TensorFlow, slower: OpenVINO %s cannot run this model exactly (%s); remembered "
                        "in %s (delete it to try again)", run_dir, ov.__version__, failure, failed)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            if failure is not None:
                cache.mkdir(exist_ok=True)
                failed.write_text(failure + "\n")
                return None
            if cache.is_dir() and not (cache / CHECK_FILE).is_file():
                shutil.rmtree(cache, ignore_errors=True)  # an unchecked IR, or failures of other OpenVINO versions
            publish_dir(out, cache)
        except OSError as err:  # a read-only cache only costs the conversion next time
            log.warning("cannot cache the OpenVINO model in %s (%s): every run converts it again; set ORPHEUS_CACHE "
                        "to a folder you can write to", cache, err.strerror or err)
            if failure is None:  # read it before the temporary folder goes
                return _keep_in_memory(out / "model.xml")
            return None
        return cache / "model.xml"


def failed_file(version: str) -> str:
    """The name of the record of a deterministic conversion failure under OpenVINO `version`."""
    return f"failed-{version.replace('/', '_')}.txt"


def checked_backend(run_dir: Path, precision: str, embeddings: bool, window_frames: int) -> Backend | None:
    """The OpenVINO backend of `run_dir`'s model, or None when it must run in TensorFlow (the reason logged).

    A cached IR that OpenVINO cannot load (a truncated or corrupted model.bin) is discarded and converted
    again, with a WARNING."""
    ir = openvino_ir(run_dir, embeddings)
    if ir is None:
        return None
    try:
        return openvino_backend(ir, precision, run_dir, window_frames, embeddings)
    except RuntimeError as err:   # OpenVINO's error for an IR it cannot read or compile
        if not isinstance(ir, Path):
            raise
        reason = (str(err).strip().splitlines() or ["no message"])[-1][:200]
        log.warning("%s: the cached OpenVINO model cannot be loaded (%s); discarding it and converting again",
                    ir.parent, reason)
        shutil.rmtree(ir.parent, ignore_errors=True)
    ir = openvino_ir(run_dir, embeddings)
    return None if ir is None else openvino_backend(ir, precision, run_dir, window_frames, embeddings)


def _keep_in_memory(xml: Path):
    import openvino as ov
    return ov.Core().read_model(str(xml))


def openvino_backend(ir, precision: str, run_dir: Path, window_frames: int, embeddings: bool) -> Backend:
    """`ir` (a model.xml path or a read model) of `run_dir`'s model compiled for this CPU: float32 for exact,
    for fast the arithmetic `orpheus.tagging.fast_arithmetic` chose on this CPU for windows of `window_frames`."""
    import openvino as ov
    import openvino.properties.hint as hints
    core = ov.Core()
    if precision == "fast":
        key = f"{model_digest(run_dir / MODEL_FILE)}{'-emb' if embeddings else ''}"
        chosen = fast_model(ir, read_run_info(run_dir), window_frames, default_cache_dir(), key)
        model, config, name = chosen.model, chosen.config, chosen.arithmetic
    else:
        model = core.read_model(str(ir)) if isinstance(ir, Path) else ir
        config, name = {hints.inference_precision: "f32"}, "float32"
    compiled = core.compile_model(model, "CPU", config)
    n_outputs = len(compiled.outputs)
    # fast compiles for throughput: one stream per core (2 cores: 2 streams of 1 thread), one request each
    in_flight = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def starter() -> Start:
        idle = collections.deque(compiled.create_infer_request() for _ in range(in_flight))

        def start(windows: np.ndarray) -> Callable[[], list[np.ndarray]]:
            running = idle.popleft()
            running.start_async({0: np.ascontiguousarray(windows, np.float32)})

            def wait() -> list[np.ndarray]:
                running.wait()
                outputs = [np.array(running.get_output_tensor(i).data) for i in range(n_outputs)]
                idle.append(running)
                return outputs
            return wait
        return start

    start, start_parts = starter(), starter()  # forward has requests of its own

    def forward(windows: np.ndarray) -> list[np.ndarray]:
        """The outputs for `windows`, split over the streams (each runs its part on its own cores)."""
        waits = [start_parts(part) for part in np.array_split(windows, min(in_flight, max(1, windows.shape[0])))]
        parts = [wait() for wait in waits]
        return [np.concatenate([part[i] for part in parts]) for i in range(n_outputs)]

    shape = compiled.inputs[0].get_partial_shape()
    input_shape = tuple(d.get_length() if d.is_static else None for d in shape)
    n_tags = compiled.outputs[0].get_partial_shape()[-1].get_length()
    return Backend(forward, f"{precision} (OpenVINO {ov.__version__}, {name})", input_shape, n_tags, "openvino",
                   start, in_flight)


def convert_in_child(run_dir: Path, out: Path, embeddings: bool) -> str | None:
    """Convert and check `run_dir`'s model into `out` in a child process (which imports TensorFlow).

    Returns None on success, else the child's one-line reason."""
    log.info("converting %s to OpenVINO once (checked against TensorFlow, cached for later runs)", run_dir)
    command = [sys.executable, "-c", CONVERT_CHILD, str(run_dir), str(out), "--quiet"]
    done = subprocess.run(command + (["--embeddings"] if embeddings else []), capture_output=True, text=True)
    if done.returncode == 0:
        return None
    if done.returncode < 0:   # a signal: the kernel's out-of-memory killer sends SIGKILL
        name = signal.Signals(-done.returncode).name
        return f"the converting process was killed by {name}{' (out of memory?)' * (name == 'SIGKILL')}"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no message"]
    return lines[-1].split(": error: ", 1)[-1]


def convert(run_dir: str | Path, out: str | Path, embeddings: bool = False) -> Path:
    """Write the OpenVINO IR (out/model.xml + model.bin, float32 weights) of a run directory's model and
    out/check.json, after checking it reproduces the Keras model on a seeded batch.

    Raises:
        DataFormatError: OpenVINO cannot convert the model, or its float32 output differs from
            TensorFlow's by more than `EXACT_TOLERANCE`.
    """
    import openvino as ov
    import openvino.properties.hint as hints

    run_dir, out = Path(run_dir), Path(out)
    model = forward_model(load_model(run_dir), embeddings)
    graph = compiled_model(model, len(model.inputs[0].shape))
    try:
        converted = openvino_model(graph.get_concrete_function(), len(model.outputs))
    except Exception as err:  # noqa: BLE001  (the converter raises many kinds; each means "no")
        raise DataFormatError(f"the OpenVINO converter failed: {str(err).splitlines()[0][:200]}") from err
    shape = list(model.inputs[0].shape[1:])
    if shape and shape[0] is None:
        shape[0] = read_run_info(run_dir).window_frames
    check = np.random.default_rng(0).normal(size=[CHECK_BATCH, *shape]).astype(np.float32)
    expected = [t.numpy() for t in graph(check)]
    compiled = ov.Core().compile_model(converted, "CPU", {hints.inference_precision: "f32"})
    outputs = compiled.create_infer_request().infer({0: check})
    got = [np.array(outputs[i]) for i in range(len(compiled.outputs))]
    if [e.shape for e in expected] != [g.shape for g in got]:
        raise DataFormatError(f"OpenVINO's outputs {[g.shape for g in got]} are not TensorFlow's "
                              f"{[e.shape for e in expected]}")
    worst = max(float(np.abs(e - g).max()) for e, g in zip(expected, got))
    if not worst <= EXACT_TOLERANCE:
        raise DataFormatError(f"OpenVINO float32 differs from TensorFlow by {worst:.2g} (> {EXACT_TOLERANCE:g})")
    ov.save_model(converted, str(out / "model.xml"), compress_to_fp16=False)
    write_json_atomic(out / CHECK_FILE, {"max_abs_difference": worst, "batch": CHECK_BATCH, "openvino": ov.__version__})
    return out / "model.xml"


def make_backend(run_dir: str | Path, precision: str, embeddings: bool, keras_model: Callable[[], object],
                 engine: str = "auto", window_frames: int | None = None, *, free_memory: bool = False) -> Backend:
    """The backend for `precision` (see the module docstring); `keras_model()` gives the Keras model,
    called only when TensorFlow runs it. `engine` "tensorflow" skips OpenVINO. `window_frames`: the
    time axis the caller feeds (default the run's window), which fast's model is compiled for. `free_memory`: call
    `return_freed_memory` when TensorFlow runs the model."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    run_dir = Path(run_dir)
    if engine == "auto" and (run_dir / MODEL_FILE).is_file():  # else keras_model() names what is missing
        try:
            import openvino  # noqa: F401
        except ImportError:
            if precision == "fast":
                log.warning("--precision fast: OpenVINO is not installed (pip install orpheus-tagger[openvino]); "
                            "running exact")
        else:
            if window_frames is None:
                window_frames = read_run_info(run_dir).window_frames
            backend = checked_backend(run_dir, precision, embeddings, window_frames)
            if backend is not None:
                return backend
            if precision == "fast":
                log.warning("--precision fast: no OpenVINO model; running exact in TensorFlow")
    if free_memory:
        return_freed_memory()
    return tf_backend(forward_model(keras_model(), embeddings))


# The child process of `convert_in_child`: an internal command, started by tagging, never by a user.
CONVERT_CHILD = "import sys; from orpheus.tagging.backends import convert_command; sys.exit(convert_command(sys.argv[1:]))"


def convert_command(argv: list[str]) -> int:
    """RUN_DIR OUT [--embeddings] [--quiet]: write a run directory's model as checked OpenVINO IR into OUT; the
    last line on stderr says why it failed (a deterministic failure is also written to OUT/FAILED_FILE)."""
    quiet_tensorflow(argv)   # before TensorFlow is imported, as `orpheus.cli.main` does for the commands
    parser = make_parser("orpheus-openvino-convert", "Convert a run directory's model to checked OpenVINO IR.",
                         "(run by tagging in a child process, see convert_in_child)")
    parser.add_argument("run_dir", help="run directory (run.json + model.keras)")
    parser.add_argument("out", help="folder for model.xml + model.bin")
    parser.add_argument("--embeddings", action="store_true", help='add the "embedding" layer as a second output')
    add_common_args(parser)

    def run(args) -> None:
        try:
            print(convert(args.run_dir, args.out, args.embeddings))
        except DataFormatError as err:   # deterministic: the parent remembers it (see openvino_ir)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / FAILED_FILE).write_text(f"{err}\n")
            raise
    return run_main(parser, argv, run)
