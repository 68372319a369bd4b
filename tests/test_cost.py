"""Multiply-adds per image from a spec, against figures worked out by hand."""

from __future__ import annotations

import pytest

from cifar_core.errors import SpecErrors
from cifar_core.spec.cost import multiply_adds
from cifar_core.spec.presets import PRESETS
from cifar_core.testing.datagen import tiny_spec


def test_notebook_nets_by_hand():
    # exp1: 3072 pixels -> Dense 10 -> Dense 10.
    assert multiply_adds(PRESETS["exp1"]) == 3072 * 10 + 10 * 10
    # exp2: 3072 -> 32 -> 64 -> 128 -> 10.
    assert multiply_adds(PRESETS["exp2"]) == 3072 * 32 + 32 * 64 + 64 * 128 + 128 * 10
    # exp3: Conv 16 5x5 same on 32x32x3, pool to 16x16x16, dense 64, 32, 10.
    assert multiply_adds(PRESETS["exp3"]) == 32 * 32 * 5 * 5 * 3 * 16 + 16 * 16 * 16 * 64 + 64 * 32 + 32 * 10
    # exp4: three 3x3 same convs at 32, 16 and 8 pixels, then 4x4x64 -> 64 -> 10.
    convs = 32 * 32 * 9 * 3 * 32 + 16 * 16 * 9 * 32 * 64 + 8 * 8 * 9 * 64 * 64
    assert multiply_adds(PRESETS["exp4"]) == convs + 4 * 4 * 64 * 64 + 64 * 10
    # exp5: exp4's convolutions (dropout costs nothing) and a 1024 -> 128 -> 64 -> 10 head.
    assert multiply_adds(PRESETS["exp5"]) == convs + 1024 * 128 + 128 * 64 + 64 * 10


def test_valid_padding_strides_and_residual_blocks():
    # A valid 3x3 conv of 4 filters on 32x32x3 gives 30x30x4; pool to 15x15x4; dense 900 -> 10.
    assert multiply_adds(tiny_spec()) == 30 * 30 * 9 * 3 * 4 + 900 * 10
    doc = {"name": "s", "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": [3, 5], "strides": 2, "padding": "same"},  # 16x16x8
        {"type": "BatchNormalization"}, {"type": "Activation", "activation": "relu"},
        {"type": "ResidualBlock", "filters": 8},  # two 3x3 8->8 convs at 16x16
        {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
    assert multiply_adds(doc) == 16 * 16 * 3 * 5 * 3 * 8 + 2 * 16 * 16 * 9 * 8 * 8 + 8 * 10


def test_input_shape_and_class_count_follow_the_data():
    # A 16x16 grey data set with 3 classes: the class count is read from the last layer.
    doc = {"name": "g", "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3, "padding": "same"},
                                   {"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]}
    assert multiply_adds(doc, (16, 16, 1)) == 16 * 16 * 9 * 1 * 2 + 16 * 16 * 2 * 3
    with pytest.raises(SpecErrors, match="smaller than kernel"):
        multiply_adds({"name": "x", "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 5},
                                               {"type": "Flatten"}, {"type": "Dense", "units": 10,
                                                                     "activation": "softmax"}]}, (4, 4, 3))


@pytest.mark.parametrize("k, negatives, filters", [(2, True, 24), (3, True, 54), (2, False, 12)])
def test_a_whitening_layer_costs_what_its_frozen_convolution_does(k, negatives, filters):
    """Whitening is a valid-padded stride-1 conv of k*k*C filters (twice that with negatives)."""
    doc = {"name": "w", "layers": [
        {"type": "Whitening", "kernel_size": k, "negatives": negatives},
        {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
    out = 32 - k + 1
    assert multiply_adds(doc) == out * out * filters * k * k * 3 + filters * 10
