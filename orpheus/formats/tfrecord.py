"""The TFRecord schema, declared once: the writer and the parser are both generated from it.

The shard folder's own description (`dataset.json`, split names, shard file names) is `orpheus.formats.dataset`.

Every example holds:
    tid        bytes   the MSD track id (or the dataset's own clip id)
    artist_id  bytes   used for artist-separated splits; empty when unknown
    audio      float32 waveform [n_samples], log-mel [n_frames, n_mels] or MFCC [n_frames, n_mfcc],
                       stored flat (float32 values, or float16 bytes for compact storage) with its
                       shape in `audio_shape`
    tags       int64   [n_tags] multi-hot over `orpheus.formats.dataset.DatasetInfo.tags`

The writer needs no TensorFlow: `encode_example` writes a `tf.train.Example`'s wire bytes from the
schema, and `tfrecord_frame` frames them as `tf.io.TFRecordWriter` does (both byte-identical, tested),
so preprocessing's workers serialise and its writer starts before TensorFlow could have loaded.
`to_example` (a `tf.train.Example`) and `parse_fn` import TensorFlow when called.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import google_crc32c
import numpy as np

from orpheus.audio.settings import FORMATS
from orpheus.errors import DataFormatError

if TYPE_CHECKING:
    import tensorflow as tf

STORAGE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Feature:
    """One entry of the schema.

    dtype:   the parsed dtype's name: "string", "int64" or "float32" (`tf.as_dtype` of it).
    shape:   the parsed shape; `None` only on the first (time) axis, recorded per example.
    storage: "float16" stores a float32 feature as raw float16 bytes (half the size); else native.
    """
    dtype: str
    shape: tuple[int | None, ...]
    storage: str = "native"

    @property
    def variable(self) -> bool:
        return None in self.shape


def example_spec(fmt: str, n_bins: int | None, n_tags: int, storage: str = "float32") -> dict[str, Feature]:
    """The schema for one shard folder.

    Args:
        fmt: one of `FORMATS`.
        n_bins: mel bands (log-mel) or coefficients (MFCC); ignored for waveform.
        n_tags: size of the tag vocabulary.
        storage: "float32" or "float16" for the audio feature.
    """
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown feature format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if storage not in STORAGE_DTYPES:
        raise DataFormatError(f"unknown storage dtype {storage!r}; expected float32 or float16")
    audio_shape = (None,) if fmt == "waveform" else (None, int(n_bins))
    return {
        "tid": Feature("string", ()),
        "artist_id": Feature("string", ()),
        "audio": Feature("float32", audio_shape, "float16" if storage == "float16" else "native"),
        "tags": Feature("int64", (n_tags,)),
    }


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 takes its 64-bit two's complement (10 bytes)."""
    value &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _example_features(values: Mapping[str, Any], spec: Mapping[str, Feature]) -> Iterator[tuple[str, str, Any]]:
    """The features an example of `spec` holds, validated: (name, list kind, value).

    kind "bytes": value is bytes; "float": float32 [n] little-endian, contiguous; "int64": int64 [n].
    `to_example` and `encode_example` both consume this, so the message and its bytes cannot drift.
    """
    for name, feat in spec.items():
        if name not in values:
            raise DataFormatError(f"example is missing feature {name!r}")
        value = values[name]
        if feat.dtype == "string":
            yield name, "bytes", bytes(value.encode("utf-8") if isinstance(value, str) else value)
            continue
        array = np.asarray(value)
        expected = tuple(d for d in feat.shape)
        if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
            raise DataFormatError(f"feature {name!r} has shape {array.shape}, spec says {expected}")
        if feat.variable:
            yield f"{name}_shape", "int64", np.asarray(array.shape, dtype=np.int64)
        if feat.storage == "float16":
            yield name, "bytes", np.ascontiguousarray(array, dtype="<f2").tobytes()
        elif feat.dtype == "int64":
            yield name, "int64", array.ravel().astype(np.int64)
        else:
            yield name, "float", np.ascontiguousarray(array.ravel(), dtype="<f4")


def _float_list(array: np.ndarray) -> tf.train.FloatList:
    """A FloatList parsed from its packed wire form: the same message as `FloatList(value=...)`,
    but built from the array's bytes in one copy instead of one Python float at a time (25x faster
    for a 30 s log-mel)."""
    import tensorflow as tf

    raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return tf.train.FloatList.FromString(b"\x0a" + _varint(len(raw)) + raw)  # field 1, packed


def serialize(example: tf.train.Example) -> bytes:
    """Serialise with a deterministic map order, so shards are byte-identical from any process."""
    return example.SerializeToString(deterministic=True)


def to_example(values: Mapping[str, Any], spec: Mapping[str, Feature]) -> tf.train.Example:
    """One example as a `tf.train.Example`; `values` maps every spec name to a str/bytes or an array of its shape."""
    import tensorflow as tf

    features: dict[str, tf.train.Feature] = {}
    for name, kind, value in _example_features(values, spec):
        if kind == "bytes":
            features[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        elif kind == "int64":
            features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
        else:
            features[name] = tf.train.Feature(float_list=_float_list(value))
    return tf.train.Example(features=tf.train.Features(feature=features))


def _delimited(number: int, parts: list[bytes]) -> list[bytes]:
    """A length-delimited protobuf field made of `parts`: its key and length, then the parts themselves."""
    return [_varint(number << 3 | 2) + _varint(sum(len(part) for part in parts)), *parts]


def _packed_int64(values: np.ndarray) -> bytes:
    if 0 <= values.min() and values.max() < 0x80:  # multi-hot tags, shapes of short tracks: one byte each
        return values.astype(np.uint8).tobytes()
    return b"".join(_varint(int(v)) for v in values)


def _map_order(key: str) -> tuple[bytes, ...]:
    """Sort key of a string map key as protobuf's upb writes them with `deterministic=True`: bytewise,
    except that a key comes after the keys it is a prefix of ("audio_shape" before "audio")."""
    raw = key.encode("utf-8")
    return tuple(raw[i:i + 1] for i in range(len(raw))) + (b"\xff\xff",)


_LIST_FIELDS = {"bytes": 1, "float": 2, "int64": 3}  # Feature's oneof: bytes_list, float_list, int64_list


def encode_example(values: Mapping[str, Any], spec: Mapping[str, Feature]) -> list[bytes]:
    """The wire bytes of `serialize(to_example(values, spec))`, without TensorFlow, as a list of parts.

    Joining the parts (or framing them with `tfrecord_frame`) is the only copy of a feature's
    array on its way to the file. The encoding is protobuf's for
    Example { Features features = 1 }, Features { map<string, Feature> feature = 1 } and Feature
    { oneof: BytesList bytes_list = 1, FloatList float_list = 2, Int64List int64_list = 3 }: map
    entries in key order (what `deterministic=True` writes), numeric lists packed, empty ones left out.
    """
    entries: list[bytes] = []
    for name, kind, value in sorted(_example_features(values, spec), key=lambda item: _map_order(item[0])):
        if kind == "bytes":
            items = _delimited(1, [value])
        elif not value.size:
            items = []
        elif kind == "int64":
            items = _delimited(1, [_packed_int64(value)])
        else:
            items = _delimited(1, [value.tobytes()])
        feature = _delimited(_LIST_FIELDS[kind], items)
        entries += _delimited(1, [*_delimited(1, [name.encode("utf-8")]), *_delimited(2, feature)])  # key, value
    return _delimited(1, entries)


def _masked_crc(parts: list[bytes]) -> bytes:
    """TFRecord's checksum: CRC-32C of the parts, rotated right by 15 bits plus 0xa282ead8."""
    crc = 0
    for part in parts:
        crc = google_crc32c.extend(crc, part)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFF_FFFF)


def tfrecord_frame(parts: list[bytes]) -> bytes:
    """One TFRecord: uint64 length, masked CRC-32C of the length, the data, masked CRC-32C of the data
    (little-endian; the framing of `tf.io.TFRecordWriter`, uncompressed). `parts` is the data in pieces."""
    length = struct.pack("<Q", sum(len(part) for part in parts))
    return b"".join([length, _masked_crc([length]), *parts, _masked_crc(parts)])


def parse_fn(spec: Mapping[str, Feature]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """A function mapping one serialised example (scalar tf.string) to a dict of tensors.

    Variable-length features come back in their recorded shape, e.g. log-mel float32
    [n_frames, n_mels]; usable inside `tf.data.Dataset.map`.
    """
    import tensorflow as tf

    description: dict[str, Any] = {}
    for name, feat in spec.items():
        if feat.dtype == "string" or feat.storage == "float16":
            description[name] = tf.io.FixedLenFeature([], tf.string)
        elif feat.variable:
            description[name] = tf.io.VarLenFeature(tf.as_dtype(feat.dtype))
        else:
            description[name] = tf.io.FixedLenFeature(feat.shape, tf.as_dtype(feat.dtype))
        if feat.variable:
            description[f"{name}_shape"] = tf.io.FixedLenFeature([len(feat.shape)], tf.int64)

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_single_example(serialized, description)
        out: dict[str, tf.Tensor] = {}
        for name, feat in spec.items():
            value = raw[name]
            if feat.storage == "float16":
                value = tf.cast(tf.io.decode_raw(value, tf.float16, little_endian=True), tf.float32)
            elif isinstance(value, tf.SparseTensor):
                value = value.values
            if feat.variable:
                static = [d if d is not None else -1 for d in feat.shape]
                value = tf.reshape(value, tf.cast(raw[f"{name}_shape"], tf.int32))
                value = tf.ensure_shape(value, [None if d == -1 else d for d in static])
            out[name] = value
        return out

    return parse
