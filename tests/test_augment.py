"""tf.data pipelines: shapes, dtypes, what each augmentation does, seeds, and TTA predictions."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_core.spec.training import tta_views, validate_augment
from cifar_core.train.augment import augment_batch, eval_dataset, predict_probs, train_dataset
from cifar_core.errors import DataError, SpecError

N = 48


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # 1..255 so any exact zero in an output comes from cutout
    return np.random.default_rng(0).integers(1, 256, size=(N, 32, 32, 3), dtype=np.uint8)


IDS = np.arange(N)  # labels double as image ids, so each output can be matched to its source


def one_epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(a.numpy(), b.numpy()) for a, b in ds])
    return np.concatenate(xs), np.concatenate(ys)


def augmented(images, cfg: dict, seed: int = 0):
    return one_epoch(train_dataset(images, IDS, 16, cfg, seed=seed, num_classes=N, one_hot=False))


def test_plain_batches_are_a_float_permutation(images):
    ds = train_dataset(images, IDS, 16, {}, seed=0, num_classes=N, one_hot=False)
    first_x, first_y = next(iter(ds))
    assert first_x.shape == (16, 32, 32, 3) and first_x.dtype.name == "float32"
    assert first_y.shape == (16,) and first_y.dtype.name == "int32"
    x, y = one_epoch(ds)
    assert sorted(y) == list(IDS) and list(y) != list(IDS)  # shuffled, every image once
    np.testing.assert_array_equal(x, images[y].astype(np.float32))  # 0..255 kept, no rescale


def test_last_partial_batch_is_kept(images):
    sizes = [int(b.shape[0]) for _, b in train_dataset(images, IDS, 20, {}, 0, N, False)]
    assert sizes == [20, 20, 8]


def test_one_hot_labels_sum_to_one(images):
    labels = IDS % 10
    ds = train_dataset(images, labels, 16, {"flip": True}, seed=0, num_classes=10, one_hot=True)
    for _, y in ds:
        assert y.shape == (16, 10) and y.dtype.name == "float32"
        np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0)


def test_flip_mirrors_some_images_and_keeps_others(images):
    x, y = augmented(images, {"flip": True})
    same = [np.array_equal(out, images[i]) for out, i in zip(x, y)]
    mirrored = [np.array_equal(out, images[i][:, ::-1]) for out, i in zip(x, y)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 5 < sum(mirrored) < N - 5


def test_translate_is_a_crop_of_the_reflect_padded_image(images):
    x, y = augmented(images, {"translate": 4})
    offsets = set()
    for out, i in zip(x, y):
        padded = np.pad(images[i], ((4, 4), (4, 4), (0, 0)), mode="reflect")
        found = [(r, c) for r in range(9) for c in range(9) if np.array_equal(padded[r : r + 32, c : c + 32], out)]
        assert found, f"image {i} is no 32x32 crop of its reflect padding"
        offsets.add(found[0])
    assert out.shape == (32, 32, 3)
    assert len(offsets) > 10  # offsets vary per image


def test_cutout_zeroes_one_square_of_the_given_side(images):
    x, y = augmented(images, {"cutout": 8})
    corners = set()
    for out, i in zip(x, y):
        zero = (out == 0).all(axis=-1)
        assert zero.sum() == 64
        rows, cols = np.nonzero(zero)
        assert rows.max() - rows.min() == 7 and cols.max() - cols.min() == 7
        np.testing.assert_array_equal(out[~zero], images[i][~zero])
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 10


def test_all_augmentations_keep_shape_and_range(images):
    x, y = augmented(images, {"flip": True, "translate": 4, "cutout": 8})
    assert x.shape == (N, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255
    assert ((x == 0).all(axis=-1).sum(axis=(1, 2)) == 64).all()


def test_same_seed_same_epochs_new_order_each_epoch(images):
    cfg = {"flip": True, "translate": 2, "cutout": 4}
    a = train_dataset(images, IDS, 16, cfg, seed=7, num_classes=N, one_hot=False)
    b = train_dataset(images, IDS, 16, cfg, seed=7, num_classes=N, one_hot=False)
    a1, a2 = one_epoch(a), one_epoch(a)
    b1, b2 = one_epoch(b), one_epoch(b)
    np.testing.assert_array_equal(a1[0], b1[0])
    np.testing.assert_array_equal(a2[0], b2[0])
    assert not np.array_equal(a1[1], a2[1])  # reshuffled
    by_id_1, by_id_2 = a1[0][np.argsort(a1[1])], a2[0][np.argsort(a2[1])]
    assert not np.array_equal(by_id_1, by_id_2)  # fresh augmentation draws each epoch
    other = one_epoch(train_dataset(images, IDS, 16, cfg, seed=8, num_classes=N, one_hot=False))
    assert not np.array_equal(other[1], a1[1])


def test_augment_batch_is_deterministic_for_a_seed(images):
    cfg = {"flip": True, "translate": 4, "cutout": 8}
    first = augment_batch(images[:8], cfg, [1, 2]).numpy()
    np.testing.assert_array_equal(first, augment_batch(images[:8], cfg, [1, 2]).numpy())
    assert not np.array_equal(first, augment_batch(images[:8], cfg, [1, 3]).numpy())
    assert first.dtype == np.uint8


def test_eval_keeps_order_and_pixels(images):
    x, y = one_epoch(eval_dataset(images, IDS % 10, 20, num_classes=10, one_hot=True))
    np.testing.assert_array_equal(x, images.astype(np.float32))
    np.testing.assert_array_equal(y.argmax(axis=1), IDS % 10)


def test_labels_shaped_n_by_1_are_accepted(images):
    _, y = one_epoch(eval_dataset(images, (IDS % 10)[:, None], 16))
    np.testing.assert_array_equal(y, IDS % 10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"y": IDS + 100}, DataError, r"labels must be in 0\.\.9, found 100\.\.147"),
        ({"batch_size": 0}, SpecError, r"batch_size=0 must be a whole number >= 1"),
        ({"augment_cfg": {"rotate": 5}}, SpecError, r"augment takes no 'rotate'"),
        ({"augment_cfg": {"cutout": 40}}, SpecError, r"cutout=40 must be a whole number of pixels in 0\.\.16"),
        ({"x": np.zeros((N, 32, 32), np.uint8)}, DataError, r"images must have shape \(N, height, width, channels\)"),
    ],
)
def test_bad_inputs_are_named(images, kwargs, error, match):
    args = {"x": images, "y": IDS % 10, "batch_size": 16, "augment_cfg": {}, "seed": 0, "num_classes": 10,
            "one_hot": False, **kwargs}
    with pytest.raises(error, match=match):
        train_dataset(**args)


def test_validate_augment_contract_unchanged():
    assert validate_augment({"flip": True, "translate": 4}) == {"flip": True, "translate": 4}


def _model(activation):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(4, activation=activation)]
    )


def test_predict_probs_with_flip_tta_averages_image_and_mirror(images):
    model = _model("softmax")
    plain = predict_probs(model, images, batch_size=20)
    assert plain.shape == (N, 4) and plain.dtype == np.float32
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-5)
    direct = model(images.astype(np.float32)).numpy()
    mirror = model(images[:, :, ::-1].astype(np.float32)).numpy()
    np.testing.assert_allclose(plain, direct, rtol=1e-5, atol=1e-6)
    tta = predict_probs(model, images, batch_size=20, tta_flip=True)
    np.testing.assert_allclose(tta, (direct + mirror) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(tta, plain)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The images moved dy pixels down and dx right, borders reflected (numpy's own reflect pad)."""
    pad = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    return pad[:, 4 - dy:4 - dy + 32, 4 - dx:4 - dx + 32]


def test_tta_views_count_and_bad_shift():
    assert tta_views() == [(0, 0, False)]
    assert tta_views(tta_flip=True) == [(0, 0, False), (0, 0, True)]
    assert len(tta_views(tta_shift=2)) == 5 and len(tta_views(tta_flip=True, tta_shift=2)) == 10
    assert {(dy, dx) for dy, dx, _ in tta_views(tta_shift=1)} == {(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)}
    for bad in (5, -1, 1.5, True):
        with pytest.raises(SpecError, match=r"tta_shift=.* must be a whole number of pixels in 0\.\.4"):
            tta_views(tta_shift=bad)


def test_predict_probs_with_shift_tta_averages_the_shifted_views(images):
    model = _model("softmax")
    views = [_shifted(images, dy, dx) for dy, dx in ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))]
    probs = [model(v.astype(np.float32)).numpy() for v in views]
    mirrored = [model(v[:, :, ::-1].astype(np.float32)).numpy() for v in views]
    np.testing.assert_allclose(predict_probs(model, images, batch_size=20, tta_shift=2), np.mean(probs, axis=0),
                               rtol=1e-5, atol=1e-6)
    both = predict_probs(model, images, batch_size=20, tta_flip=True, tta_shift=2)
    np.testing.assert_allclose(both, np.mean(probs + mirrored, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(both, predict_probs(model, images, batch_size=20, tta_flip=True))


def test_predict_probs_turns_logits_into_probabilities(images):
    model = _model(None)
    probs = predict_probs(model, images[:10])
    logits = model(images[:10].astype(np.float32)).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg, epochs", [({"flip": True}, None), ({"alternate_flip": True}, range(2))])
def test_pipelines_run_without_tf_datas_autotuning(images, cfg, epochs):
    # its model thread made deleting an iterator wait up to a minute at the end of fit
    train = train_dataset(images, IDS, 16, cfg, seed=0, num_classes=N, epochs=epochs)
    for ds in (train, eval_dataset(images, IDS, 16, num_classes=N)):
        assert ds.options().autotune.enabled is False
    assert len(one_epoch(train)[0]) == N * (1 if epochs is None else 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_pipelines_map_follows_the_jobs_thread_budget(threads):
    # a worker sharing the cores sets TensorFlow's intra-op threads per job before its first op
    import subprocess
    import sys

    code = ("from cifar_core.train.loop import limit_threads; limit_threads(%d); "
            "from cifar_core.train.augment import _parallel_calls; print(_parallel_calls())" % threads)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(threads)
