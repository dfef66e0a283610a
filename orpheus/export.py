"""Export a run directory's model for use outside Orpheus: SavedModel, ONNX, OpenVINO or LiteRT.

    orpheus export RUN_DIR OUT [--format savedmodel|onnx|openvino|litert]      (`orpheus.commands.export`)

RUN_DIR is a pretrained model's name (MSD_musicnn, ...) or a run directory, by the one rule of
`orpheus.models.pretrained.resolve_model`. OUT is a new folder holding:

    OUT/model.*          the model (savedmodel: OUT/saved_model/; onnx: model.onnx; openvino:
                         model.xml + model.bin; litert: model.tflite), input float32 [batch, frames,
                         bins] of one window of features, output float32 [batch, n_tags] probabilities
    OUT/features.json    how to rebuild the input from audio in any language: sample rate, mono
                         mix, STFT, mel, log compression, window and hop, normalisation, tag order
    OUT/tags.txt         the output order, one tag a line

No format carries the spectrogram front end: every exported model starts from the (log-mel) windows
that `features.json` describes, as Orpheus' own models do. Each format is converted from the same
`tf.function` the exact backend runs (`orpheus.tagging.backends`); `tests/test_export.py` checks each
against the Keras model (max difference <= 1e-4 in float32). Optional packages: `pip install
orpheus-tagger[export]` (tf2onnx, onnxruntime, ai-edge-litert) and `orpheus-tagger[openvino]`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from orpheus.audio.features import PRESETS
from orpheus.audio.windows import EPSILON
from orpheus.errors import ConfigError, MissingDependencyError
from orpheus.files import atomic_dir, check_output, write_json_atomic, write_text_atomic
from orpheus.formats.rundir import load_model, read_run_info
from orpheus.models.pretrained import resolve_model
from orpheus.tagging.backends import compiled_model, openvino_model
from orpheus.ownership import FolderKind, file_with

log = logging.getLogger(__name__)

FORMATS = ("savedmodel", "onnx", "openvino", "litert")
EXPORT = FolderKind("export", legacy=file_with("features.json", "tags.txt"))   # OUT: what --overwrite replaces
MODEL_FILES = {"savedmodel": "saved_model", "onnx": "model.onnx", "openvino": "model.xml", "litert": "model.tflite"}
EXTRAS = {"onnx": "tf2onnx (pip install orpheus-tagger[export])", "openvino": "openvino (pip install "
          "orpheus-tagger[openvino])", "litert": "ai-edge-litert (pip install orpheus-tagger[export])"}



def feature_description(info) -> dict[str, Any]:
    """Everything needed to turn audio into the model's input windows, from a RunInfo."""
    description: dict[str, Any] = {
        "format": info.features.format,
        "sample_rate": info.features.sample_rate,
        "audio": "decode to float32 in [-1, 1], average the channels to mono, resample to sample_rate "
                 "(soxr, quality HQ)",
        "settings": info.features.to_json(),   # the record of run.json / dataset.json, as Orpheus reads it
    }
    if info.features.format != "waveform":
        preset = PRESETS[info.features.preset or "db"]
        n_fft = info.features.n_fft or preset.n_fft
        hop = info.features.hop_length or preset.hop_length
        description["stft"] = {"n_fft": n_fft, "hop_length": hop, "window": "hann (periodic)", "center": True,
                               "pad_mode": "constant (zeros, n_fft // 2 on both sides)",
                               "power": 2, "frames": "1 + n_samples // hop_length"}
        description["mel"] = {"n_mels": info.features.n_mels or preset.n_mels, "fmin": 0.0, "fmax": info.features.sample_rate / 2,
                              "scale": "slaney", "norm": "slaney", "equals": "librosa.filters.mel(htk=False)"}
        if preset.compression == "log10":
            description["log_compression"] = "log10(10000 * mel + 1)"
        else:
            description["log_compression"] = ("10 * log10(max(1e-10, mel)), then floored 80 dB below the "
                                              "track's maximum (librosa.power_to_db(ref=1, top_db=80))")
        if info.features.format == "mfcc":
            description["mfcc"] = {"n_mfcc": info.features.n_mfcc or 20, "dct": "type II, ortho, of the dB log-mel"}
    hop_frames = info.window_frames
    description["window"] = {
        "frames": info.window_frames, "seconds": info.window_s, "hop_frames": hop_frames,
        "frames_per_second": info.features.frames_per_second,
        "cutting": "windows start every hop_frames; one more window aligned to the end of the track; a "
                   "track shorter than one window is zero-padded to one window",
    }
    description["normalise"] = {
        "method": info.normalise,
        "formula": {"per_example": f"each window: (x - mean(x)) / (std(x) + {EPSILON}) over all its values",
                    "dataset": f"(x - feature_mean) / (feature_std + {EPSILON}) per bin",
                    "none": "the features as they are"}[info.normalise]}
    if info.normalise == "dataset":
        description["feature_mean"], description["feature_std"] = list(info.feature_mean), list(info.feature_std)
    description["output"] = {"probabilities": "sigmoid, one per tag in tags.txt order",
                             "track_score": "mean (or max) of the window probabilities"}
    description["front_end_inside_model"] = False
    description["tags"] = list(info.tags)
    return description


def export_model(run_dir: str | Path, out: str | Path, fmt: str, *, overwrite: bool = False) -> Path:
    """Write the model of `run_dir` in `fmt` to the new folder `out`, with features.json and tags.txt."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dir, out = resolve_model(run_dir, "RUN_DIR")[0], Path(out)
    rule = dict(overwrite=overwrite, inputs=[(run_dir, "run directory being exported")], flag="OUT")
    check_output(out, EXPORT, **rule)
    info = read_run_info(run_dir)
    model = load_model(run_dir)
    with atomic_dir(out, EXPORT, **rule) as tmp:
        WRITERS[fmt](model, tmp / MODEL_FILES[fmt], info)
        write_json_atomic(tmp / "features.json", feature_description(info))
        write_text_atomic(tmp / "tags.txt", "".join(f"{t}\n" for t in info.tags))
    log.info("%s -> %s (%s)", run_dir, out / MODEL_FILES[fmt], fmt)
    return out


def _concrete(model, window_frames: int | None = None):
    return compiled_model(model, len(model.input_shape), window_frames).get_concrete_function()


def _frozen(model, window_frames: int | None = None):
    """The concrete function with its variables as constants and nested calls inlined."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    return convert_variables_to_constants_v2(_concrete(model, window_frames))


def write_savedmodel(model, path: Path, info) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def write_onnx(model, path: Path, info) -> None:
    """Frozen graph (variables as constants, nested function calls inlined) -> tf2onnx, opset 17.

    Keras 3 runs some layers as nested tf.functions, which tf2onnx cannot convert as calls.
    """
    try:
        import tf2onnx
    except ImportError as err:
        raise MissingDependencyError(f"--format onnx needs {EXTRAS['onnx']}") from err
    frozen = _frozen(model)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=17,
                                   output_path=str(path))


def write_openvino(model, path: Path, info) -> None:
    try:
        import openvino as ov
    except ImportError as err:
        raise MissingDependencyError(f"--format openvino needs {EXTRAS['openvino']}") from err
    ov.save_model(openvino_model(_concrete(model), len(model.outputs)), str(path), compress_to_fp16=False)


def write_litert(model, path: Path, info) -> None:
    """A .tflite with the batch axis free and the time axis fixed at the run's window (features.json).

    Frozen first: converted with its variables, the model reads them through READ_VARIABLE ops that
    the LiteRT interpreter leaves uninitialised (NaN, or a failed invoke without XNNPACK).
    """
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(model, info.window_frames)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    path.write_bytes(converter.convert())


WRITERS = {"savedmodel": write_savedmodel, "onnx": write_onnx, "openvino": write_openvino, "litert": write_litert}


def load_exported(out: str | Path, fmt: str):
    """A callable float32 windows -> probabilities for an exported folder (what the tests compare)."""
    import numpy as np
    out = Path(out)
    target = out / MODEL_FILES[fmt]
    if fmt == "savedmodel":
        import tensorflow as tf
        loaded = tf.saved_model.load(str(target))
        return lambda x: np.asarray(loaded.serve(tf.constant(x, tf.float32)))
    if fmt == "onnx":
        import onnxruntime as ort
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]
    if fmt == "openvino":
        import openvino as ov
        import openvino.properties.hint as hints
        # float32 on purpose: OpenVINO's default on a CPU with bf16 support is bf16 (about 3e-3 off)
        compiled = ov.Core().compile_model(str(target), "CPU", {hints.inference_precision: "f32"})
        return lambda x: np.array(compiled(np.asarray(x, np.float32))[0])
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise MissingDependencyError(f"running a LiteRT model needs {EXTRAS['litert']}") from err
    interpreter = Interpreter(model_path=str(target))

    def run(x):
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(np.shape(x)))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, np.asarray(x, np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return run
