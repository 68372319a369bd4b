"""Real Keras models built from specs. Matching count_params() and every layer's output shape with
`summarize()` is the proof that the pure-Python shape inference in cifar_core.spec is right."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifar_core.errors import SpecErrors
from cifar_core.train.models import build_model, compile_model, uses_one_hot
from cifar_core.spec.presets import NOTEBOOK_PRESETS, get_preset, preset_names
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from networks import NOTEBOOK_LAYERS, PRESET_PARAMS, assert_matches_summary

keras = pytest.importorskip("keras")

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}
TINY = [
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "activation": "relu"},
    {"type": "GlobalAveragePooling2D"},
    OUT,
]
OTHER_SPECS = {
    "bn_gap": [
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same", "use_bias": False},
        {"type": "BatchNormalization", "momentum": 0.9},
        {"type": "Activation", "activation": "gelu"},
        {"type": "Conv2D", "filters": 24, "kernel_size": 3, "strides": 2, "activation": "swish"},
        {"type": "BatchNormalization"},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 32, "activation": "leaky_relu"},
        {"type": "BatchNormalization"},
        OUT,
    ],
    "same_pools_and_strides": [
        {"type": "Conv2D", "filters": 8, "kernel_size": [3, 5], "strides": [1, 2], "padding": "same", "activation": "elu"},
        {"type": "MaxPool2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "AvgPool2D", "pool_size": [2, 3], "padding": "same"},
        {"type": "Conv2D", "filters": 8, "kernel_size": 2, "strides": 3, "activation": "tanh"},
        {"type": "MaxPooling2D", "pool_size": 1},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.5},
        {"type": "Dense", "units": 7, "activation": "selu", "use_bias": False},
        OUT,
    ],
    "residual": [
        {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same", "use_bias": False},
        {"type": "BatchNormalization"},
        {"type": "ResidualBlock", "filters": 16},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "ResidualBlock", "filters": 16, "kernel_size": 5},
        {"type": "GlobalAveragePooling2D"},
        OUT,
    ],
    "augmentation": [
        {"type": "RandomFlip", "mode": "horizontal"},
        {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
        {"type": "RandomRotation", "factor": 0.05, "fill_mode": "nearest"},
        {"type": "Conv2D", "filters": 4, "kernel_size": 11, "strides": 4, "activation": "sigmoid"},
        {"type": "AveragePooling2D", "pool_size": 2, "strides": 1},
        {"type": "Flatten"},
        OUT,
    ],
}


def spec_of(layers, **settings):
    return parse_spec({"name": "t", "layers": layers, **settings})


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", preset_names())
def test_presets_match_the_pure_python_summary(name):
    assert_matches_summary(parse_spec(get_preset(name)))


@pytest.mark.parametrize("name", NOTEBOOK_PRESETS)
def test_notebook_presets_build_the_notebooks_keras_networks(name):
    """The built Keras model, layer for layer, against the notebook's table (tests/test_spec.py)."""
    model = build_model(parse_spec(get_preset(name)), (32, 32, 3), 10)
    layers = [la for la in model.layers if la.name not in ("pixels", "rescale")]
    kinds = {"Flatten": "Flatten", "Dense": "Dense", "Conv2D": "Conv2D", "MaxPooling2D": "MaxPool2D", "Dropout": "Dropout"}
    assert [(kinds[type(la).__name__], tuple(la.output.shape)[1:]) for la in layers] == NOTEBOOK_LAYERS[name]
    for la in layers:
        config = la.get_config()
        if isinstance(la, keras.layers.Conv2D):
            assert (config["padding"], tuple(config["strides"]), config["activation"]) == ("same", (1, 1), "relu")
        if isinstance(la, keras.layers.MaxPooling2D):
            assert (tuple(config["pool_size"]), tuple(config["strides"]), config["padding"]) == ((2, 2), (2, 2), "same")
        if isinstance(la, keras.layers.Dropout):
            assert config["rate"] == 0.2
    assert model.count_params() == PRESET_PARAMS[name]


@pytest.mark.parametrize("name", list(OTHER_SPECS))
def test_other_specs_match_the_pure_python_summary(name):
    assert_matches_summary(spec_of(OTHER_SPECS[name]))


def test_other_input_shapes_and_class_counts():
    layers = [{"type": "Conv2D", "filters": 4, "kernel_size": 5}, {"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    spec = parse_spec({"name": "t", "layers": layers}, (28, 20, 1), 3)
    model = build_model(spec, (28, 20, 1), 3)
    summary = summarize(spec, (28, 20, 1), 3)
    assert model.count_params() == summary.total_params == 5 * 5 * 4 + 4 + 24 * 16 * 4 * 3 + 3
    assert model.output.shape == (None, 3)
    with pytest.raises(SpecErrors, match=r"the last layer must be Dense\(units=10"):
        build_model(spec, (28, 20, 1), 10)


def test_model_layout_names_and_rescaling():
    model = build_model(parse_spec(get_preset("exp4")), (32, 32, 3), 10)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["pixels", "rescale", "l00_conv2d"] and names[-1] == "l08_dense"
    rescale = model.get_layer("rescale")
    assert rescale.count_params() == 0
    x = pixels(2)
    np.testing.assert_allclose(np.asarray(rescale(x.astype("float32"))), x / 255.0, rtol=1e-6)
    probs = np.asarray(model(x, training=False))  # uint8 pixels go straight in
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_same_spec_builds_the_same_weights_and_the_seed_changes_them():
    spec = spec_of(TINY, seed=3)
    a, b = build_model(spec, (32, 32, 3), 10), build_model(spec, (32, 32, 3), 10)
    c = build_model(spec_of(TINY, seed=4), (32, 32, 3), 10)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_augmentation_layers_do_nothing_at_inference():
    model = build_model(spec_of(OTHER_SPECS["augmentation"]), (32, 32, 3), 10)
    x = pixels(8).astype("float32") / 255.0
    for name in ("l00_randomflip", "l01_randomtranslation", "l02_randomrotation"):
        layer = model.get_layer(name)
        np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    flipped = np.asarray(model.get_layer("l00_randomflip")(x, training=True))
    assert not np.array_equal(flipped, x)  # training does flip (8 images: all kept has p = 1/256)
    for original, out in zip(x, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])


@pytest.mark.parametrize(
    "settings, optimizer_class",
    [
        ({"optimizer": "adam", "learning_rate": 0.01}, "Adam"),
        ({"optimizer": "adamw", "weight_decay": 0.05}, "AdamW"),
        ({"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}, "SGD"),
        ({"optimizer": "rmsprop", "momentum": 0.5}, "RMSprop"),
    ],
)
def test_compile_model_for_each_optimizer(settings, optimizer_class):
    spec = spec_of(TINY, batch_size=32, **settings)
    model = build_model(spec, (32, 32, 3), 10)
    compile_model(model, spec, steps_per_epoch=2)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == optimizer_class
    assert math.isclose(float(optimizer.learning_rate), spec.learning_rate, rel_tol=1e-6)
    if spec.optimizer in ("sgd", "rmsprop"):
        assert math.isclose(optimizer.momentum, spec.momentum)
    if spec.optimizer == "sgd":
        assert optimizer.nesterov is True
    if spec.weight_decay:
        assert math.isclose(optimizer.weight_decay, spec.weight_decay)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(pixels(64), np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "accuracy"}
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before[0], model.get_weights()[0])


def test_weight_decay_skips_biases_and_batch_norm():
    spec = spec_of([*TINY[:1], {"type": "BatchNormalization"}, *TINY[1:]], optimizer="adamw", weight_decay=0.1)
    model = build_model(spec, (32, 32, 3), 10)
    compile_model(model, spec, steps_per_epoch=1)
    decayed = {w.path for w in model.trainable_weights if model.optimizer._use_weight_decay(w)}
    assert decayed == {"l00_conv2d/kernel", "l03_dense/kernel"}


def test_label_smoothing_uses_one_hot_targets():
    plain, smooth = spec_of(TINY), spec_of(TINY, label_smoothing=0.1)
    assert not uses_one_hot(plain) and uses_one_hot(smooth)
    model = build_model(smooth, (32, 32, 3), 10)
    compile_model(model, smooth, steps_per_epoch=2)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert math.isclose(model.loss.get_config()["label_smoothing"], 0.1)
    y = np.eye(10, dtype="float32")[np.arange(64) % 10]
    history = model.fit(pixels(64), y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "accuracy" in history.history


def test_schedule_drives_the_learning_rate():
    spec = spec_of(TINY, learning_rate=0.1, epochs=1, schedule={"type": "cosine", "final_fraction": 0.0})
    model = build_model(spec, (32, 32, 3), 10)
    compile_model(model, spec, steps_per_epoch=2)
    assert math.isclose(float(model.optimizer.learning_rate), 0.1, rel_tol=1e-6)
    model.fit(pixels(64), np.arange(64) % 10, batch_size=32, epochs=1, verbose=0)
    assert float(model.optimizer.learning_rate) < 1e-6  # annealed to 0 after the 2 steps


def test_compile_model_rejects_bad_steps():
    spec = spec_of(TINY)
    model = build_model(spec, (32, 32, 3), 10)
    with pytest.raises(ValueError, match=r"steps_per_epoch=0 must be a positive int"):
        compile_model(model, spec, steps_per_epoch=0)


def test_residual_model_saves_and_loads_back(tmp_path):
    from cifar_core.train.models import load_model

    spec = spec_of(OTHER_SPECS["residual"], label_smoothing=0.1, schedule={"type": "one_cycle"})
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=2)
    x = pixels(8)
    model.fit(x, keras.ops.one_hot(np.arange(8) % 10, 10), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_fused_batch_norm_matches_keras_batch_norm():
    """Same outputs, gradients and moving statistics as keras.layers.BatchNormalization (whose
    moving variance uses the biased batch variance: the fused kernel's is n / (n - 1) times it)."""
    import tensorflow as tf

    from cifar_core.train.models import fused_batch_norm_class

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (6, 5, 4, 3)), tf.float32)
    fused, plain = fused_batch_norm_class()(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    for layer in (fused, plain):
        layer.build(x.shape)
        layer.gamma.assign([1.5, 0.5, 2.0])
        layer.beta.assign([0.1, -0.2, 0.3])
    outputs, grads = [], []
    for layer in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.range(3, dtype=tf.float32))
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])])
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-3)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5)
    n = 6 * 5 * 4
    unbiased = (plain.moving_variance.numpy() - 0.5) * n / (n - 1) + 0.5  # momentum 0.5 from initial 1
    np.testing.assert_allclose(fused.moving_variance.numpy(), unbiased, rtol=1e-4)
    fused.moving_variance.assign(plain.moving_variance.numpy())
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-4)


def test_fused_batch_norm_falls_back_outside_its_kernel():
    """Dense features (2-D) take Keras's own path and still normalise per feature."""
    from cifar_core.train.models import fused_batch_norm_class

    x = np.random.default_rng(1).normal(5.0, 2.0, (32, 4)).astype("float32")
    y = fused_batch_norm_class()()(x, training=True).numpy()
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=0), 1, atol=1e-2)
