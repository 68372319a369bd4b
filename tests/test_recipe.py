"""The airbench / "How to train your ResNet" options: each one does what it says, on real Keras
and small generated data."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifar_core.errors import SpecErrors
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.datagen import synthetic_arrays
from cifar_core.train.models import build_model, compile_model, load_model
from cifar_core.train.whitening import _patch_moments, prepare, whitening_filters
from networks import assert_matches_summary
from recorder import Recorder

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}


def spec_of(layers, **settings):
    return parse_spec({"name": "t", "layers": layers, **settings})


def whitened(k=2, negatives=True, bias_epochs=3, epsilon=5e-4):
    return {"type": "Whitening", "kernel_size": k, "negatives": negatives, "bias_epochs": bias_epochs, "epsilon": epsilon}


def whitening_net(**settings):
    return spec_of([whitened(**settings), {"type": "Activation", "activation": "gelu"},
                    {"type": "GlobalAveragePooling2D"}, OUT])


@pytest.fixture(scope="module")
def images():
    return synthetic_arrays(30, seed=3)


# --- Whitening ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_whitening_output_has_identity_covariance_on_training_patches(images, k):
    x, _ = images
    model = build_model(whitening_net(k=k, epsilon=1e-6))
    prepare(model, x, seed=0)
    layer = model.get_layer("l00_whitening")
    out = keras.Model(model.input, layer.output).predict(x.astype(np.float32), verbose=0)
    d = k * k * 3
    assert out.shape == (len(x), 33 - k, 33 - k, 2 * d)
    flat = out.reshape(-1, 2 * d).astype(np.float64)
    np.testing.assert_allclose(flat[:, d:], -flat[:, :d], atol=1e-5)  # the negated copies
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-3)  # the bias centres it
    np.testing.assert_allclose(np.cov(flat[:, :d], rowvar=False), np.eye(d), atol=0.02)
    raw = np.cov(np.lib.stride_tricks.sliding_window_view(x / 255, (k, k), axis=(1, 2)).reshape(-1, d), rowvar=False)
    assert np.abs(raw - np.eye(d)).max() > 0.5  # the pixels themselves were far from white


def test_whitening_epsilon_is_in_units_of_the_pixel_variance_as_on_airbenchs_standardised_images(images):
    x, _ = images
    low = (x // 4 + 96).astype(np.uint8)  # a quarter of the contrast: a sixteenth of the variance
    for imgs in (x, low):
        _, cov = _patch_moments(imgs, 2)
        eigenvalues = np.linalg.eigvalsh(cov)[::-1]
        kernel, _ = whitening_filters(imgs, 2, 0.05, negatives=False)
        norms = np.linalg.norm(kernel.reshape(12, 12), axis=0)  # each filter: eigenvector / sqrt(ev + eps * var)
        np.testing.assert_allclose(norms, 1 / np.sqrt(eigenvalues + 0.05 * np.trace(cov) / 12), rtol=1e-3)
    # so the same epsilon damps the same directions whatever the images' contrast
    damping = [eigenvalues / (eigenvalues + 0.05 * np.trace(cov) / 12) for cov, eigenvalues in
               ((c, np.linalg.eigvalsh(c)[::-1]) for c in (_patch_moments(x, 2)[1], _patch_moments(low, 2)[1]))]
    np.testing.assert_allclose(damping[0], damping[1], atol=0.05)


def test_whitening_filters_are_deterministic_and_the_seed_picks_the_images(images):
    x, _ = images
    a = whitening_filters(x, 2, 5e-4, seed=1, max_images=100)
    b = whitening_filters(x.copy(), 2, 5e-4, seed=1, max_images=100)
    c = whitening_filters(x, 2, 5e-4, seed=2, max_images=100)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])  # another sample of 100 of the 300 images
    kernel, bias = whitening_filters(x, 3, 5e-4, negatives=False)
    assert kernel.shape == (3, 3, 3, 27) and bias.shape == (27,) and kernel.dtype == np.float32


def test_whitening_bias_trains_for_its_epochs_then_stays_frozen(images):
    x, y = images
    spec = parse_spec({"name": "t", "layers": whitening_net(bias_epochs=1).to_dict()["layers"], "optimizer": "sgd",
                       "learning_rate": 0.05, "momentum": 0.9})
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=10)
    freeze = prepare(model, x, seed=0)
    layer = model.get_layer("l00_whitening")
    kernel, seen = layer.kernel.numpy().copy(), [layer.bias.numpy().copy()]
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(layer.bias.numpy().copy()))
    model.fit(x.astype(np.float32), y, batch_size=30, epochs=3, verbose=0, callbacks=[*freeze, record])
    assert not np.allclose(seen[1], seen[0])  # epoch 1 trained it
    np.testing.assert_array_equal(seen[2], seen[1])  # then frozen: no momentum carries it on
    np.testing.assert_array_equal(seen[3], seen[1])
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)  # the kernel never trains


def test_whitening_summary_matches_keras_and_the_model_loads_back(images, tmp_path):
    x, _ = images
    for settings in ({}, {"k": 3, "negatives": False, "bias_epochs": 0}):
        spec = whitening_net(**settings)
        assert_matches_summary(spec)
    spec = whitening_net()
    first = summarize(spec).layers[0]
    assert (first.output_shape, first.params, first.trainable) == ((None, 31, 31, 24), 2 * 2 * 3 * 24 + 24, 24)
    assert summarize(whitening_net(bias_epochs=0)).layers[0].trainable == 0
    model = build_model(spec)
    prepare(model, x, seed=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)
    assert again.get_layer("l00_whitening").get_config()["bias_epochs"] == 3


def test_whitening_spec_errors_name_the_value_and_the_fix():
    flip = {"type": "RandomFlip", "mode": "horizontal"}
    spec_of([flip, whitened(), {"type": "Flatten"}, OUT])  # augmentation before it is fine
    with pytest.raises(SpecErrors, match=r"layer 1 \(Whitening\) must come first .* layer 0 \(Conv2D\) .*move it to position 0"):
        spec_of([{"type": "Conv2D", "filters": 3, "kernel_size": 1}, whitened(), {"type": "Flatten"}, OUT])
    with pytest.raises(SpecErrors, match=r"kernel_size=4 is out of range 2\.\.3; 2 or 3 pixels"):
        spec_of([whitened(k=4), {"type": "Flatten"}, OUT])
    with pytest.raises(SpecErrors, match=r"epsilon=0 is out of range \(0, 0\.1\]"):
        spec_of([whitened(epsilon=0), {"type": "Flatten"}, OUT])


# --- a real run -----------------------------------------------------------------------------


@pytest.fixture()
def ds(lab_home, small_data):
    from cifar_core.data.sources import load_dataset

    return load_dataset(str(small_data))


def test_training_whitens_with_the_training_split_only(ds, tmp_path):
    from cifar_core.train import loop

    spec = parse_spec({"name": "w", "layers": whitening_net().to_dict()["layers"], "epochs": 1, "batch_size": 64})
    outcome = loop.train(spec, ds, tmp_path / "run", Recorder())
    assert outcome.status == loop.COMPLETED
    kernel = load_model(outcome.files["model"]).get_layer("l00_whitening").kernel.numpy()
    split = loop.make_splits(spec, ds)
    assert len(split.x_train) < len(ds.x_train)  # holdout: 10% of the train images validate
    np.testing.assert_allclose(kernel, whitening_filters(split.x_train, 2, 5e-4)[0], rtol=1e-3, atol=1e-3)
    assert not np.allclose(kernel, whitening_filters(ds.x_train, 2, 5e-4)[0], rtol=1e-3, atol=1e-3)


# --- BatchNormalization without scale, its momentum, and its biases' learning rate ----------

CONV_BN = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "use_bias": False},
           {"type": "BatchNormalization", "scale": False, "momentum": 0.6}, {"type": "Activation", "activation": "gelu"},
           {"type": "GlobalAveragePooling2D"}, OUT]


def test_batch_norm_without_scale_has_no_gamma_and_keeps_its_momentum(images):
    import tensorflow as tf

    spec = spec_of(CONV_BN)
    assert_matches_summary(spec)
    assert (summarize(spec).layers[1].params, summarize(spec).layers[1].trainable) == (3 * 4, 4)
    model = build_model(spec)
    bn = model.get_layer("l01_batchnormalization")
    assert bn.gamma is None and [w.name for w in bn.trainable_weights] == ["beta"]
    bn.beta.assign([0.5, -0.5, 1.0, 0.0])
    x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (8, 6, 6, 4)), tf.float32)
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), [0.5, -0.5, 1.0, 0.0], atol=1e-4)  # normalised, then shifted
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1, atol=1e-2)  # not scaled
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.4 * x.numpy().mean(axis=(0, 1, 2)), rtol=1e-4)  # 0.6 * 0 + 0.4 * mean
    plain = keras.layers.BatchNormalization(scale=False, momentum=0.6)
    plain.build(x.shape)
    plain.beta.assign(bn.beta.numpy())
    np.testing.assert_allclose(plain(x, training=True).numpy(), y, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batch_norm_biases_learn_at_their_multiple_of_the_rate(images, optimizer):
    x, y = images
    steps = {}
    for multiplier in (1.0, 8.0):
        spec = spec_of(CONV_BN, optimizer=optimizer, learning_rate=0.01, bn_bias_lr_multiplier=multiplier)
        model = build_model(spec)
        compile_model(model, spec, steps_per_epoch=1)
        before = {w.path: w.numpy().copy() for w in model.trainable_weights}
        model.train_on_batch(x[:32].astype(np.float32), y[:32])
        steps[multiplier] = {w.path: w.numpy() - before[w.path] for w in model.trainable_weights}
    beta = "l01_batchnormalization/beta"
    assert np.abs(steps[1.0][beta]).min() > 0
    np.testing.assert_allclose(steps[8.0][beta], 8 * steps[1.0][beta], rtol=1e-3, atol=1e-7)
    for path in steps[1.0]:
        if path != beta:  # every other variable takes the same step
            np.testing.assert_allclose(steps[8.0][path], steps[1.0][path], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_decay_biases_shrinks_biases_and_batch_norm_shifts_by_the_kernels_fraction(optimizer):
    shrunk = {}
    for decay_biases in (False, True):
        spec = spec_of(CONV_BN, optimizer=optimizer, learning_rate=0.1, weight_decay=0.01, bn_bias_lr_multiplier=64.0,
                       decay_biases=decay_biases)
        model = build_model(spec)
        compile_model(model, spec, steps_per_epoch=1)
        for w in model.trainable_weights:
            w.assign(np.ones(w.shape, np.float32))
        # zero gradients: what moves is the decay alone (Adam's step is 0 for a zero gradient)
        model.optimizer.apply_gradients([(np.zeros(w.shape, np.float32), w) for w in model.trainable_weights])
        shrunk[decay_biases] = {w.path: float(1 - w.numpy().mean()) for w in model.trainable_weights}
    kernels = ["l00_conv2d/kernel", "l04_dense/kernel"]
    others = ["l01_batchnormalization/beta", "l04_dense/bias"]
    assert sorted(shrunk[False]) == sorted(kernels + others)
    for flag in (False, True):  # w -= lr x wd x w
        assert all(shrunk[flag][k] == pytest.approx(0.1 * 0.01, rel=1e-3) for k in kernels)
    assert all(shrunk[False][k] == 0 for k in others)
    # by the same fraction as the kernels: the base rate, not the BatchNorm biases' 64 times it
    assert all(shrunk[True][k] == pytest.approx(0.1 * 0.01, rel=1e-3) for k in others)


def test_decay_biases_needs_a_weight_decay():
    with pytest.raises(SpecErrors, match=r"decay_biases=true has no decay to apply: weight_decay is 0; set weight_decay"):
        spec_of(CONV_BN, optimizer="sgd", decay_biases=True)
    assert spec_of(CONV_BN, optimizer="sgd", weight_decay=5e-4, decay_biases=True).decay_biases


def test_a_model_trained_with_the_multiplier_saves_and_loads_back(images, tmp_path):
    x, y = images
    spec = spec_of(CONV_BN, optimizer="sgd", momentum=0.9, learning_rate=0.01, bn_bias_lr_multiplier=64.0)
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=1)
    model.fit(x.astype(np.float32), y, batch_size=100, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert again.optimizer.get_config()["bn_bias_lr_multiplier"] == 64.0
    np.testing.assert_allclose(again.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)


def test_batch_norm_options_name_the_bad_value_and_the_fix():
    with pytest.raises(SpecErrors, match=r"bn_bias_lr_multiplier=0 is out of range \(0, 256\]; 1 trains them like the rest"):
        spec_of(CONV_BN, bn_bias_lr_multiplier=0)
    with pytest.raises(SpecErrors, match=r"scale must be true or false, got 'no'"):
        spec_of([CONV_BN[0], {"type": "BatchNormalization", "scale": "no"}, *CONV_BN[2:]])


# --- Muon -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(576, 64), (32, 288)])
def test_orthogonalize_sets_every_singular_value_near_one_and_keeps_the_directions(shape):
    from cifar_core.train.optimizers import orthogonalize

    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], min(shape))))
    spread = np.geomspace(1.0, 0.05, min(shape))  # singular values 20x apart
    matrix = (u * spread) @ v.T
    out = keras.ops.convert_to_numpy(orthogonalize(keras.ops.convert_to_tensor(matrix.astype(np.float32))))
    assert out.shape == shape
    values = np.linalg.svd(out, compute_uv=False)
    assert values.min() > 0.5 and values.max() < 1.5, values  # Muon's 3-step quintic: ~0.5..1.5, not exactly 1
    np.testing.assert_allclose(u.T @ out @ v, np.diag(np.diag(u.T @ out @ v)), atol=2e-3)  # same singular vectors


def test_muon_steps_convolution_kernels_by_their_orthogonalised_gradient(images):
    from cifar_core.train.optimizers import orthogonalize

    x, y = images
    batch = (x[:32].astype(np.float32), y[:32])
    kernel = "l00_conv2d/kernel"

    def one_step(**settings):
        spec = spec_of(CONV_BN, optimizer="sgd", **settings)
        model = build_model(spec)
        compile_model(model, spec, steps_per_epoch=1)
        before = {w.path: w.numpy().copy() for w in model.trainable_weights}
        model.train_on_batch(*batch)
        return before, {w.path: w.numpy() for w in model.trainable_weights}

    before, plain = one_step(learning_rate=1.0)  # plain SGD at rate 1: the step is minus the gradient
    gradient = before[kernel] - plain[kernel]
    _, muon = one_step(learning_rate=1.0, muon_learning_rate=0.2, muon_momentum=0.6)
    filters = gradient.shape[-1]
    renormed = before[kernel] * np.sqrt(filters) / np.linalg.norm(before[kernel])
    update = keras.ops.convert_to_numpy(orthogonalize(keras.ops.convert_to_tensor(gradient.reshape(-1, filters))))
    np.testing.assert_allclose(muon[kernel], renormed - 0.2 * update.reshape(gradient.shape), atol=1e-5)
    step = (renormed - muon[kernel]).reshape(-1, filters) / 0.2
    assert np.linalg.svd(step, compute_uv=False).min() > 0.5  # a plain gradient step is far from that
    for path in plain:
        if path != kernel:  # the rest take the optimizer's own step
            np.testing.assert_allclose(muon[path], plain[path], rtol=1e-4, atol=1e-6)


def test_muon_settings_name_the_bad_value_and_the_fix():
    with pytest.raises(SpecErrors, match=r"muon_learning_rate=11 is out of range 0\.\.10; 0 turns it off"):
        spec_of(CONV_BN, muon_learning_rate=11)
    with pytest.raises(SpecErrors, match=r"muon_momentum=0.9 is Muon's momentum, which muon_learning_rate=0 turns off"):
        spec_of(CONV_BN, muon_momentum=0.9)
    with pytest.raises(SpecErrors, match=r"muon_learning_rate=0.2 steps convolution kernels.*no Conv2D or ResidualBlock"):
        spec_of([{"type": "Flatten"}, OUT], muon_learning_rate=0.2)
    assert spec_of(CONV_BN, muon_learning_rate=0.2).muon_momentum == 0.6


# --- weight averaging (EMA) -----------------------------------------------------------------


def test_validation_and_the_final_model_use_the_averaged_weights(images):
    from cifar_core.train import averaging

    x, y = images
    spec = spec_of(CONV_BN, optimizer="sgd", learning_rate=0.05, momentum=0.9, ema_momentum=0.9)
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=10)
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):  # after the swap: the model holds what validation scores
            seen["scored"] = [w.numpy().copy() for w in self.model.trainable_weights]

        def on_epoch_end(self, epoch, logs=None):
            seen["raw"] = [w.numpy().copy() for w in self.model.trainable_weights]
            seen["average"] = [v.numpy().copy() for v in self.model.optimizer._model_variables_moving_average]
            seen["val_loss"] = logs["val_loss"]

    data = x.astype(np.float32)
    model.fit(data, y, batch_size=30, epochs=2, validation_data=(data[:60], y[:60]), verbose=0,
              callbacks=[*averaging.callbacks(spec), Spy()])
    for scored, average, raw in zip(seen["scored"], seen["average"], seen["raw"]):
        np.testing.assert_array_equal(scored, average)
    assert any(not np.allclose(a, r) for a, r in zip(seen["average"], seen["raw"]))  # the average is not the weights
    for final, average in zip(model.trainable_weights, seen["average"]):  # fit ends with the average in the model
        np.testing.assert_array_equal(final.numpy(), average)
    assert np.isclose(model.evaluate(data[:60], y[:60], verbose=0)[0], seen["val_loss"], rtol=1e-4)
    assert averaging.callbacks(spec_of(CONV_BN)) == []


def test_a_resumed_run_keeps_its_average(ds, tmp_path):
    from cifar_core.train import loop
    from cifar_core.train.checkpoint import read_checkpoint
    from cifar_core.train.resume import restore_weights

    spec = parse_spec({"name": "e", "layers": CONV_BN, "epochs": 2, "batch_size": 64, "ema_momentum": 0.8})

    assert loop.train(spec, ds, tmp_path / "run", Recorder(stop_after=1)).status == loop.STOPPED
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=6)
    restore_weights(model, read_checkpoint(tmp_path / "run"))
    averages = [v.numpy() for v in model.optimizer._model_variables_moving_average]
    assert all(np.abs(a).max() > 0 for a in averages)  # restored, not the zeros a new optimizer starts with
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(averages, model.trainable_weights))
    outcome = loop.train(spec, ds, tmp_path / "run", Recorder())
    assert outcome.status == loop.COMPLETED and [h["epoch"] for h in outcome.history] == [1, 2]


def test_ema_warmup_grows_the_averages_momentum_with_the_steps_done(images):
    x, y = images  # 300 images, batch 30, 1 epoch: T = 10 steps
    spec = spec_of(CONV_BN, optimizer="sgd", learning_rate=0.05, momentum=0.9, ema_momentum=0.9, ema_warmup=2, epochs=1)
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=10)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(([w.numpy().copy() for w in self.model.trainable_weights],
                         [a.numpy().copy() for a in self.model.optimizer._model_variables_moving_average]))

    model.fit(x.astype(np.float32), y, batch_size=30, epochs=1, verbose=0, callbacks=[Spy()])
    assert len(seen) == 10
    expected = seen[0][0]  # the first step starts the average at the weights
    for t, (weights, average) in enumerate(seen, start=1):
        m = 0.0 if t == 1 else 0.9 * (t / 10) ** 2  # 0, 0.036, ..., 0.729, 0.9
        expected = [m * e + (1 - m) * w for e, w in zip(expected, weights)]
        for a, e in zip(average, expected):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer))  # saved models keep it
    assert (restored.ema_warmup, restored.total_steps) == (2.0, 10)


def test_ema_settings_name_the_bad_value_and_the_fix():
    with pytest.raises(SpecErrors, match=r"ema_momentum=1 is out of range \[0, 1\); 0 turns it off"):
        spec_of(CONV_BN, ema_momentum=1)
    with pytest.raises(SpecErrors, match=r"ema_momentum=0.99 does not combine with early_stopping: .*remove one of them"):
        spec_of(CONV_BN, ema_momentum=0.99, early_stopping={"patience": 3})
    with pytest.raises(SpecErrors, match=r"ema_warmup=3.0 ramps .*ema_momentum=0 turns off; set ema_momentum .*or ema_warmup to 0"):
        spec_of(CONV_BN, ema_warmup=3)
    with pytest.raises(SpecErrors, match=r"ema_warmup=9 is out of range 0..8; 0 keeps ema_momentum fixed"):
        spec_of(CONV_BN, ema_momentum=0.9, ema_warmup=9)


# --- alternating flip -----------------------------------------------------------------------


def mirrored_by_epoch(images, ds, steps: int, epochs: range) -> dict[int, set[int]]:
    """{epoch: ids of the images mirrored} from a dataset running through `epochs` in order."""
    out, it = {}, iter(ds)
    for epoch in epochs:
        xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in (next(it) for _ in range(steps))])
        x, y = np.concatenate(xs), np.concatenate(ys)
        assert sorted(y) == list(range(len(images)))  # every image once per epoch
        same = {int(i) for out_, i in zip(x, y) if np.array_equal(out_, images[i])}
        flipped = {int(i) for out_, i in zip(x, y) if np.array_equal(out_, images[i][:, ::-1])}
        assert same | flipped == set(range(len(images))) and not same & flipped
        out[epoch] = flipped
    return out


def test_alternating_flip_mirrors_each_image_on_every_other_epoch():
    from cifar_core.train.augment import flip_base, train_dataset

    images = np.random.default_rng(0).integers(1, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    ids = np.arange(40)
    cfg = {"alternate_flip": True, "translate": 0}
    ds = train_dataset(images, ids, 16, cfg, seed=5, num_classes=40, epochs=range(0, 3))
    seen = mirrored_by_epoch(images, ds, 3, range(3))
    half = {int(i) for i in np.flatnonzero(flip_base(40, 5))}
    assert seen[0] == half and 10 < len(half) < 30  # epoch 1: the seed's random half
    assert seen[1] == set(range(40)) - half  # epoch 2: exactly the others
    assert seen[2] == half
    resumed = train_dataset(images, ids, 16, cfg, seed=5, num_classes=40, epochs=range(1, 3))
    first_resumed = [b.numpy() for _, b in resumed.take(3)]
    first_full = [b.numpy() for _, b in ds.skip(3).take(3)]
    for a, b in zip(first_resumed, first_full):  # a resumed run gets the very batches of its epoch
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"alternate_flip mirrors by epoch number: pass epochs="):
        train_dataset(images, ids, 16, cfg, seed=5, num_classes=40)


def test_alternate_flip_and_flip_are_one_or_the_other():
    with pytest.raises(SpecErrors, match=r"augment flip and alternate_flip are two ways to mirror: keep one"):
        spec_of(CONV_BN, augment={"flip": True, "alternate_flip": True})
    with pytest.raises(SpecErrors, match=r"augment alternate_flip must be true or false, got 1"):
        spec_of(CONV_BN, augment={"alternate_flip": 1})


# --- logit scale and dirac initialisation ---------------------------------------------------


def test_logit_scale_multiplies_the_logits_before_the_softmax(images, tmp_path):
    x, _ = images
    layers = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2}, {"type": "Flatten"}, OUT]
    spec = spec_of(layers, logit_scale=0.25)
    assert_matches_summary(spec)
    model = build_model(spec)
    logits = keras.Model(model.input, model.get_layer("l02_dense").output).predict(x[:16], verbose=0)
    want = keras.ops.softmax(0.25 * logits).numpy()
    probs = model.predict(x[:16], verbose=0)
    np.testing.assert_allclose(probs, want, atol=1e-6)
    assert not np.allclose(probs, keras.ops.softmax(logits).numpy(), atol=1e-3)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x[:16], verbose=0), probs, atol=1e-6)
    with pytest.raises(SpecErrors, match=r"logit_scale=0 is out of range \(0, 100\]; 1 leaves them alone"):
        spec_of(layers, logit_scale=0)


@pytest.mark.parametrize("filters", [2, 3, 6])
def test_dirac_convolutions_start_as_the_identity_on_their_first_channels(images, filters, tmp_path):
    x, _ = images
    conv = {"type": "Conv2D", "filters": filters, "kernel_size": 3, "padding": "same", "use_bias": False,
            "initializer": "dirac"}
    spec = spec_of([conv, {"type": "Flatten"}, OUT])
    model = build_model(spec)
    out = keras.Model(model.input, model.get_layer("l00_conv2d").output).predict(x[:4], verbose=0)
    n = min(3, filters)
    np.testing.assert_allclose(out[..., :n], x[:4, :, :, :n] / 255, atol=1e-6)  # channel c passes through
    if filters > 3:
        assert np.abs(model.get_layer("l00_conv2d").kernel.numpy()[..., 3:]).max() > 0  # the rest: glorot
    again = build_model(spec)
    np.testing.assert_array_equal(again.get_layer("l00_conv2d").kernel.numpy(), model.get_layer("l00_conv2d").kernel.numpy())
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), atol=1e-6)
    with pytest.raises(SpecErrors, match=r"initializer='he' is not allowed; use one of glorot_uniform, dirac"):
        spec_of([{**conv, "initializer": "he"}, {"type": "Flatten"}, OUT])


# --- everything at once ---------------------------------------------------------------------


def test_a_short_run_with_every_recipe_option_stops_resumes_and_completes(ds, tmp_path):
    from cifar_core.train import loop
    from cifar_core.train.augment import predict_probs

    doc = {
        "name": "recipe",
        "layers": [
            whitened(bias_epochs=1),
            {"type": "Activation", "activation": "gelu"},
            {"type": "Conv2D", "filters": 16, "kernel_size": 3, "padding": "same", "use_bias": False, "initializer": "dirac"},
            {"type": "BatchNormalization", "scale": False, "momentum": 0.6},
            {"type": "Activation", "activation": "gelu"},
            {"type": "MaxPool2D", "pool_size": 2},
            {"type": "GlobalAveragePooling2D"},
            OUT,
        ],
        "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "epochs": 2, "batch_size": 64,
        "bn_bias_lr_multiplier": 64, "ema_momentum": 0.9, "lookahead_steps": 2, "logit_scale": 0.2, "label_smoothing": 0.1,
        "muon_learning_rate": 0.1,
        "augment": {"alternate_flip": True, "translate": 2}, "tta_flip": True, "tta_shift": 1,
    }
    spec = parse_spec(doc)

    workdir = tmp_path / "run"
    assert loop.train(spec, ds, workdir, Recorder(stop_after=1)).status == loop.STOPPED
    outcome = loop.train(spec, ds, workdir, Recorder())  # resumed: epoch 2 only, with the bias frozen
    assert outcome.status == loop.COMPLETED
    assert [h["epoch"] for h in outcome.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in outcome.history)
    assert 0 <= outcome.test_accuracy <= 1
    model = load_model(outcome.files["model"])
    saved = np.load(outcome.files["predictions"])["probs"].astype(np.float32)
    probs = predict_probs(model, ds.x_test, tta_flip=True, tta_shift=1)
    np.testing.assert_allclose(probs, saved, atol=2e-3)  # float16 on disk
    assert model.get_layer("logit_scale").get_config()["scale"] == 0.2


def test_lookahead_sets_the_weights_to_their_average_every_k_steps(images):
    x, y = images
    spec = spec_of(CONV_BN, optimizer="sgd", learning_rate=0.05, momentum=0.9, ema_momentum=0.8, lookahead_steps=3)
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=10)
    equal = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pairs = zip(self.model.trainable_weights, self.model.optimizer._model_variables_moving_average)
            equal.append(all(np.array_equal(w.numpy(), a.numpy()) for w, a in pairs))

    model.fit(x.astype(np.float32), y, batch_size=30, epochs=1, verbose=0, callbacks=[Spy()])
    assert equal == [True, False, True, False, False, True, False, False, True, False]  # steps 3, 6, 9; step 1 starts the average
    with pytest.raises(SpecErrors, match=r"lookahead_steps=5 resets the weights .*set ema_momentum .*or lookahead_steps to 0"):
        spec_of(CONV_BN, lookahead_steps=5)


def test_a_fresh_process_loads_models_with_the_labs_own_layers_for_predictions(tmp_path):
    """The Predict page loads a run's model in a process that may never have built one: the lab's
    classes (registered on first use) must still be found."""
    import subprocess
    import sys

    layers = [whitened(), {"type": "ResidualBlock", "filters": 24},
              {"type": "Conv2D", "filters": 4, "kernel_size": 3, "initializer": "dirac"}, {"type": "Flatten"}, OUT]
    model = build_model(spec_of(layers, logit_scale=0.5))
    model.save(tmp_path / "model.keras")
    script = (
        "from pathlib import Path\n"
        "from cifar_core.analysis.prediction import TrainedModel, load_trained_model\n"
        f"m = load_trained_model(TrainedModel(1, 't', Path({str(tmp_path / 'model.keras')!r}), 'x', False, 0))\n"
        "print(type(m.get_layer('l00_whitening')).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "Whitening"


def test_the_ablation_goes_from_the_resnet_preset_to_the_fast_preset_one_option_at_a_time(script):
    from cifar_core.spec.presets import get_preset

    ablation = script("recipe_ablation")
    docs, doc = [], {}
    for step in ablation.STEPS:
        doc = step.change(doc)
        docs.append(parse_spec({**doc, "name": "step"}).to_dict())
    assert [l["type"] for l in docs[0]["layers"]].count("ResidualBlock") == 2  # the ResNet-lite it starts from
    assert all(a != b for a, b in zip(docs, docs[1:]))  # every step changes something
    recipe = parse_spec({**get_preset("fast"), "name": "step"}).to_dict()
    same = lambda d: {k: v for k, v in d.items() if k not in ("description", "epochs")}  # the script sets those
    assert same(docs[-1]) == same(recipe)


def test_rewriting_the_ablation_report_keeps_its_hand_written_section(script, tmp_path):
    ablation = script("recipe_ablation")
    out = tmp_path / "recipe.md"
    ablation.write_report(out, "# first\n")
    assert out.read_text() == "# first\n"
    out.write_text(out.read_text() + "\n## Single checks by hand\n\nseed 2: 89%\n")
    ablation.write_report(out, "# second\n")
    assert out.read_text() == "# second\n\n## Single checks by hand\n\nseed 2: 89%\n"


def test_re_running_some_ablation_steps_keeps_the_other_rows(script, tmp_path):
    import argparse

    ablation = script("recipe_ablation")
    args = argparse.Namespace(epochs=7, seeds=1, steps="0-1", data="cifar10-jpeg.tar.gz")
    out = tmp_path / "recipe.md"
    ablation.write_report(out, ablation.report([(0, 0.80, 0.0, [None], 30.0, 1.5), (1, 0.82, 0.0, [7], 28.0, 1.6)], args))
    first = out.read_text().splitlines()
    args.steps = "1"
    written, kept = ablation.kept_rows(out, {1})
    assert sorted(kept) == [0] and kept[0] in first
    assert first[2].startswith(f"Written {written} by `scripts/recipe_ablation.py --epochs 7 --seeds 1` on")
    ablation.write_report(out, ablation.report([(1, 0.85, 0.0, [6], 27.0, 1.4)], args, (written, kept)))
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert rows[0] == kept[0]  # step 0's figures as they were
    assert rows[1].startswith(f"| 1 | {ablation.STEPS[1].label} | 85.00% ± 0.0 | +5.0 points | 6 | 27 | 1.40 |")
    assert f"--steps 1` on `cifar10-jpeg.tar.gz` (the other steps: rows of the report written {written}, kept)" in out.read_text()
