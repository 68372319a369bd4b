"""Build and compile the Keras model a spec describes. Keras is imported inside the functions,
so pages can import this module cheaply.

The model takes raw pixels (uint8 or float, 0..255); its first layer, "rescale", scales them to
0..1, and spec layer i follows under the name `layer_name(i, type)` ("l03_conv2d"). Weights are
initialised from seeds derived from the spec's seed, so the same spec builds the same model.
"""

from __future__ import annotations

import functools
import re

from cifar_core.train import schedules
from cifar_core.train.optimizers import make_optimizer, optimizer_custom_objects
from cifar_core.train.whitening import whitening_layer_class
from cifar_core.spec.layers import INPUT_SHAPE, NUM_CLASSES, layer_name
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.spec.summary import summarize


def uses_one_hot(spec: ExperimentSpec) -> bool:
    """True when the model is compiled for one-hot targets (label smoothing), else integer labels.

    Keras's sparse cross-entropy has no label smoothing, so a spec with label_smoothing > 0 is
    trained with CategoricalCrossentropy(label_smoothing=...) and the data pipeline must one-hot
    its labels (e.g. keras.ops.one_hot(y, num_classes)).
    """
    return spec.label_smoothing > 0


def build_model(spec: ExperimentSpec, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES):
    """The uncompiled keras.Model for `spec`; raises SpecErrors if the spec does not fit these dims."""
    import keras

    summarize(spec, input_shape, num_classes)  # same checks as the builder page, before any TF work
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, layer in enumerate(spec.layers):
        if i == len(spec.layers) - 1 and spec.logit_scale != 1:  # its softmax comes after the scaling
            layer = {**layer, "activation": "linear"}
        x = _make_layer(keras, i, layer, _layer_seed(spec.seed, i))(x)
    if spec.logit_scale != 1:
        x = keras.layers.Rescaling(spec.logit_scale, name="logit_scale")(x)
        x = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, x, name=re.sub(r"[^\w.-]", "_", spec.name))


def compile_model(model, spec: ExperimentSpec, steps_per_epoch: int) -> None:
    """Compile with the spec's optimizer, learning-rate schedule and loss; the metric is "accuracy"."""
    import keras

    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r} must be a positive int (ceil(train images / batch))")
    optimizer = make_optimizer(spec, steps_per_epoch)
    if uses_one_hot(spec):
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=spec.label_smoothing)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])


def _layer_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index + 1) % 2**31


def _make_layer(keras, i: int, layer: dict, seed: int):
    """The Keras layer for one normalised spec layer dict."""
    L = keras.layers
    kind = layer["type"]
    name = layer_name(i, kind)
    args = {k: _as_keras(v) for k, v in layer.items() if k != "type"}
    if kind == "Dense":
        return L.Dense(**args, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name=name)
    if kind == "Conv2D":
        init = dirac_initializer_class()(seed) if args.pop("initializer") == "dirac" else keras.initializers.GlorotUniform(seed)
        return L.Conv2D(**args, kernel_initializer=init, name=name)
    if kind == "ResidualBlock":
        return residual_block_class()(**args, seed=seed, name=name)
    if kind == "Whitening":  # its filters are set from the training images by whitening.prepare
        return whitening_layer_class()(**args, name=name)
    if kind in ("Dropout", "RandomFlip", "RandomTranslation", "RandomRotation"):
        return getattr(L, kind)(**args, seed=seed, name=name)
    classes = {
        "Flatten": L.Flatten,
        "MaxPool2D": L.MaxPooling2D,
        "AveragePooling2D": L.AveragePooling2D,
        "GlobalAveragePooling2D": L.GlobalAveragePooling2D,
        "BatchNormalization": fused_batch_norm_class(),
        "Activation": L.Activation,
    }
    if kind not in classes:
        raise ValueError(f"layer {i}: no Keras builder for type {kind!r}")
    return classes[kind](**args, name=name)


def _as_keras(value):
    return tuple(value) if isinstance(value, list) else value


@functools.cache
def fused_batch_norm_class() -> type:
    """Keras's BatchNormalization, but trained with TensorFlow's fused kernel (defined on first use).

    Keras 3 normalises with separate moment, subtract and scale ops; FusedBatchNormV3 does it in one
    oneDNN kernel, which trains the recommended presets about 30% faster on this CPU
    (scripts/bench_steptime.py). Same weights and config, so saved models and checkpoints of either
    class load into the other. One difference, as in Keras 2's fused layer: the moving variance is
    updated with the unbiased (n / (n - 1)) batch variance.
    """
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="cifar_lab", name="FusedBatchNormalization")
    class FusedBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            if not self._fusable(inputs, mask):
                return super().call(inputs, training=training, mask=mask)
            scale = self.gamma if self.scale else tf.ones([inputs.shape[-1]], tf.float32)
            if training and self.trainable:
                empty = tf.constant([], tf.float32)
                y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                    x=inputs, scale=scale, offset=self.beta, mean=empty, variance=empty,
                    epsilon=self.epsilon, data_format="NHWC", is_training=True)
                self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
                self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
                return y
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, data_format="NHWC", is_training=False)
            return y

        def _fusable(self, inputs, mask) -> bool:
            """The kernel's case: float32 NHWC images, channels last, plain BN with center (scale or not)."""
            return (mask is None and not self.renorm and not self.synchronized and len(inputs.shape) == 4
                    and self.axis in (-1, 3) and self.center and inputs.dtype == tf.float32)

    return FusedBatchNormalization


@functools.cache
def dirac_initializer_class() -> type:
    """A convolution kernel initialiser: glorot_uniform, except that filter c < min(in, out) is
    the identity on channel c (1 at the window's centre, 0 elsewhere), like torch's dirac_."""
    import keras
    import numpy as np

    @keras.saving.register_keras_serializable(package="cifar_lab", name="Dirac")
    class Dirac(keras.initializers.Initializer):
        def __init__(self, seed: int | None = None):
            self.seed = seed

        def __call__(self, shape, dtype=None):
            kh, kw, channels, filters = shape
            kernel = np.array(keras.initializers.GlorotUniform(self.seed)(shape, dtype="float32"))
            n = min(channels, filters)
            kernel[:, :, :, :n] = 0
            kernel[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1
            return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

        def get_config(self) -> dict:
            return {"seed": self.seed}

    return Dirac


@functools.cache
def residual_block_class() -> type:
    """Define and register the ResidualBlock layer on first use (keeps keras out of imports)."""
    import keras

    batch_norm = fused_batch_norm_class()

    @keras.saving.register_keras_serializable(package="cifar_lab", name="ResidualBlock")
    class ResidualBlock(keras.layers.Layer):
        """x + relu(bn(conv(relu(bn(conv(x)))))): two same-padded convolutions and an identity shortcut."""

        def __init__(self, filters: int, kernel_size: int = 3, seed: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.kernel_size, self.seed = filters, kernel_size, seed
            init = [keras.initializers.HeNormal(seed=None if seed is None else seed + j) for j in (0, 1)]
            self.conv1, self.conv2 = (
                keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, kernel_initializer=i)
                for i in init
            )
            self.bn1, self.bn2 = batch_norm(), batch_norm()

        def build(self, input_shape):
            # Built explicitly so a saved model's weights load before the first call.
            self.conv1.build(input_shape)
            self.bn1.build(input_shape)
            self.conv2.build(input_shape)
            self.bn2.build(input_shape)

        def call(self, x, training=None):
            y = keras.ops.relu(self.bn1(self.conv1(x), training=training))
            y = keras.ops.relu(self.bn2(self.conv2(y), training=training))
            return x + y

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self) -> dict:
            return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "seed": self.seed}

    return ResidualBlock


def custom_objects() -> dict[str, type]:
    """The lab's own Keras classes, registered; pass to keras.saving.load_model."""
    return {
        "ResidualBlock": residual_block_class(),
        "FusedBatchNormalization": fused_batch_norm_class(),
        "Whitening": whitening_layer_class(),
        "Dirac": dirac_initializer_class(),
        **optimizer_custom_objects(),
        **schedules.keras_custom_objects(),
    }


def load_refusal(path, exc: BaseException) -> str:
    """One line saying why a model file cannot be loaded, naming the file and the fix: a Lambda
    layer (code, which the lab never deserialises) by name, anything else by the first line of
    Keras's message (its own runs to several lines)."""
    message = str(exc).strip()
    if "Lambda" in message and "unsafe" in message.lower():
        return (f"{path} cannot be loaded: it holds a Lambda layer (Python code, which the lab never loads), "
                "so the lab did not write it; train the run again")
    first = message.splitlines()[0].strip() if message else ""
    return f"{path} cannot be loaded ({type(exc).__name__}: {first}); it is damaged or not a Keras model, train the run again"


def load_model(path):
    """Load a .keras file that this lab wrote (never call it on a user's upload)."""
    import keras

    return keras.saving.load_model(str(path), custom_objects=custom_objects())
