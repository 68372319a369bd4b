"""The Whitening layer (airbench, "How to train your ResNet"): a frozen first convolution whose
filters whiten the image patches of the training split.

Its filters are the eigenvectors of the covariance of every `kernel_size` x `kernel_size` patch of
the training images (pixels scaled to 0..1, as the model's "rescale" layer does), each divided by
sqrt(eigenvalue + epsilon x the mean pixel variance), largest eigenvalue first; with `negatives` the negated filters follow,
so a ReLU-like activation after it keeps both signs. Its bias starts at -filters . mean patch, so
the output has zero mean and (for eigenvalues well above epsilon) unit covariance on training
patches. The kernel never trains; the bias trains for the first `bias_epochs` epochs, then is
frozen (`BiasFreeze`).

The filters come from the training split only (`splits.x_train` in `train.loop.train`, never the
validation or test images), from at most MAX_IMAGES images chosen by the spec's seed: the same
data and seed give the same filters. Keras is imported inside the functions.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_IMAGES = 5000  # images whose patches estimate the covariance (airbench uses 5,000)
_CHUNK = 256  # images per step of the running sums (bounds the memory of the patch matrix)


def whitening_filters(images: np.ndarray, kernel_size: int, epsilon: float, negatives: bool = True,
                      seed: int = 0, max_images: int = MAX_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (k, k, channels, filters), bias (filters,)) as float32 for uint8 `images` (N, H, W, C)."""
    x = np.asarray(images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images must be a non-empty (N, height, width, channels) array, got shape {x.shape}")
    k = int(kernel_size)
    if min(x.shape[1:3]) < k:
        raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} pixels have no {k}x{k} patches; use a smaller kernel_size")
    if len(x) > max_images:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_images, replace=False))]
    mean, cov = _patch_moments(x, k)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1].clip(min=0), eigenvectors[:, ::-1]
    # eigh's signs are arbitrary: make each vector's largest entry positive, so machines agree
    signs = np.sign(eigenvectors[np.abs(eigenvectors).argmax(axis=0), np.arange(len(eigenvalues))])
    # epsilon is in units of the mean pixel variance: airbench adds it to the eigenvalues of patches of
    # standardised images; on 0..1 pixels (variance ~0.06 here) the same number damped 6 of 12 directions
    pixel_variance = float(np.trace(cov)) / len(cov)
    filters = eigenvectors * signs / np.sqrt(eigenvalues + epsilon * pixel_variance)  # one filter per column
    if negatives:
        filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(k, k, x.shape[3], filters.shape[1])  # rows follow the patch order (row, column, channel)
    return kernel.astype(np.float32), (-mean @ filters).astype(np.float32)


def _patch_moments(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of all k x k patches of `x` / 255, flattened as (row, column, channel)."""
    d = k * k * x.shape[3]
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK].astype(np.float64) / 255
        windows = np.lib.stride_tricks.sliding_window_view(chunk, (k, k), axis=(1, 2))  # (n, H', W', C, k, k)
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, d)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    return mean, outer / count - np.outer(mean, mean)


def prepare(model, x_train: np.ndarray, seed: int) -> list:
    """Set every Whitening layer of `model` from the training images `x_train`; returns the
    callbacks that freeze their biases (empty when the model has none)."""
    layer_class = whitening_layer_class()
    callbacks = []
    for layer in model.layers:
        if isinstance(layer, layer_class):
            kernel, bias = whitening_filters(x_train, layer.kernel_size, layer.epsilon, layer.negatives, seed)
            layer.kernel.assign(kernel)
            layer.bias.assign(bias)
            callbacks.append(bias_freeze_class()(layer))
    return callbacks


@functools.cache
def whitening_layer_class() -> type:
    """Define and register the Whitening layer on first use (keeps keras out of imports)."""
    import keras

    @keras.saving.register_keras_serializable(package="cifar_lab", name="Whitening")
    class Whitening(keras.layers.Layer):
        """A valid-padded, stride-1 convolution with a frozen kernel set by `prepare`; its
        filters = kernel_size**2 * input channels, twice that with `negatives`."""

        def __init__(self, kernel_size: int = 2, epsilon: float = 5e-4, negatives: bool = True,
                     bias_epochs: int = 3, **kwargs):
            super().__init__(**kwargs)
            self.kernel_size, self.epsilon = int(kernel_size), float(epsilon)
            self.negatives, self.bias_epochs = bool(negatives), int(bias_epochs)

        def filters(self, channels: int) -> int:
            return self.kernel_size**2 * channels * (2 if self.negatives else 1)

        def build(self, input_shape):
            k, channels = self.kernel_size, input_shape[-1]
            n = self.filters(channels)
            self.kernel = self.add_weight(shape=(k, k, channels, n), initializer="zeros", trainable=False, name="kernel")
            self.bias = self.add_weight(shape=(n,), initializer="zeros", trainable=self.bias_epochs > 0, name="bias")

        def call(self, x):
            return keras.ops.conv(x, self.kernel, strides=1, padding="valid") + self.bias

        def compute_output_shape(self, input_shape):
            n, height, width, channels = input_shape
            k = self.kernel_size
            return (n, height - k + 1, width - k + 1, self.filters(channels))

        def get_config(self) -> dict:
            return {**super().get_config(), "kernel_size": self.kernel_size, "epsilon": self.epsilon,
                    "negatives": self.negatives, "bias_epochs": self.bias_epochs}

    return Whitening


@functools.cache
def bias_freeze_class() -> type:
    import keras

    class BiasFreeze(keras.callbacks.Callback):
        """Stops training a Whitening layer's bias from epoch `bias_epochs` on (0-based), also in a
        resumed run. The variable leaves the trainable weights, so the optimizer no longer moves it
        (not even by momentum), and the train step is traced again without it."""

        def __init__(self, layer) -> None:
            super().__init__()
            self.layer = layer

        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= self.layer.bias_epochs and self.layer.bias.trainable:
                self.layer.bias.trainable = False
                self.model.make_train_function(force=True)

    return BiasFreeze
