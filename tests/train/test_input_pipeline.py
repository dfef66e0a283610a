import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from orpheus.config import Config, config_from_dict
from orpheus.train.input_pipeline import (feature_statistics, kept_dataset_info, make_dataset, make_run_info,
                                make_track_windows, selected_tags, steps_per_epoch)
from orpheus.errors import ConfigError
from orpheus.audio.settings import FeatureSettings
from orpheus.formats.dataset import DatasetInfo, read_dataset_info, shard_name, write_dataset_info
from orpheus.formats.tfrecord import to_example
from orpheus.audio.windows import window_starts
from tests.fixtures_training import write_learnable_shards

ROOT = Path(__file__).resolve().parents[2]


def small_config(**data) -> Config:
    return config_from_dict({"data": {"window_s": 1.0, "shuffle_buffer": 64, "top_n_tags": None, **data},
                             "train": {"batch_size": 4}})


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    shard_dir = tmp_path_factory.mktemp("shards")
    write_learnable_shards(shard_dir, {"train": 24, "valid": 10, "test": 6}, short_tids=("valid003",))
    return shard_dir


def ramp_shards(shard_dir: Path, lengths: list[int]) -> None:
    """Tracks whose frame t holds the value t + 1 in every bin (0 marks padding)."""
    info = DatasetInfo(features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=4, n_fft=1024, hop_length=500),
                       tags=("a",), counts={"train": len(lengths), "valid": len(lengths)},
                       positives={"train": [1], "valid": [1]})
    for split in ("train", "valid"):
        with tf.io.TFRecordWriter(str(shard_dir / shard_name(split, 0, 1))) as writer:
            for i, n in enumerate(lengths):
                audio = np.repeat(np.arange(1, n + 1, dtype=np.float32)[:, None], 4, axis=1)
                example = {"tid": f"t{i}", "artist_id": "", "audio": audio, "tags": [1]}
                writer.write(to_example(example, info.spec()).SerializeToString())
    write_dataset_info(shard_dir, info)


def test_shapes_training_and_evaluation(shards):
    config = small_config()
    windows, labels = next(iter(make_dataset(shards, "train", config, training=True, seed=1)))
    assert windows.shape == (4, 32, 32) and windows.dtype == tf.float32
    assert labels.shape == (4, 4) and set(np.unique(labels)) <= {0.0, 1.0}
    # per-example standardisation
    np.testing.assert_allclose(tf.reduce_mean(windows, axis=[1, 2]), 0, atol=1e-4)
    sizes = [w.shape[0] for w, _ in make_dataset(shards, "valid", config, training=False)]
    assert sizes == [4, 4, 2]  # every track once, a final partial batch


def test_crop_positions(tmp_path):
    lengths = [40, 50, 64, 70, 20]
    ramp_shards(tmp_path, lengths)
    config = small_config(shuffle_buffer=1)  # keep file order so rows map to tracks
    run_info = dataclasses.replace(make_run_info(tmp_path, config), normalise="none")
    assert run_info.window_frames == 32
    starts = []
    for seed in range(6):
        dataset = make_dataset(tmp_path, "train", config.replace(train={"batch_size": 1}), training=True,
                               seed=seed, run_info=run_info)
        for (window, _), n in zip(dataset, lengths):
            window = window.numpy()[0, :, 0]
            if n < 32:  # zero-padded at the end
                np.testing.assert_array_equal(window, np.r_[np.arange(1, n + 1), np.zeros(32 - n)])
                continue
            start = int(window[0]) - 1
            assert 0 <= start <= n - 32
            np.testing.assert_array_equal(window, np.arange(start + 1, start + 33))
            starts.append(start)
    assert len(set(starts)) > 5  # random, not fixed
    evaluation = make_dataset(tmp_path, "valid", config, training=False, run_info=run_info)
    firsts = np.concatenate([w.numpy()[:, 0, 0] for w, _ in evaluation])
    np.testing.assert_array_equal(firsts[:4], [(n - 32) // 2 + 1 for n in lengths[:4]])  # centred


def test_order_is_a_function_of_seed_and_epoch(shards):
    config = small_config()

    def batches(**kwargs):
        dataset = make_dataset(shards, "train", config, training=True, steps_per_epoch=3, **kwargs)
        return [w.numpy() for w, _ in dataset]

    full = batches(seed=5, epochs=(0, 3))
    assert len(full) == 9
    np.testing.assert_array_equal(np.stack(batches(seed=5, epochs=(1, 3))), np.stack(full[3:]))
    assert not np.allclose(full[0], full[3])  # epochs differ
    assert not np.allclose(batches(seed=6, epochs=(0, 1))[0], full[0])


def test_tag_selection_top_n_with_without_merge():
    info = DatasetInfo(features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=8, hop_length=500),
                       tags=("rock", "pop", "jazz", "hip hop", "rap", "indie"),
                       positives={"train": [50, 40, 5, 20, 25, 30]})
    data = config_from_dict({"data": {"top_n_tags": 3}}).data
    assert selected_tags(info, data) == ("rock", "pop", "indie")
    data = dataclasses.replace(data, merge_tags=(("hip hop", "rap"),), without_tags=("pop",), with_tags=("jazz",))
    assert selected_tags(info, data) == ("rock", "hip hop", "indie", "jazz")
    with pytest.raises(ConfigError, match="'blues' is not a tag"):
        selected_tags(info, dataclasses.replace(data, with_tags=("blues",)))
    with pytest.raises(ConfigError, match="merge_tags"):
        selected_tags(info, dataclasses.replace(data, merge_tags=(("rap", "grime"),)))


def test_merged_labels_and_excluded_tracks(shards):
    config = small_config(merge_tags=[["tag1", "tag3"]], without_tags=["tag2"], exclude_tids=["valid001"])
    run_info = make_run_info(shards, config)
    assert run_info.tags == ("tag0", "tag1")
    tids, raw = [], []
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in shards.glob("valid-*"))):
        example = tf.train.Example.FromString(record.numpy())
        tids.append(example.features.feature["tid"].bytes_list.value[0].decode())
        raw.append(list(example.features.feature["tags"].int64_list.value))
    expected = {tid: [t[0], max(t[1], t[3])] for tid, t in zip(tids, raw)}
    windows = make_track_windows(shards, "valid", run_info, merge_tags=config.data.merge_tags)
    assert {tid.numpy().decode(): list(labels.numpy()) for tid, _, labels in windows} == expected
    labels = np.concatenate([l.numpy() for _, l in make_dataset(shards, "valid", config, training=False)])
    kept = [expected[t] for t in tids if t != "valid001"]
    assert sorted(map(tuple, labels.tolist())) == sorted(map(tuple, kept))  # shards are interleaved


def test_dataset_statistics(shards):
    config = small_config(normalise="dataset")
    run_info = make_run_info(shards, config)
    frames = []
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in shards.glob("train-*"))):
        feature = tf.train.Example.FromString(record.numpy()).features.feature["audio"]
        frames.append(np.array(feature.float_list.value, np.float32).reshape(-1, 32))
    frames = np.concatenate(frames)
    np.testing.assert_allclose(run_info.feature_mean, frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_info.feature_std, frames.std(0), rtol=1e-4)
    assert run_info.feature_mean[1] > 1.0 > run_info.feature_mean[5]  # band bins are brighter
    windows, _ = next(iter(make_dataset(shards, "train", config, training=True, run_info=run_info)))
    assert abs(float(tf.reduce_mean(windows))) < 0.3
    with pytest.raises(ConfigError, match="waveform"):
        info = read_dataset_info(shards)
        feature_statistics(shards, dataclasses.replace(info, features=FeatureSettings("waveform", 16000)))


def read_split(shard_dir: Path, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(tid, tags int64 [n_tags], audio float32 [n_frames, 32]) of every example of `split`, in file order."""
    out = []
    for record in tf.data.TFRecordDataset(sorted(str(p) for p in shard_dir.glob(f"{split}-*"))):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        out.append((feature["tid"].bytes_list.value[0].decode(), np.array(feature["tags"].int64_list.value),
                    np.array(feature["audio"].float_list.value, np.float32).reshape(-1, 32)))
    return out


def test_excluded_tracks_leave_tag_counts_statistics_test_windows_and_epochs(shards):
    """data.exclude_tids reaches every use of the shards, not only the training and validation batches."""
    train = read_split(shards, "train")
    info = read_dataset_info(shards)
    popular = int(np.argmax(info.positives["train"]))
    excluded = [tid for tid, tags, _ in train if tags[popular]]   # every track of the most popular tag
    config = small_config(top_n_tags=3, normalise="dataset", exclude_tids=[*excluded, "valid001", "no-such-id"])
    kept = kept_dataset_info(shards, config.data)
    assert kept.counts["train"] == 24 - len(excluded) and kept.counts["valid"] == 9 and kept.counts["test"] == 6
    assert kept.positives["train"][popular] == 0
    assert steps_per_epoch(kept, 4) == (24 - len(excluded)) // 4
    run_info = make_run_info(shards, config)
    assert info.tags[popular] not in run_info.tags    # top_n_tags counts only the kept tracks
    frames = np.concatenate([audio for tid, _, audio in train if tid not in excluded])
    np.testing.assert_allclose(run_info.feature_mean, frames.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run_info.feature_std, frames.std(0), rtol=1e-4)
    tids = [tid.numpy().decode() for tid, _, _ in make_track_windows(shards, "valid", run_info,
                                                                    exclude_tids=config.data.exclude_tids)]
    assert tids == [tid for tid, _, _ in read_split(shards, "valid") if tid != "valid001"]


def test_each_pass_of_a_long_epoch_draws_its_own_order_and_crops(shards):
    """An epoch of two passes over the 24 training tracks: the second pass is not a replay of the first,
    each pass still holds every track once, and the batches stay a function of (seed, epoch)."""
    config = small_config()

    def batches(epochs) -> list[tuple[np.ndarray, np.ndarray]]:
        dataset = make_dataset(shards, "train", config, training=True, seed=5, epochs=epochs, steps_per_epoch=12)
        return [(w.numpy(), l.numpy()) for w, l in dataset]

    epoch = batches((0, 1))
    first, second = epoch[:6], epoch[6:]
    assert len(second) == 6
    assert not np.allclose(np.concatenate([w for w, _ in first]), np.concatenate([w for w, _ in second]))
    labels = [sorted(map(tuple, np.concatenate([l for _, l in part]).tolist())) for part in (first, second)]
    assert labels[0] == labels[1]                  # the same 24 tracks in each pass
    two = batches((0, 2))
    for (a, b), (c, d) in zip(two[:12], epoch, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for (a, _), (c, _) in zip(batches((1, 2)), two[12:], strict=True):   # a resumed run sees the same
        np.testing.assert_array_equal(a, c)


def test_track_windows(shards):
    run_info = make_run_info(shards, small_config())
    for tid, windows, labels in make_track_windows(shards, "valid", run_info):
        assert windows.shape[1:] == (32, 32) and labels.shape == (4,)
        if tid.numpy() == b"valid003":  # 16 frames: one zero-padded window
            assert windows.shape[0] == 1
        else:
            assert windows.shape[0] in (2, 3)  # 64..96 frames
            n_frames = 64  # lower bound
            assert windows.shape[0] >= len(window_starts(n_frames, 32))


DISTRIBUTED = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from orpheus.config import config_from_dict
    from orpheus.train.input_pipeline import make_dataset
    config = config_from_dict({"data": {"window_s": 1.0, "top_n_tags": None}, "train": {"batch_size": 6}})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(sys.argv[1], "train", config, ctx, training=True, seed=0,
                                 epochs=(0, 1), steps_per_epoch=2))
    steps = 0
    for windows, labels in dataset:
        shapes = [tuple(w.shape) for w in strategy.experimental_local_results(windows)]
        assert shapes == [(3, 32, 32), (3, 32, 32)], shapes
        steps += 1
    assert steps == 2, steps
    print("OK", strategy.num_replicas_in_sync)
""")


def test_per_replica_batches_under_two_cpu_mirrored_strategy(shards):
    # Logical devices must be configured before TF initialises: use a fresh process.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", DISTRIBUTED, str(shards)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["OK", "2"]
