"""Shape inference for a spec's layers: each layer's output shape and parameter counts with
Keras's formulas, in pure Python, and the checks that need the shapes (Whitening first, the
last layer, the size limit)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cifar_core.errors import SpecError
from cifar_core.spec.layers import AUGMENT_LAYERS, IMAGE_LAYERS, MAX_PARAMS, layer_name


@dataclass(frozen=True)
class LayerSummary:
    index: int  # 0-based position in the spec's layers
    type: str
    output_shape: tuple[int | None, ...]  # with the batch dimension first, as None
    params: int
    trainable: int

    @property
    def name(self) -> str:
        return layer_name(self.index, self.type)


def _infer(layers: list[dict], input_shape, errors: list[SpecError]) -> list[LayerSummary]:
    """Summaries of `layers` in order, stopping at the first shape problem (appended to `errors`)."""
    shape = tuple(input_shape)
    flattened_by: tuple[int, str] | None = None  # the layer that turned the image into a vector
    summaries = []
    for i, layer in enumerate(layers):
        try:
            fed_by = (i - 1, layers[i - 1]["type"]) if i else None
            new_shape, params, trainable = _infer_layer(i, layer, shape, flattened_by, fed_by)
        except SpecError as exc:
            errors.append(exc)
            break
        if len(shape) == 3 and len(new_shape) == 1:
            flattened_by = (i, layer["type"])
        shape = new_shape
        summaries.append(LayerSummary(i, layer["type"], (None, *shape), params, trainable))
    return summaries


def _infer_layer(i: int, layer: dict, shape: tuple, flattened_by, fed_by=None) -> tuple[tuple, int, int]:
    """(output shape without the batch dimension, params, trainable params) of one layer.
    `flattened_by` is the layer that turned the image into a vector, `fed_by` the one just before."""
    kind = layer["type"]
    where = f"layer {i} ({kind})"
    if kind in IMAGE_LAYERS and len(shape) != 3:
        # Name the layer whose output it gets (a Dense after the Flatten, say), then where to move it.
        source = f" from layer {fed_by[0]} ({fed_by[1]})" if fed_by else ""
        if flattened_by and fed_by and fed_by[0] != flattened_by[0]:
            source += f", a vector since layer {flattened_by[0]} ({flattened_by[1]}) flattened the image"
        move = f"move it before layer {flattened_by[0]}" if flattened_by else "move it before the Flatten"
        raise SpecError(
            f"{where} gets a {len(shape) + 1}-D input {_shape_text(shape)}{source}: it needs an image "
            f"(height, width, channels); {move}",
            layer=i,
        )
    if kind == "Dense":
        if len(shape) != 1:
            raise SpecError(
                f"{where} gets a {len(shape) + 1}-D input {_shape_text(shape)}: add a Flatten or "
                "GlobalAveragePooling2D before it",
                layer=i,
            )
        params = shape[0] * layer["units"] + (layer["units"] if layer["use_bias"] else 0)
        return (layer["units"],), params, params
    if kind == "Conv2D":
        height, width, channels = shape
        kh, kw = _pair(layer["kernel_size"])
        out = _window_output(where, i, "kernel", (height, width), (kh, kw), _pair(layer["strides"]), layer["padding"])
        params = kh * kw * channels * layer["filters"] + (layer["filters"] if layer["use_bias"] else 0)
        return (*out, layer["filters"]), params, params
    if kind == "Whitening":
        height, width, channels = shape
        k = layer["kernel_size"]
        out = _window_output(where, i, "patch", (height, width), (k, k), (1, 1), "valid")
        filters = k * k * channels * (2 if layer["negatives"] else 1)
        bias = filters if layer["bias_epochs"] > 0 else 0  # the kernel never trains
        return (*out, filters), k * k * channels * filters + filters, bias
    if kind == "ResidualBlock":
        channels, filters, k = shape[2], layer["filters"], layer["kernel_size"]
        if channels != filters:
            raise SpecError(
                f"{where}: filters={filters} must equal the input's {channels} channels (the shortcut adds "
                f"the input back); set filters to {channels} or put a Conv2D with {filters} filters before it",
                layer=i,
            )
        convs = 2 * k * k * filters * filters
        return shape, convs + 2 * 4 * filters, convs + 2 * 2 * filters
    if kind in ("MaxPool2D", "AveragePooling2D"):
        size, strides = _pair(layer["pool_size"]), _pair(layer["strides"])
        return (*_window_output(where, i, "pool", shape[:2], size, strides, layer["padding"]), shape[2]), 0, 0
    if kind == "Flatten":
        return (math.prod(shape),), 0, 0
    if kind == "GlobalAveragePooling2D":
        return (shape[2],), 0, 0
    if kind == "BatchNormalization":
        trained = 2 if layer["scale"] else 1  # gamma (unless scale is off) and beta; moving statistics do not train
        return shape, (trained + 2) * shape[-1], trained * shape[-1]
    return shape, 0, 0  # Dropout, Activation, Random*: shape-preserving, no weights


def _check_whitening_place(layers: list[dict]) -> list[SpecError]:
    """A Whitening layer must see the pixels its filters were computed from: only augmentation
    layers (no-ops at inference) may come before it."""
    errors = []
    for i, layer in enumerate(layers):
        before = [j for j in range(i) if layers[j]["type"] not in AUGMENT_LAYERS]
        if layer["type"] == "Whitening" and before:
            errors.append(SpecError(
                f"layer {i} (Whitening) must come first (only Random* augmentation layers before it): its filters "
                f"are computed from the training images' pixels, and layer {before[0]} ({layers[before[0]]['type']}) "
                "changes them; move it to position 0",
                layer=i,
            ))
    return errors


def _window_output(where: str, i: int, noun: str, size, window, strides, padding: str) -> tuple[int, int]:
    """Output height and width of a convolution or pooling window, with Keras's formulas."""
    if padding == "same":
        return tuple(-(-n // s) for n, s in zip(size, strides))  # ceil(n / s)
    if size[0] < window[0] or size[1] < window[1]:
        raise SpecError(
            f"{where}: input {size[0]}x{size[1]} is smaller than {noun} {window[0]}x{window[1]}; "
            "remove the layer or use padding 'same'",
            layer=i,
        )
    return tuple((n - k) // s + 1 for n, k, s in zip(size, window, strides))


def _check_last_layer(i: int, layer: dict, num_classes: int) -> list[SpecError]:
    want = f"Dense(units={num_classes}, activation='softmax')"
    if layer["type"] == "Dense":
        if layer["units"] == num_classes and layer["activation"] == "softmax":
            return []
        got = f"got units={layer['units']}, activation={layer['activation']!r}"
        return [SpecError(f"layer {i} (Dense): the last layer must be {want} to output class probabilities; {got}", layer=i)]
    return [SpecError(
        f"layer {i} ({layer['type']}): the last layer must be {want} to output class probabilities; add it at the end",
        layer=i,
    )]


def _check_size(summaries: list[LayerSummary]) -> list[SpecError]:
    total = sum(s.params for s in summaries)
    if total <= MAX_PARAMS:
        return []
    big = max(summaries, key=lambda s: s.params)
    return [SpecError(
        f"the model has {total:,} parameters, over the limit of {MAX_PARAMS:,}; layer {big.index} ({big.type}) "
        f"alone has {big.params:,}: use fewer units or filters, or pool before the Flatten",
        layer=big.index,
        field="layers",
    )]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
