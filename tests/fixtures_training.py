"""Tiny, learnable shard folders in the real format (TFRecords via `orpheus.formats.tfrecord` + `dataset.json`).

Tag k is present exactly when mel bins k*8 .. k*8+3 carry a bright band (plus noise everywhere),
so a small model can learn the tags in a few steps.
"""

from __future__ import annotations

import textwrap

from pathlib import Path

import numpy as np
import tensorflow as tf

from orpheus.audio.settings import FeatureSettings
from orpheus.formats.dataset import DatasetInfo, shard_name, write_dataset_info
from orpheus.formats.tfrecord import to_example

SAMPLE_RATE = 16000
HOP_LENGTH = 500           # 32 frames per second
N_MELS = 32


def learnable_example(rng: np.random.Generator, tid: str, n_tags: int, n_frames: int, n_mels: int = N_MELS,
                      waveform: bool = False) -> dict:
    """One example whose tag k <=> a bright band at bins k*8..k*8+3 (log-mel) / a tone k (waveform)."""
    tags = (rng.random(n_tags) < 0.4).astype(np.int64)
    if waveform:
        t = np.arange(n_frames) / SAMPLE_RATE
        audio = 0.05 * rng.standard_normal(n_frames)
        for k in np.flatnonzero(tags):
            audio += 0.3 * np.sin(2 * np.pi * 400 * (k + 1) * t)
    else:
        audio = rng.standard_normal((n_frames, n_mels))
        for k in np.flatnonzero(tags):
            audio[:, k * 8:k * 8 + 4] += 3.0
    return {"tid": tid, "artist_id": f"AR{tid}", "audio": audio.astype(np.float32), "tags": tags}


def write_learnable_shards(shard_dir: Path, counts: dict[str, int] | None = None, *, n_tags: int = 4,
                           n_frames: int = 64, shards: int = 2, seed: int = 0, waveform: bool = False,
                           short_tids: tuple[str, ...] = ()) -> DatasetInfo:
    """Write `{split}-*-of-*.tfrecord` shards + dataset.json; returns the DatasetInfo.

    Track ids are `{split}{i:03d}`; lengths vary between n_frames and 1.5 n_frames, except the
    tracks in `short_tids`, which get n_frames // 4 frames.
    """
    counts = counts or {"train": 32, "valid": 16, "test": 16}
    rng = np.random.default_rng(seed)
    shard_dir.mkdir(parents=True, exist_ok=True)
    tag_names = tuple(f"tag{k}" for k in range(n_tags))
    features = (FeatureSettings("waveform", SAMPLE_RATE) if waveform else
                FeatureSettings("log-mel-spectrogram", SAMPLE_RATE, n_mels=N_MELS, n_fft=1024, hop_length=HOP_LENGTH))
    info = DatasetInfo(features=features, tags=tag_names, counts=dict(counts))
    spec = info.spec()
    positives = {}
    for split, count in counts.items():
        totals = np.zeros(n_tags, np.int64)
        writers = [tf.io.TFRecordWriter(str(shard_dir / shard_name(split, i, shards))) for i in range(shards)]
        for i in range(count):
            tid = f"{split}{i:03d}"
            length = n_frames // 4 if tid in short_tids else int(rng.integers(n_frames, n_frames * 3 // 2 + 1))
            example = learnable_example(rng, tid, n_tags, length, waveform=waveform)
            totals += example["tags"]
            writers[i % shards].write(to_example(example, spec).SerializeToString())
        for writer in writers:
            writer.close()
        positives[split] = [int(v) for v in totals]
    info = DatasetInfo(**{**info.__dict__, "positives": positives})
    write_dataset_info(shard_dir, info)
    return info


# A child process that trains a tiny model on two logical CPUs (MirroredStrategy) with both loops:
# argv = shard folder, config JSON, run-directory prefix[, epochs (default 2)].
TWO_REPLICAS = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import json
    from orpheus.config import config_from_dict, load_config
    from orpheus.train.loop import train
    config = config_from_dict(json.loads(sys.argv[2]))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for loop in ("fit", "custom"):
        train(sys.argv[1], config.replace(train={"loop": loop}), epochs=int(sys.argv[4]) if len(sys.argv) > 4 else 2,
              steps_per_epoch=2,
              run_dir=sys.argv[3] + loop, strategy=strategy, quiet=True)
    print("OK")
""")
