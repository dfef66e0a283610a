"""Int8 front end for `--precision fast`: post-training quantization of the convolutions that read the spectrogram.

Input: an OpenVINO model (the float32 IR that `orpheus.tagging.backends` converts and checks) and calibration
windows (`orpheus.tagging.calibration`). Output: the same model with its single-channel convolutions in int8
(FakeQuantize on their input and weights, which OpenVINO's CPU plugin runs as int8 convolutions), every
other layer left to the compile-time precision (bf16 or float32).

Why these layers, and how:
- A spectrogram model's first convolutions have one input channel: musicnn's timbral filters (7 frames x
  38 or 67 mel bands) and temporal filters (32-128 frames x 1 band) are 89% of its arithmetic. With one
  channel, int8 dot-product instructions (VNNI, AMX) have nothing to reduce over and oneDNN keeps such a
  convolution in bf16 or float32 even when it is quantized. `fold_time_taps` rewrites each as `group`
  time-shifted copies of its input stacked as channels (ExtractImagePatches) and a convolution of
  ceil(k / group) taps dilated by `group`: the same sums (float32 outputs equal to 1e-6), with 8 channels
  to reduce over.
- Their input, the normalised spectrogram, has one range for the whole tensor: per-tensor asymmetric
  uint8 loses little (max |dp| 0.0013 alone on 50 real clips). Weights are per output channel symmetric
  int8; rounded to nearest they cost max |dp| 0.0155, so they are rounded by GPTQ (Frantar et al. 2022,
  "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"): column by column,
  the rounding error of each weight is spread over the weights not yet rounded, in proportion to the
  inverse of the input's second-moment matrix, which minimises the convolution's output error on the
  calibration windows (0.0075 in all, bf16 elsewhere).
- The later layers stay as they are: musicnn's 753 concatenated mid-end features have ranges 30x apart,
  and per-tensor int8 there moved track scores by 0.27-0.49 (NNCF's default placement, measured).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

GROUP = 8             # time taps folded into channels: int8 dot products reduce over 4 (VNNI) or 64 bytes (AMX)
GPTQ_DAMPING = 0.01   # of the mean diagonal, added to the input's second-moment matrix (GPTQ's damping)
HESSIAN_STRIDE = 8    # every 8th output frame feeds the second-moment matrix (neighbours add little to it)
CALIBRATION_BATCH = 8


def single_channel_convolutions(model) -> list:
    """The model's 2-D convolutions with one input channel, constant weights, stride 1 and no dilation."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution" or op.input_value(1).get_node().get_type_name() != "Constant":
            continue
        shape = op.input_value(1).get_partial_shape()
        attributes = op.get_attributes()
        if (shape.rank.get_length() == 4 and shape[1].get_length() == 1 and list(attributes["strides"]) == [1, 1]
                and list(attributes["dilations"]) == [1, 1]):
            found.append(op)
    return found


def _pads(attributes: dict, kernel: int, axis: int) -> tuple[int, int]:
    """(begin, end) padding of a convolution along spatial `axis` (0 = time, 1 = frequency)."""
    if attributes["auto_pad"] in ("same_upper", "same_lower"):
        total = kernel - 1
        small = total // 2
        return (small, total - small) if attributes["auto_pad"] == "same_upper" else (total - small, small)
    if attributes["auto_pad"] == "valid":
        return 0, 0
    return int(attributes["pads_begin"][axis]), int(attributes["pads_end"][axis])


def fold_time_taps(model, convolutions, quantize_input=None, group: int = GROUP) -> list:
    """Rewrite each of `convolutions` (weights [out, 1, k, kw] over [batch, 1, time, freq]) with `group`
    time taps as channels; returns the new convolutions, weights [out, group, ceil(k / group), kw].

    `quantize_input(conv, stacked)`, if given, returns the node to feed the new convolution instead of the
    stacked copies (a FakeQuantize). Needs a static time axis (the CPU plugin cannot size the dilated
    convolution's output when the time axis may be shorter than its span).
    """
    import openvino.opset3 as ops3
    import openvino.opset13 as ops
    folded = []
    for conv in convolutions:
        weights = conv.input_value(1).get_node().get_data()
        n_out, _, k, kw = weights.shape
        g = min(group, k)
        taps = -(-k // g)
        attributes = conv.get_attributes()
        begin, end = _pads(attributes, k, 0)
        end += g * taps - k  # the zero weights past k read this extra padding
        data = conv.input_value(0)
        if begin or end:
            data = ops.pad(data, np.array([0, 0, begin, 0], np.int64), np.array([0, 0, end, 0], np.int64),
                           "constant", np.float32(0)).output(0)
        stacked = ops3.extract_image_patches(data, [g, 1], [1, 1], [1, 1], "valid").output(0)  # channel c = shift c
        if quantize_input is not None:
            stacked = quantize_input(conv, stacked)
        padded = np.concatenate([weights[:, 0], np.zeros((n_out, g * taps - k, kw), weights.dtype)], axis=1)
        new_weights = np.ascontiguousarray(padded.reshape(n_out, taps, g, kw).transpose(0, 2, 1, 3))
        freq_begin, freq_end = _pads(attributes, kw, 1)
        new = ops.convolution(stacked, ops.constant(new_weights), [1, 1], [0, freq_begin], [0, freq_end], [g, 1])
        new.set_friendly_name(conv.get_friendly_name())
        conv.output(0).replace(new.output(0))
        folded.append(new)
    model.validate_nodes_and_infer_types()
    return folded


def fake_quantize(node, low, high, levels: int):
    import openvino.opset13 as ops
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return ops.fake_quantize(node, ops.constant(low), ops.constant(high), ops.constant(low), ops.constant(high),
                             levels)


def uint8_range(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened to contain 0 and moved so that 0 is a grid point of 256 levels (exact zero padding)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0:  # a constant zero input
        return 0.0, 1.0
    scale = (high - low) / 255
    low = -round(-low / scale) * scale
    return low, low + 255 * scale


def _probe(model, outputs, windows: np.ndarray) -> list[np.ndarray]:
    """The values of `outputs` (node outputs of `model`) on `windows`, in float32."""
    import openvino as ov
    import openvino.properties.hint as hints
    probe = ov.Model(list(outputs), model.get_parameters(), "probe")
    request = ov.Core().compile_model(probe, "CPU", {hints.inference_precision: "f32"}).create_infer_request()
    values: list[list[np.ndarray]] = [[] for _ in outputs]
    for start in range(0, windows.shape[0], CALIBRATION_BATCH):
        result = request.infer({0: windows[start:start + CALIBRATION_BATCH]})
        for i in range(len(outputs)):
            values[i].append(np.array(result[i]))
    return [np.concatenate(v) for v in values]


def second_moment(x: np.ndarray, weight_shape: tuple[int, ...], dilation: int, freq_pads: tuple[int, int]
                  ) -> np.ndarray:
    """E[p p^T] over the input patches p of a convolution (every `HESSIAN_STRIDE`-th output frame).

    Args:
        x: float32 [n, channels, time, freq], the convolution's input.
        weight_shape: [out, channels, taps, kw]; p is ordered as the weights flattened per output.
        dilation: along time.
    Returns:
        float64 [channels * taps * kw, channels * taps * kw].
    """
    _, channels, taps, kw = weight_shape
    x = np.pad(x, ((0, 0), (0, 0), (0, 0), freq_pads))
    n_time = x.shape[2] - dilation * (taps - 1)
    n_freq = x.shape[3] - kw + 1
    size = channels * taps * kw
    moment = np.zeros((size, size))
    count = 0
    for window in x:
        patches = np.stack([window[:, a * dilation:a * dilation + n_time:HESSIAN_STRIDE, j:j + n_freq]
                            for a in range(taps) for j in range(kw)], axis=1)   # [channels, taps * kw, t, f]
        patches = np.ascontiguousarray(patches.reshape(size, -1), np.float32)
        moment += patches @ patches.T  # float32 products (BLAS), summed per window in float64
        count += patches.shape[1]
    return moment / max(count, 1)


def gptq_round(weights: np.ndarray, moment: np.ndarray, scale: np.ndarray, levels: int = 127) -> np.ndarray:
    """Weights [out, d] on the grid scale [out] x {-levels..levels}, rounded column by column so as to
    minimise the output error for inputs of second moment `moment` [d, d] (GPTQ)."""
    remaining = weights.astype(np.float64).copy()
    size = remaining.shape[1]
    damped = moment + GPTQ_DAMPING * max(float(np.mean(np.diag(moment))), 1e-12) * np.eye(size)
    inverse = np.linalg.cholesky(np.linalg.inv(damped)).T  # upper Cholesky factor of the inverse
    rounded = np.zeros_like(remaining)
    for i in range(size):
        rounded[:, i] = np.clip(np.round(remaining[:, i] / scale), -levels, levels) * scale
        error = (remaining[:, i] - rounded[:, i]) / inverse[i, i]
        remaining[:, i + 1:] -= np.outer(error, inverse[i, i + 1:])
    return rounded


def quantize_front_end(model, windows: np.ndarray):
    """A copy of `model` (static shape) whose single-channel convolutions run in int8, or None if it has none.

    Args:
        model: an OpenVINO model taking windows [batch, time, ...] with a static time axis.
        windows: float32 [n, time, ...] calibration windows, as the model takes them (normalised).
    """
    model = model.clone()
    convolutions = single_channel_convolutions(model)
    if not convolutions:
        return None
    inputs = _probe(model, [c.input_value(0) for c in convolutions], windows)
    ranges = {c.get_friendly_name(): uint8_range(float(x.min()), float(x.max())) for c, x in zip(convolutions, inputs)}

    def quantize_input(conv, stacked):
        return fake_quantize(stacked, *ranges[conv.get_friendly_name()], 256).output(0)

    folded = fold_time_taps(model, convolutions, quantize_input)
    import openvino.opset13 as ops
    for conv in folded:  # one at a time: a folded input is 8 copies of the spectrogram (64 windows: 40-60 MB)
        (x,) = _probe(model, [conv.input_value(0)], windows)  # as the int8 convolution sees it
        weights = conv.input_value(1).get_node().get_data()
        n_out = weights.shape[0]
        scale = np.maximum(np.abs(weights).reshape(n_out, -1).max(axis=1), 1e-12) / 127
        attributes = conv.get_attributes()
        moment = second_moment(x, weights.shape, int(attributes["dilations"][0]),
                               (int(attributes["pads_begin"][1]), int(attributes["pads_end"][1])))
        rounded = gptq_round(weights.reshape(n_out, -1), moment, scale).reshape(weights.shape).astype(np.float32)
        bound = (127 * scale).reshape(-1, 1, 1, 1).astype(np.float32)
        conv.input(1).replace_source_output(fake_quantize(ops.constant(rounded), -bound, bound, 255).output(0))
        log.debug("%s: int8, input range [%.3f, %.3f]", conv.get_friendly_name(), *ranges[conv.get_friendly_name()])
    model.validate_nodes_and_infer_types()
    return model
