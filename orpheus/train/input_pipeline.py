"""The tf.data input pipeline: shard folder -> batches of (window, multi-hot labels).

Reads a shard folder written by `tfrecords/preprocessing.py` (`{split}-*-of-*.tfrecord` + `dataset.json`)
in the canonical order:

    sorted files -> shard per worker -> shuffle files -> interleave(TFRecordDataset, AUTOTUNE) ->
    shuffle examples (within blocks of data.shuffle_buffer) -> parse -> drop excluded track ids ->
    crop one window -> normalise -> select / merge tags -> batch (per-replica size) -> prefetch

Excluded track ids (`data.exclude_tids`) are left out of everything made from the shards: the batches
(dropped right after parsing, before the crop, so no work is spent on them), `make_track_windows` (what
`test` scores), the dataset statistics, and the counts behind `top_n_tags` and the steps of an epoch
(`kept_dataset_info`). Training crops a random window, evaluation the centred one; `make_track_windows`
yields every consecutive window of each track (the windows of `orpheus.audio.windows`, as tagging sees them) for
per-track evaluation.

Every random choice derives from `seed`, the epoch number and, when an epoch needs more than one pass over
the split, the pass number, so each pass has its own order and crops, and the batches of epoch e are the same
whether a run went straight to e or was interrupted and resumed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from orpheus.config import Config, DataConfig
from orpheus.errors import ConfigError, DataFormatError, MissingInputError
from orpheus.formats.rundir import RunInfo
from orpheus.formats.dataset import DatasetInfo, read_dataset_info, shard_paths
from orpheus.formats.tfrecord import parse_fn
from orpheus.audio.windows import cut_windows, normalise_windows

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


# ----------------------------------------------------------------------------------------- tags
def _merge_groups(info: DatasetInfo, data: DataConfig) -> dict[str, tuple[str, ...]]:
    """Output name -> member tags of the dataset vocabulary; a merged group is named by its first member."""
    vocabulary = set(info.tags)
    merged_members = {m for group in data.merge_tags for m in group}
    groups = {tag: (tag,) for tag in info.tags if tag not in merged_members}
    for group in data.merge_tags:
        unknown = [m for m in group if m not in vocabulary]
        if unknown:
            raise ConfigError(f"data.merge_tags: {unknown} not in the dataset's tags; check the spelling "
                              "against dataset.json")
        if not group:
            raise ConfigError("data.merge_tags: empty group")
        groups[group[0]] = tuple(group)
    return groups


def selected_tags(info: DatasetInfo, data: DataConfig) -> tuple[str, ...]:
    """The model's output tags, in output order (saved as `run.json`'s `tags`).

    Merge groups first become one tag named by their first member (popularity: the sum of its
    members' training positives, an upper bound on the merged count). `without_tags` are removed,
    the `top_n_tags` most popular remain (ties broken by name), then `with_tags` not yet chosen are
    appended in the given order. Popularity is `dataset.json`'s training-split positives.
    """
    groups = _merge_groups(info, data)
    positives = info.positives.get("train")
    if data.top_n_tags is not None and (positives is None or len(positives) != len(info.tags)):
        raise DataFormatError("dataset.json has no training-split positives per tag, needed for "
                              "data.top_n_tags; rerun preprocessing or set data.top_n_tags to null")
    index = {tag: i for i, tag in enumerate(info.tags)}
    popularity = {name: sum(positives[index[m]] for m in members) if positives else 0
                  for name, members in groups.items()}
    for tag in (*data.with_tags, *data.without_tags):
        if tag not in groups:
            raise ConfigError(f"data.with_tags/without_tags: {tag!r} is not a tag of the dataset (or is merged "
                              "into another); check dataset.json")
    candidates = [name for name in groups if name not in data.without_tags]
    if data.top_n_tags is None:  # vocabulary order, merged groups last
        chosen = candidates
    else:
        chosen = sorted(candidates, key=lambda name: (-popularity[name], name))[:data.top_n_tags]
    chosen += [tag for tag in data.with_tags if tag not in chosen]
    if not chosen:
        raise ConfigError("no tags left after data.top_n_tags / without_tags; keep at least one")
    return tuple(chosen)


def tag_matrix(info: DatasetInfo, tags: Sequence[str], merge_tags: Sequence[Sequence[str]] = ()) -> np.ndarray:
    """float32 [n_dataset_tags, n_output_tags]: column j marks the dataset tags merged into output tag j.

    A label is positive when any of its members is (`multi_hot @ matrix > 0`).
    """
    groups = {group[0]: tuple(group) for group in merge_tags if group}
    index = {tag: i for i, tag in enumerate(info.tags)}
    matrix = np.zeros((len(info.tags), len(tags)), np.float32)
    for j, name in enumerate(tags):
        members = groups.get(name, (name,))
        missing = [m for m in members if m not in index]
        if missing:
            raise DataFormatError(f"tags {missing} of the model are not in the shard folder's dataset.json; "
                                  "evaluate on a folder with the same vocabulary")
        matrix[[index[m] for m in members], j] = 1.0
    return matrix


# ---------------------------------------------------------------------------------- statistics
def feature_statistics(shard_dir: str | Path, info: DatasetInfo | None = None,
                       exclude_tids: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over every frame of the training split but `exclude_tids`.

    Returns:
        (mean, std): float32 [n_bins] each, in the feature's units (e.g. log-mel dB).
    """
    info = info or read_dataset_info(shard_dir)
    if info.features.format == "waveform":
        raise ConfigError('data.normalise "dataset" needs a spectral format; waveform uses "per_example"')
    parse = parse_fn(info.spec())
    dataset = _without(tf.data.TFRecordDataset(_files(shard_dir, "train")).map(parse, num_parallel_calls=AUTOTUNE),
                       exclude_tids)

    def moments(example):
        audio = tf.cast(example["audio"], tf.float64)
        return (tf.cast(tf.shape(audio)[0], tf.float64), tf.reduce_sum(audio, 0), tf.reduce_sum(audio ** 2, 0))

    zeros = tf.zeros([info.features.n_bins], tf.float64)
    count, total, squares = dataset.map(moments, num_parallel_calls=AUTOTUNE).reduce(
        (tf.constant(0.0, tf.float64), zeros, zeros), lambda a, b: tuple(x + y for x, y in zip(a, b)))
    count = max(float(count), 1.0)
    mean = total.numpy() / count
    std = np.sqrt(np.maximum(squares.numpy() / count - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def _without(dataset: tf.data.Dataset, exclude_tids: Sequence[str]) -> tf.data.Dataset:
    """`dataset` of parsed examples without those whose `tid` is in `exclude_tids`."""
    if not exclude_tids:
        return dataset
    excluded = tf.constant(sorted(exclude_tids), tf.string)
    return dataset.filter(lambda ex: tf.logical_not(tf.reduce_any(tf.equal(ex["tid"], excluded))))


def kept_dataset_info(shard_dir: str | Path, data: DataConfig, info: DatasetInfo | None = None) -> DatasetInfo:
    """`dataset.json`'s description with each split's track count and tag positives recounted without
    `data.exclude_tids` (the folder's own when there are none): what `top_n_tags` and the steps of an
    epoch are computed from. Reads the tids and tags of every split once."""
    info = info or read_dataset_info(shard_dir)
    if not data.exclude_tids:
        return info
    n_tags = len(info.tags)
    description = {"tid": tf.io.FixedLenFeature([], tf.string), "tags": tf.io.FixedLenFeature([n_tags], tf.int64)}
    excluded = tf.constant(sorted(data.exclude_tids), tf.string)
    counts, positives, found = dict(info.counts), {k: list(v) for k, v in info.positives.items()}, 0
    for split in sorted(set(info.counts) | set(info.positives)):
        files = shard_paths(shard_dir, split)
        if not files:
            continue
        records = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, description),
                                                     num_parallel_calls=AUTOTUNE)
        dropped = records.filter(lambda ex: tf.reduce_any(tf.equal(ex["tid"], excluded)))
        n, tag_sums = dropped.reduce((tf.constant(0, tf.int64), tf.zeros([n_tags], tf.int64)),
                                     lambda total, ex: (total[0] + 1, total[1] + ex["tags"]))
        n, tag_sums = int(n), tag_sums.numpy()
        found += n
        if split in counts:
            counts[split] -= n
        if split in positives and len(positives[split]) == n_tags:
            positives[split] = [int(p - q) for p, q in zip(positives[split], tag_sums)]
    if found < len(set(data.exclude_tids)):
        log.warning("data.exclude_tids: %d of the %d track ids are in none of %s's splits", 
                    len(set(data.exclude_tids)) - found, len(set(data.exclude_tids)), shard_dir)
    return dataclasses.replace(info, counts=counts, positives=positives)


def make_run_info(shard_dir: str | Path, config: Config, *, kept_info: DatasetInfo | None = None,
                  **extra) -> RunInfo:
    """The RunInfo of a model trained on `shard_dir` with `config`: tags, window, normalisation (+ statistics),
    all without `data.exclude_tids`; `kept_info`: `kept_dataset_info`'s answer, when already computed."""
    data = config.data
    info = kept_info or kept_dataset_info(shard_dir, data)
    if info.features.format == "waveform" and data.normalise != "per_example":
        raise ConfigError('data.normalise must be "per_example" for waveform input')
    stats: dict = {}
    if data.normalise == "dataset":
        mean, std = feature_statistics(shard_dir, info, data.exclude_tids)
        stats = {"feature_mean": tuple(float(v) for v in mean), "feature_std": tuple(float(v) for v in std)}
    return RunInfo.from_dataset(info, selected_tags(info, data), data.window_s, normalise=data.normalise,
                                model_name=config.model.name, source=str(shard_dir), **stats, **extra)


# ------------------------------------------------------------------------------------- datasets
def _files(shard_dir: str | Path, split: str) -> list[str]:
    files = shard_paths(shard_dir, split)
    if not files:
        raise MissingInputError(f"{shard_dir}: no {split}-*-of-*.tfrecord shards; run tfrecords/preprocessing.py "
                                "or check --tfrecords-dir")
    return files


def _pad_to(audio: tf.Tensor, window_frames: int) -> tf.Tensor:
    """Zero-pad the time axis at the end up to `window_frames` (as `cut_windows` does)."""
    missing = tf.maximum(window_frames - tf.shape(audio)[0], 0)
    paddings = tf.concat([[[0, missing]], tf.zeros([tf.rank(audio) - 1, 2], tf.int32)], axis=0)
    return tf.pad(audio, paddings)


def _stateless_shuffle(dataset: tf.data.Dataset, block: int, seed: tf.Tensor, salt: int = 0) -> tf.data.Dataset:
    """Shuffle serialized records within consecutive blocks of `block`, seeded by the int64 tensor `seed`.

    Unlike `Dataset.shuffle`, the seed may be a tensor (one per epoch inside `flat_map`), and the
    order depends on (seed, block index) only.
    """
    dataset = dataset.batch(block).enumerate()
    dataset = dataset.map(lambda i, records: tf.random.experimental.stateless_shuffle(
        records, seed=tf.stack([seed, i * 2 + salt])), num_parallel_calls=AUTOTUNE, deterministic=True)
    return dataset.unbatch()


def steps_per_epoch(info: DatasetInfo, global_batch_size: int) -> int:
    """Training steps in one pass over the training split (at least 1)."""
    count = info.counts.get("train")
    if count is None:
        raise DataFormatError("dataset.json has no training-split count; rerun preprocessing or pass "
                              "--steps-per-epoch")
    if count <= 0:
        raise ConfigError("no training track left: data.exclude_tids holds every track of the training split")
    return max(count // global_batch_size, 1)


def make_dataset(shard_dir: str | Path, split: str, config: Config,
                 input_context: tf.distribute.InputContext | None = None, *, training: bool, seed: int = 0,
                 run_info: RunInfo | None = None, epochs: tuple[int, int] | None = None,
                 steps_per_epoch: int | None = None) -> tf.data.Dataset:
    """Batches of one window per track and its labels.

    Args:
        shard_dir: folder of `{split}-*-of-*.tfrecord` shards and `dataset.json`.
        split: "train", "valid" or "test".
        config: `config.data` drives cropping, normalisation and tags; `config.train.batch_size` is
            the global batch.
        input_context: from `strategy.distribute_datasets_from_function`; shards files per worker
            and sets the per-replica batch size. None: one pipeline, one replica.
        training: random crops, shuffling and whole batches only; else centred crops, file order,
            a final partial batch, one pass.
        seed: the root of every random choice (file and example order, crop positions).
        run_info: tags, window and normalisation (from `make_run_info`, computed when None).
        epochs: (first, stop) with `steps_per_epoch`, training only: a finite dataset holding epochs
            first..stop-1 back to back, each exactly `steps_per_epoch` global steps, its order and
            crops derived from (seed, epoch) alone, so resuming at epoch e sees what an
            uninterrupted run sees. An epoch longer than one pass over the split takes further passes,
            each with its own order and crops (from (seed, epoch, pass)). None: one shuffled pass
            (training) or one pass (evaluation).
        steps_per_epoch: global steps per epoch when `epochs` is given.

    Returns:
        A dataset of (windows, labels): windows float32 [batch, window_frames, n_bins] (spectral)
        or [batch, window_samples] (waveform), normalised; labels float32 [batch, n_tags] in {0, 1}.
    """
    info = read_dataset_info(shard_dir)
    run_info = run_info or make_run_info(shard_dir, config)
    files = _files(shard_dir, split)
    batch = config.train.batch_size
    pipelines, pipeline_id, batches_per_step = 1, 0, 1
    if input_context is not None:
        try:
            batch = input_context.get_per_replica_batch_size(config.train.batch_size)
        except ValueError as err:
            raise ConfigError(f"train.batch_size {config.train.batch_size} must be divisible by the "
                              f"{input_context.num_replicas_in_sync} replicas") from err
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        batches_per_step = input_context.num_replicas_in_sync // pipelines
    window_frames = run_info.window_frames
    matrix = tf.constant(tag_matrix(info, run_info.tags, config.data.merge_tags))
    parse = parse_fn(info.spec())

    def pipeline(epoch_seed) -> tf.data.Dataset:
        """One pass over this worker's part of the split; `epoch_seed` int64 scalar (training only)."""
        dataset = tf.data.Dataset.from_tensor_slices(files)
        by_file = len(files) >= pipelines
        if by_file and pipelines > 1:
            dataset = dataset.shard(pipelines, pipeline_id)
        if training:
            dataset = _stateless_shuffle(dataset, len(files), epoch_seed, salt=-1)
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                     num_parallel_calls=AUTOTUNE, deterministic=True)
        if not by_file:  # fewer files than workers: share out examples instead
            dataset = dataset.shard(pipelines, pipeline_id)
        if training:
            dataset = _stateless_shuffle(dataset, config.data.shuffle_buffer, epoch_seed)
        dataset = _without(dataset.map(parse, num_parallel_calls=AUTOTUNE), config.data.exclude_tids)
        dataset = dataset.enumerate()
        return dataset.map(lambda i, ex: _window_and_labels(i, ex, epoch_seed), num_parallel_calls=AUTOTUNE,
                           deterministic=True)

    def _window_and_labels(index, example, epoch_seed):
        audio = _pad_to(example["audio"], window_frames)
        room = tf.shape(audio)[0] - window_frames
        if training:
            start = tf.random.stateless_uniform([], seed=tf.stack([epoch_seed, index]), minval=0,
                                                maxval=room + 1, dtype=tf.int32)
        else:
            start = room // 2
        window = audio[start:start + window_frames]
        window = normalise_windows(window[None], run_info)[0]
        labels = tf.cast(tf.linalg.matvec(matrix, tf.cast(example["tags"], tf.float32), transpose_a=True) > 0,
                         tf.float32)
        return window, labels

    if not training:
        dataset = pipeline(tf.constant(0, tf.int64)).batch(batch, drop_remainder=False)
        return dataset.prefetch(AUTOTUNE)
    if epochs is None:
        dataset = pipeline(tf.constant(seed, tf.int64)).batch(batch, drop_remainder=True)
        return dataset.prefetch(AUTOTUNE)
    if steps_per_epoch is None:
        raise ValueError("epochs needs steps_per_epoch")
    batches = steps_per_epoch * batches_per_step

    def epoch_dataset(epoch):
        epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + epoch
        # as many passes as the epoch needs: each non-empty pass gives at least one example
        passes = tf.data.Dataset.range(batches * batch).flat_map(lambda i: pipeline(_pass_seed(epoch_seed, i)))
        return passes.batch(batch, drop_remainder=True).take(batches)

    dataset = tf.data.Dataset.range(*epochs).flat_map(epoch_dataset)
    return dataset.prefetch(AUTOTUNE)


def _pass_seed(epoch_seed: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """The seed of pass `index` of an epoch: the epoch's own for the first pass, then a stateless draw from
    (epoch seed, pass), so a second pass never replays the first's order and crops."""
    drawn = tf.random.stateless_uniform([], seed=tf.stack([epoch_seed, index]), minval=None, maxval=None,
                                        dtype=tf.int64)
    return tf.where(tf.equal(index, 0), epoch_seed, drawn)


def make_track_windows(shard_dir: str | Path, split: str, run_info: RunInfo, *,
                       merge_tags: Sequence[Sequence[str]] = (), exclude_tids: Sequence[str] = ()
                       ) -> tf.data.Dataset:
    """Every consecutive window of every track, for per-track evaluation (`test_model.py test`).

    Windows are `orpheus.audio.windows.cut_windows` of `run_info.window_frames` (no overlap, the last one
    aligned to the track's end, a short track zero-padded to one window), normalised by
    `normalise_windows` as tagging does. Tracks come in file order, unbatched: average the model's
    scores over a track's windows to score the track.

    Args:
        shard_dir: shard folder whose `dataset.json` holds every tag of `run_info.tags`.
        split: "train", "valid" or "test".
        run_info: the model's run description (tags, window, normalisation).
        merge_tags: the run's `config.data.merge_tags` when its tags were merged (a merged tag is
            positive when any member is).
        exclude_tids: the run's `config.data.exclude_tids`: tracks left out.

    Returns:
        A dataset of (tid, windows, labels): tid tf.string scalar; windows float32
        [n_windows, window_frames, n_bins] (spectral) or [n_windows, window_samples] (waveform);
        labels float32 [n_tags] in {0, 1}, in `run_info.tags` order.
    """
    info = read_dataset_info(shard_dir)
    if info.features.format != run_info.features.format:
        raise DataFormatError(f"{shard_dir}: holds {info.features.format} features but the model takes {run_info.features.format}; "
                              "point at a shard folder of the model's format")
    matrix = tf.constant(tag_matrix(info, run_info.tags, merge_tags))
    window_frames = run_info.window_frames
    parse = parse_fn(info.spec())
    window_shape = [None, window_frames] + ([info.features.n_bins] if info.features.n_bins else [])

    def windows_of(example):
        windows = tf.numpy_function(lambda audio: cut_windows(audio, window_frames), [example["audio"]],
                                    tf.float32, stateful=False)
        windows = normalise_windows(tf.ensure_shape(windows, window_shape), run_info)
        labels = tf.cast(tf.linalg.matvec(matrix, tf.cast(example["tags"], tf.float32), transpose_a=True) > 0,
                         tf.float32)
        return example["tid"], windows, labels

    dataset = _without(tf.data.TFRecordDataset(_files(shard_dir, split)).map(parse, num_parallel_calls=AUTOTUNE),
                       exclude_tids)
    return dataset.map(windows_of, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
