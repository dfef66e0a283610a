import numpy as np
import pytest
import tensorflow as tf

from orpheus.formats import dataset as datasets
from orpheus.formats import tfrecord as spec
from orpheus.errors import DataFormatError, MissingInputError
from orpheus.audio.settings import FeatureSettings


@pytest.mark.parametrize("fmt, n_bins, shape", [
    ("log-mel-spectrogram", 96, (37, 96)),
    ("waveform", None, (1234,)),
    ("mfcc", 20, (11, 20)),
])
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_writer_and_parser_agree(fmt, n_bins, shape, storage):
    rng = np.random.default_rng(0)
    schema = spec.example_spec(fmt, n_bins, n_tags=5, storage=storage)
    audio = rng.standard_normal(shape).astype(np.float32)
    tags = np.array([1, 0, 0, 1, 1])
    example = spec.to_example({"tid": "TRAAA", "artist_id": b"AR1", "audio": audio, "tags": tags}, schema)
    parsed = spec.parse_fn(schema)(tf.constant(example.SerializeToString()))
    assert parsed["tid"].numpy() == b"TRAAA"
    assert parsed["artist_id"].numpy() == b"AR1"
    np.testing.assert_array_equal(parsed["tags"].numpy(), tags)
    assert parsed["audio"].dtype == tf.float32
    assert tuple(parsed["audio"].shape) == shape
    tolerance = 2e-3 * np.abs(audio).max() if storage == "float16" else 0
    np.testing.assert_allclose(parsed["audio"].numpy(), audio, atol=tolerance, rtol=0)


def test_packed_float_list_equals_the_plain_message():
    values = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    plain = tf.train.FloatList(value=values)
    assert spec._float_list(values) == plain
    assert spec._float_list(values).SerializeToString() == plain.SerializeToString()
    assert spec._float_list(values[:0]) == tf.train.FloatList()
    assert spec._varint(300) == b"\xac\x02"


def test_serialize_is_deterministic():
    schema = spec.example_spec("waveform", None, n_tags=2)
    example = spec.to_example({"tid": "T", "artist_id": "A", "audio": np.ones(3), "tags": [1, 0]}, schema)
    assert spec.serialize(example) == spec.serialize(tf.train.Example.FromString(spec.serialize(example)))


def test_parser_works_in_tf_data(tmp_path):
    schema = spec.example_spec("log-mel-spectrogram", 4, n_tags=2)
    path = str(tmp_path / datasets.shard_name("train", 0, 1))
    with tf.io.TFRecordWriter(path) as writer:
        for n in (3, 5):
            values = {"tid": f"T{n}", "artist_id": "", "audio": np.ones((n, 4)), "tags": [0, 1]}
            writer.write(spec.to_example(values, schema).SerializeToString())
    frames = [int(x["audio"].shape[0]) for x in tf.data.TFRecordDataset(path).map(spec.parse_fn(schema))]
    assert frames == [3, 5]
    assert datasets.shard_paths(tmp_path, "train") == [path]
    assert datasets.shard_paths(tmp_path, "test") == []


@pytest.mark.parametrize("fmt, n_bins, shape", [
    ("log-mel-spectrogram", 96, (37, 96)), ("log-mel-spectrogram", 3, (300, 3)), ("waveform", None, (1234,)),
    ("waveform", None, (0,)), ("mfcc", 20, (0, 20)),
])
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_encode_example_writes_protobufs_bytes(fmt, n_bins, shape, storage):
    """The TensorFlow-free encoder against protobuf's deterministic serialisation of the same example:
    empty and non-ASCII ids, empty arrays, multi-byte and negative int64 varints."""
    rng = np.random.default_rng(1)
    schema = spec.example_spec(fmt, n_bins, n_tags=5, storage=storage)
    for tid, artist, tags in [("TRAAA", b"AR1", [1, 0, 0, 1, 1]), ("", "", [0] * 5),
                              ("TR\u00e9", "x" * 300, [300, -1, 5, 2 ** 40, 127])]:
        values = {"tid": tid, "artist_id": artist, "audio": rng.standard_normal(shape).astype(np.float32),
                  "tags": np.array(tags)}
        assert b"".join(spec.encode_example(values, schema)) == spec.serialize(spec.to_example(values, schema))


def test_tfrecord_frame_writes_tensorflows_records(tmp_path):
    records = [b"", b"x", np.random.default_rng(2).bytes(70_000), np.random.default_rng(3).bytes(3_000_000)]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    ours = b"".join(spec.tfrecord_frame([record[:10], record[10:]]) for record in records)
    assert ours == (tmp_path / "tf.tfrecord").read_bytes()
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "tf.tfrecord"))] == records


def test_shape_mismatch_is_an_error():
    schema = spec.example_spec("log-mel-spectrogram", 96, n_tags=3)
    with pytest.raises(DataFormatError, match="audio"):
        spec.to_example({"tid": "T", "artist_id": "", "audio": np.zeros((5, 95)), "tags": [0, 0, 1]}, schema)


def test_dataset_info_round_trip(tmp_path):
    info = datasets.DatasetInfo(features=FeatureSettings("log-mel-spectrogram", 16000, n_mels=96, n_fft=512,
                                                     hop_length=256, preset="musicnn"),
                            tags=("rock", "pop"), counts={"train": 3},
                            positives={"train": [2, 1]}, command="preprocessing.py ...")
    datasets.write_dataset_info(tmp_path, info)
    loaded = datasets.read_dataset_info(tmp_path)
    assert loaded == info
    assert loaded.features.frames_per_second == 62.5
    assert loaded.spec()["audio"].shape == (None, 96)


def test_one_feature_record_in_dataset_json_and_run_json(tmp_path):
    """dataset.json and run.json carry the same record, serialised the same way; old flat files still read."""
    import json

    from orpheus.formats.rundir import RunInfo, read_run_info, write_run_info

    features = FeatureSettings("mfcc", 22050, n_mels=40, n_fft=1024, hop_length=441, preset="db", n_mfcc=13)
    info = datasets.DatasetInfo(features=features, tags=("a", "b"), counts={"train": 1})
    datasets.write_dataset_info(tmp_path / "shards", info)
    run = RunInfo.from_dataset(info, ("b",), window_s=2.0)
    write_run_info(tmp_path / "run", run)
    dataset_json = json.loads((tmp_path / "shards" / "dataset.json").read_text())
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert dataset_json["features"] == run_json["features"] == features.to_json()
    assert (features.n_bins, features.frames_per_second, run.window_frames) == (13, 50.0, 100)
    # a folder written before the record was shared: the settings as top-level keys
    legacy = {**{k: v for k, v in dataset_json.items() if k != "features"}, **features.to_json()}
    (tmp_path / "shards" / "dataset.json").write_text(json.dumps(legacy))
    assert datasets.read_dataset_info(tmp_path / "shards") == info
    legacy_run = {**{k: v for k, v in run_json.items() if k != "features"}, **features.to_json()}
    (tmp_path / "run" / "run.json").write_text(json.dumps(legacy_run))
    assert read_run_info(tmp_path / "run") == run


def test_dataset_info_errors(tmp_path):
    with pytest.raises(MissingInputError, match="dataset.json"):
        datasets.read_dataset_info(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format": "waveform", "sample_rate": 16000, "tags": [], "colour": 1}')
    with pytest.raises(DataFormatError, match="unknown keys"):
        datasets.read_dataset_info(tmp_path)
