"""The float type a training run computes in: `train.precision` resolved for the machine at hand.

    float32    everything in float32.
    bfloat16   Keras's "mixed_bfloat16": variables, the loss and the "tags" output in float32, the layers'
               arithmetic in bf16 (8 bits of mantissa, float32's range, so no loss scaling). Fast on CPUs
               with bf16 instructions (AVX512-BF16, AMX) and on GPUs; elsewhere emulated, and slower than
               float32 (3.3x slower on an AMD EPYC without them), so it runs with a warning.
    float16    Keras's "mixed_float16" with loss scaling: a GPU feature. Without a GPU the run stays in
               float32 with a warning (as `train.mixed_precision` did).
    auto       float16 on a GPU, else bfloat16 on a CPU with bf16 instructions, else float32.

Variables stay float32 under every precision, so checkpoints, `--resume` and `--init-from` work across
precisions; `orpheus.training` saves `model.keras` in float32 whatever the run computed in.
"""

from __future__ import annotations

import logging

from orpheus import cpu

log = logging.getLogger(__name__)

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}  # Keras dtype policies


def resolve_precision(precision: str) -> str:
    """"float32", "bfloat16" or "float16": `precision` (a `train.precision`) on this machine; logs the choice.

    Looks at the physical devices only, so it can run before the strategy starts TensorFlow's runtime.
    """
    import tensorflow as tf  # kept out of `orpheus.config`'s light import path

    gpu = bool(tf.config.list_physical_devices("GPU"))
    if precision == "auto":
        resolved = "float16" if gpu else "bfloat16" if cpu.has_bf16() else "float32"
        log.info("train.precision auto: %s (%s)", resolved,
                 "a GPU" if gpu else "this CPU has bf16 instructions" if resolved == "bfloat16"
                 else "no GPU, no bf16 instructions on this CPU")
        return resolved
    if precision == "float16" and not gpu:
        log.warning("train.precision float16 needs a GPU: training in float32 (use bfloat16 or auto on a CPU)")
        return "float32"
    if precision == "bfloat16" and not gpu and not cpu.has_bf16():
        log.warning("train.precision bfloat16: this CPU has no bf16 instructions (%s), so bf16 is emulated "
                    "and slower than float32; auto picks float32 here", ", ".join(cpu.BF16_FLAGS))
    return precision
