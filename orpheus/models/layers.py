"""Custom Keras layers of the model zoo, registered for saving (package "orpheus").

`orpheus.models` imports this module, so importing `orpheus.models` (as `orpheus.tagging.tagger.load_model` does)
is enough to load a `.keras` file that uses these layers.

Both layers here are Keras layers computed faster in training, with the same weights. Keras names a
layer's weights in `.weights.h5` files (and inside `.keras` files) after its class and its rank among the
layers of that class (`layers/conv2d_3/vars/0`), so each carries the class name of the layer it stands for
(`__name__`): weights files of models built from the plain layers load into these and back. They are
registered (and found when loading) under their own names, `orpheus>OneChannelConv2D` and
`orpheus>FusedBatchNormalization`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "orpheus"
TIME_TAPS = 8   # time taps unfolded into channels for the input gradient of a kernel that spans time only


@keras.saving.register_keras_serializable(package=PACKAGE, name="OneChannelConv2D")
class OneChannelConv2D(layers.Conv2D):
    """`keras.layers.Conv2D` over a one-channel input, with an input gradient at the speed of its arithmetic.

    The same layer as `Conv2D`: same config, same weights (`kernel` [kh, kw, 1, filters], `bias`), same
    forward convolution. Only the gradient of the input differs in how it is computed (TensorFlow backend,
    training). For a one-channel input that gradient is a convolution with ONE output channel, which
    oneDNN runs at a sixteenth of the AVX-512 vector width: for musicnn's timbral filters (7 x 38 over 96
    mel bands, batch 16, 3 s windows) it cost 3.3 CPU s, ten times the forward convolution (AMD EPYC Zen 4,
    2 cores). Here it is the gradient of the same convolution written with kernel taps as input channels
    (`one_channel_conv2d`), which oneDNN runs with full vectors; the kernel gradient is TensorFlow's own.

    Only stride 1, no dilation, one group, channels_last inputs [batch, n_time, n_freq, 1].
    """

    def __init__(self, filters: int, kernel_size, **kwargs) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        if tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1) or self.groups != 1:
            raise ValueError(f"{self.name}: OneChannelConv2D takes stride 1, no dilation and one group")
        if self.data_format != "channels_last":
            raise ValueError(f"{self.name}: OneChannelConv2D takes channels_last inputs")

    def build(self, input_shape) -> None:
        if input_shape[-1] != 1:
            raise ValueError(f"{self.name}: OneChannelConv2D takes one input channel, got shape {input_shape}")
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training and self.trainable and keras.backend.backend() == "tensorflow":
            outputs = one_channel_conv2d(inputs, ops.convert_to_tensor(self.kernel), padding=self.padding)
        else:
            outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        return outputs if self.activation is None else self.activation(outputs)


def one_channel_conv2d(inputs, kernel, *, padding: str):
    """TensorFlow's conv2d of a one-channel input (stride 1), with a faster gradient of the input.

    Args:
        inputs: float [batch, n_time, n_freq, 1] (n_time may be unknown until run time).
        kernel: float [kh, kw, 1, filters].
        padding: "valid" or "same" (TensorFlow's: the odd zero at the end).

    Returns:
        float [batch, n_time', n_freq', filters], the value of `tf.nn.conv2d(inputs, kernel, 1, padding)`.
        Its gradient of `kernel` is TensorFlow's; its gradient of `inputs` is computed with kernel taps as
        input channels (`_input_gradient`), equal to TensorFlow's to float32 round-off.
    """
    import tensorflow as tf  # the gradient is written for the TensorFlow backend (the layer checks it)

    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    tf_padding = padding.upper()
    # "same" at stride 1 pads (k - 1) // 2 before and k // 2 after, along each axis
    pads = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)) if tf_padding == "SAME" else ((0, 0), (0, 0))

    @tf.custom_gradient
    def convolve(x, w):
        def gradient(dy):
            dw = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy,
                                                 strides=[1, 1, 1, 1], padding=tf_padding)
            shape = tf.shape(x)
            dx = _input_gradient(dy, w, (shape[0], shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1])))
            (t0, _), (f0, _) = pads
            return dx[:, t0:t0 + shape[1], f0:f0 + x.shape[2]], dw

        return tf.nn.conv2d(x, w, 1, tf_padding), gradient

    # a tensor, not a variable, so that the gradient reaches the variable through its read
    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


def _input_gradient(dy, w, padded):
    """The gradient of a valid convolution's one-channel input, of shape `padded` = (batch, n_time, n_freq).

    The convolution y[t, f, c] = sum_{i, j} x[t + i, f + j] w[i, j, c] equals the valid convolution of
    u[t, f, j] = x[t, f + j] (kw frequency taps as channels) with w reshaped to [kh, 1, kw, c]: its
    input gradient has kw channels, not one. Folding it back (du[t, f, j] adds to dx[t, f + j]) gives
    dx. A kernel one bin wide unfolds TIME_TAPS time taps instead (u[t, f, j] = x[t + j, f], kernel
    [kh / g, 1, g, c] dilated by g along time).
    """
    import tensorflow as tf

    kh, kw, _, filters = w.shape
    batch, n_time, n_freq = padded
    if kw > 1:   # frequency taps as channels; fold with the skew trick along the frequency axis
        n_out = n_freq - kw + 1
        du = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.stack([batch, n_time, n_out, kw]),
                                            filter=tf.reshape(w, (kh, 1, kw, filters)), out_backprop=dy,
                                            strides=[1, 1, 1, 1], padding="VALID")
        # row f of du [n_out, kw], padded to kw + n_out and read as rows of kw + n_out - 1 = n_freq, lands
        # shifted by f: the sum over rows is dx
        skewed = tf.reshape(tf.pad(du, [[0, 0], [0, 0], [0, 0], [0, n_out]]), (batch, n_time, -1))
        skewed = tf.reshape(skewed[:, :, :n_out * n_freq], (batch, n_time, n_out, n_freq))
        return tf.reduce_sum(skewed, axis=2)[..., None]
    g = max(d for d in range(1, min(kh, TIME_TAPS) + 1) if kh % d == 0)
    kernel = tf.transpose(tf.reshape(w, (kh // g, g, 1, filters)), (0, 2, 1, 3))     # [kh / g, 1, g, c]
    du = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.stack([batch, n_time - g + 1, n_freq, g]), filter=kernel,
                                        out_backprop=dy, strides=[1, 1, 1, 1], padding="VALID",
                                        dilations=[1, g if kh > g else 1, 1, 1])
    return tf.add_n([tf.pad(du[..., j:j + 1], [[0, 0], [j, g - 1 - j], [0, 0], [0, 0]]) for j in range(g)])


@keras.saving.register_keras_serializable(package=PACKAGE, name="FusedBatchNormalization")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training pass over a 4-D channels-last map is TensorFlow's fused one.

    The same layer (config, weights `gamma`, `beta`, `moving_mean`, `moving_variance`, and outputs to
    float32 round-off; the moving variance is the biased batch variance, as Keras keeps it). Keras 3
    computes batch normalisation in training from a dozen element-wise operations and their gradients;
    on the [16, 187, 59, 204] map after musicnn's first timbral filters they cost 0.8 CPU s a step
    forward and backward, twice what `FusedBatchNormV3` (oneDNN) costs. Inference, frozen layers,
    masks, renormalisation, synchronised statistics and other backends take Keras's own path.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and not self.renorm and not self.synchronized
                and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4 and self.axis in (3, -1)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the fused kernel is TensorFlow's (checked above)

        x = ops.cast(inputs, "float32")   # Keras computes batch norm in float32 under any policy
        channels = x.shape[-1]
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,))
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,))
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon,
                                                                   is_training=True)
        count = ops.cast(ops.size(x) // channels, "float32")
        variance = variance * (count - 1.0) / count   # the fused kernel returns the unbiased variance
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(ops.cast(moving, "float32") * self.momentum + batch * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)


def copy_model(model: keras.Model, *, dtype: str | None = None, keras_layers: bool = False) -> keras.Model:
    """A copy of `model` with the same weights: every layer computing in `dtype` when given (a bf16-trained
    model saved in float32; float64 for a reference), and with Keras's own Conv2D and BatchNormalization in
    place of the layers here when `keras_layers` (the model as it was before them: bench/training.py and
    the tests compare the two)."""
    replaced = {OneChannelConv2D: layers.Conv2D, FusedBatchNormalization: layers.BatchNormalization}

    def clone(layer):
        config = layer.get_config()
        if dtype:
            config["dtype"] = dtype
        return (replaced.get(type(layer), type(layer)) if keras_layers else type(layer)).from_config(config)
    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


# the weights files' names (module docstring)
OneChannelConv2D.__name__ = layers.Conv2D.__name__
FusedBatchNormalization.__name__ = layers.BatchNormalization.__name__
