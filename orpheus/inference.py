"""Model backends for tagging: `--precision exact` (TensorFlow) and `--precision fast` (OpenVINO).

exact: the Keras model wrapped once in a `tf.function` whose input signature leaves the batch axis
       free, so one graph serves every batch size. float32; today's numbers.
fast:  the same graph converted to OpenVINO (`openvino.convert_model`) and compiled for this CPU,
       cached under `$ORPHEUS_CACHE/openvino/<sha256 of model.keras>` so the conversion runs once.
       Its inference precision is bf16 where the CPU has AMX-BF16 and float32 elsewhere: measured on
       an AVX-512-BF16 CPU without AMX (2 cores), MSD_musicnn took 36 ms of CPU per window in
       TensorFlow, 28 ms in OpenVINO float32 and 45 ms in OpenVINO bf16 (the bf16 conversions cost
       more than they save without AMX); ONNX Runtime was slower than TensorFlow. OpenVINO float32
       differs from TensorFlow by < 1e-6. Where OpenVINO is not installed (`pip install
       orpheus-tagger[openvino]`), `fast` says so in one log line and runs exact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("exact", "fast")
Forward = Callable[[np.ndarray], list[np.ndarray]]  # float32 windows -> [probabilities(, embeddings)]


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


MMAP_THRESHOLD = 256 * 1024  # bytes: larger blocks are mapped per allocation and unmapped when freed


def return_freed_memory() -> None:
    """Make glibc hand large freed blocks (a batch's activations) back to the OS at once.

    glibc's dynamic mmap threshold grows to 32 MB, after which activations are served from the heap,
    kept after the batch and fragmented over a long run: MSD_musicnn's peak RSS grew from 0.8 to 1.15 GB
    over an hour of audio. A fixed 256 kB threshold keeps the peak at one batch (about 0.85 GB at 8
    windows). Only where glibc is the C library; a no-op elsewhere.
    """
    import ctypes
    try:
        libc = ctypes.CDLL(None)  # this process's own symbols: glibc's mallopt where glibc is linked
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also turns the dynamic threshold off)
    except (OSError, AttributeError):
        pass


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


def tf_forward(forward_model, rank: int) -> Forward:
    """The exact backend: one traced graph for every batch size."""
    compiled = compiled_model(forward_model, rank)
    return lambda windows: [t.numpy() for t in compiled(windows)]


def model_digest(model_file: Path) -> str:
    """sha256 of the model file (the OpenVINO cache key)."""
    digest = hashlib.sha256()
    with open(model_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def openvino_forward(forward_model, rank: int, model_file: Path, embeddings: bool) -> tuple[Forward, str] | None:
    """The OpenVINO backend, or None (logged once) where OpenVINO is not installed."""
    try:
        import openvino as ov
        import openvino.properties.hint as hints
    except ImportError:
        log.warning("--precision fast: OpenVINO is not installed (pip install orpheus-tagger[openvino]); "
                    "running exact")
        return None
    from orpheus.pretrained import default_cache_dir
    cache = default_cache_dir() / "openvino" / f"{model_digest(model_file)}{'-emb' if embeddings else ''}"
    xml = cache / "model.xml"
    core = ov.Core()
    if xml.is_file():
        model = core.read_model(str(xml))
    else:
        model = ov.convert_model(compiled_model(forward_model, rank).get_concrete_function())
        try:
            write_openvino(model, cache)
        except OSError as err:  # a read-only cache only costs the conversion next time
            log.info("cannot cache the OpenVINO model in %s (%s)", cache, err)
    precision = "bf16" if "amx_bf16" in cpu_flags() else "f32"
    compiled = core.compile_model(model, "CPU", {hints.inference_precision: precision})
    request = compiled.create_infer_request()

    def forward(windows: np.ndarray) -> list[np.ndarray]:
        outputs = request.infer({0: np.ascontiguousarray(windows, np.float32)})
        return [np.array(outputs[i]) for i in range(len(compiled.outputs))]

    return forward, f"fast (OpenVINO {ov.__version__}, {precision})"


def write_openvino(model, folder: Path) -> None:
    """Save an OpenVINO model as folder/model.xml + model.bin (float32 weights), atomically."""
    import openvino as ov
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "model.xml").is_file():
            raise


def make_forward(forward_model, rank: int, precision: str, model_file: Path, embeddings: bool
                 ) -> tuple[Forward, str]:
    """The backend for `precision` and a one-line description of what actually runs."""
    return_freed_memory()
    if precision == "fast":
        fast = openvino_forward(forward_model, rank, model_file, embeddings)
        if fast is not None:
            return fast
    return tf_forward(forward_model, rank), "exact (TensorFlow, float32)"
