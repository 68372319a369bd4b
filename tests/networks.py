"""The notebook's networks as the tests know them (their parameter counts and, layer by layer, the
output shapes: issue 15's table), and the check that a built Keras model matches the pure-Python
summary of its spec (Keras imported only by that check)."""

from __future__ import annotations

import math

from cifar_core.spec.summary import summarize

PRESET_PARAMS = {"exp1": 30_840, "exp2": 110_058, "exp3": 265_834, "exp4": 122_570, "exp5": 196_426}


# The notebook's networks, layer by layer with its output shapes (issue 15's table); test_spec checks the
# presets' summaries and test_models the built Keras models against the same table.
_CONV_POOL = [("Conv2D", (32, 32, 32)), ("MaxPool2D", (16, 16, 32)), ("Conv2D", (16, 16, 64)), ("MaxPool2D", (8, 8, 64)),
              ("Conv2D", (8, 8, 64)), ("MaxPool2D", (4, 4, 64))]
NOTEBOOK_LAYERS = {
    "exp1": [("Flatten", (3072,)), ("Dense", (10,)), ("Dense", (10,))],
    "exp2": [("Flatten", (3072,)), ("Dense", (32,)), ("Dense", (64,)), ("Dense", (128,)), ("Dense", (10,))],
    "exp3": [("Conv2D", (32, 32, 16)), ("MaxPool2D", (16, 16, 16)), ("Flatten", (4096,)), ("Dense", (64,)),
             ("Dense", (32,)), ("Dense", (10,))],
    "exp4": [*_CONV_POOL, ("Flatten", (1024,)), ("Dense", (64,)), ("Dense", (10,))],
    "exp5": [
        *_CONV_POOL[0:2], ("Dropout", (16, 16, 32)),
        *_CONV_POOL[2:4], ("Dropout", (8, 8, 64)),
        *_CONV_POOL[4:6], ("Dropout", (4, 4, 64)),
        ("Flatten", (1024,)), ("Dense", (128,)), ("Dense", (64,)), ("Dense", (10,)),
    ],
}


def assert_matches_summary(spec) -> None:
    from cifar_core.train.models import build_model  # Keras only for the tests that build models

    model = build_model(spec, (32, 32, 3), 10)
    summary = summarize(spec)
    assert model.count_params() == summary.total_params
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert trainable == summary.trainable_params
    assert model.get_layer("rescale").output.shape == (None, 32, 32, 3)
    for s in summary.layers:
        layer = model.get_layer(s.name)
        assert tuple(layer.output.shape) == s.output_shape, s.name
        assert layer.count_params() == s.params, s.name
