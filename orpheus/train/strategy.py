"""Which `tf.distribute` strategy a training run uses, and which of its processes writes the run folder.

`MultiWorkerMirroredStrategy` when `TF_CONFIG` describes a cluster (start the same command on every
machine), else `MirroredStrategy` over the GPUs named by `--cuda` (all visible GPUs by default), or
over the CPU when there is none. Both training loops (`orpheus.training`) share it.
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from orpheus.errors import ConfigError


def choose_strategy(cuda: Sequence[int] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG is set, else MirroredStrategy over the GPUs in
    `cuda` (all visible GPUs when None), or over the CPU when there is none."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if cuda:
        if not gpus:
            raise ConfigError("--cuda given but TensorFlow sees no GPU (CPU-only build or no driver); "
                              "drop --cuda to train on the CPU")
        missing = [i for i in cuda if not 0 <= i < len(gpus)]
        if missing:
            raise ConfigError(f"--cuda {' '.join(map(str, missing))}: only GPUs 0..{len(gpus) - 1} exist")
        try:
            tf.config.set_visible_devices([gpus[i] for i in cuda], "GPU")
        except RuntimeError as err:
            raise ConfigError(f"--cuda must be applied before TensorFlow starts ({err})") from err
        gpus = cuda
    devices = [f"/gpu:{i}" for i in range(len(gpus))] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory (always, except non-chief multi-worker tasks)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together: the chief and worker tasks of TF_CONFIG's cluster, else 1."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker"))
