"""What a network costs per image, independent of the machine: multiply-adds (MACs) of one
forward pass, computed from the spec's layer shapes (`schema.summarize`), without TensorFlow.

Counted: the multiply-adds of the weighted layers (Conv2D and Whitening: out_h * out_w * k_h * k_w * c_in *
filters; Dense: inputs * units; ResidualBlock: its two same-padded convolutions). Not counted:
biases, activations, pooling, the input's rescaling and BatchNormalization (an inference
engine folds it into the convolution before it): they are a few percent of a convolution's and
no multiply-add of their own. Dropout and the Random* augmentation layers do nothing at
inference. The figure ranks architectures by compute where a latency measurement is noisy.
"""

from __future__ import annotations

from cifar_core.spec.layers import INPUT_SHAPE, NUM_CLASSES
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec


def layer_macs(layer: dict, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one normalised spec layer for one image, given its input and output
    shapes without the batch dimension."""
    kind = layer["type"]
    if kind == "Dense":
        return input_shape[0] * layer["units"]
    if kind in ("Conv2D", "Whitening"):  # Whitening: a frozen valid-padded conv, filters from the data
        kh, kw = (layer["kernel_size"],) * 2 if isinstance(layer["kernel_size"], int) else layer["kernel_size"]
        out_h, out_w, filters = output_shape
        return out_h * out_w * kh * kw * input_shape[2] * filters
    if kind == "ResidualBlock":
        height, width, channels = input_shape
        k = layer["kernel_size"]
        return 2 * height * width * k * k * channels * layer["filters"]
    return 0


def multiply_adds(spec_or_doc, input_shape=INPUT_SHAPE, num_classes: int | None = None) -> int:
    """Multiply-adds of one forward pass of one image through the spec's network (module doc);
    raises SpecErrors for a spec that does not validate against input_shape. num_classes
    defaults to the width of the spec's last layer (the one it was validated with)."""
    if num_classes is None:
        layers = spec_or_doc.layers if isinstance(spec_or_doc, ExperimentSpec) else spec_or_doc.get("layers")
        last = layers[-1] if isinstance(layers, (list, tuple)) and layers and isinstance(layers[-1], dict) else {}
        num_classes = last.get("units", NUM_CLASSES) if isinstance(last.get("units"), int) else NUM_CLASSES
    spec = spec_or_doc if isinstance(spec_or_doc, ExperimentSpec) else parse_spec(spec_or_doc, input_shape, num_classes)
    total, shape = 0, tuple(input_shape)
    for layer, s in zip(spec.layers, summarize(spec, input_shape, num_classes).layers):
        out = tuple(s.output_shape[1:])
        total += layer_macs(layer, shape, out)
        shape = out
    return total
