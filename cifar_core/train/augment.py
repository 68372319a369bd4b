"""Data augmentation settings (a spec's `augment`) and the tf.data pipeline that applies them.

Format: {"flip": true, "translate": 4, "cutout": 8}
  flip            random horizontal flip
  alternate_flip  instead of flip: each image mirrored on every other epoch (airbench): on epoch 1
                  a random half of the images (drawn once from the seed, per image), on epoch 2 the
                  other half, and so on; needs the epoch-indexed pipeline (`train_dataset(epochs=...)`)
  translate  random crop after reflect-padding by this many pixels (0..8)
  cutout     zero a random square of this side in pixels (0..16), placed wholly inside the image

Pipelines (tensorflow imported lazily): `train_dataset` (shuffled, augmented batches),
`eval_dataset` (in order, plain) and `predict_probs` (probabilities, optionally averaged over the
horizontal mirror and shifted copies: test-time augmentation). Batches hold float32 images in
0..255, and int32 or one-hot float32 labels.
Augmentations run per batch in TensorFlow, applied in the order translate, flip, cutout.
"""

from __future__ import annotations

import os
from numbers import Integral

from cifar_core.errors import DataError, SpecError
from cifar_core.spec.training import tta_views, validate_augment

PREFETCH_BATCHES = 2  # batches kept ready ahead of the train or predict step


def alternates(cfg: dict) -> bool:
    """Whether the augmentation depends on the epoch number (alternate_flip): `train_dataset` then
    needs `epochs`, and fit needs steps_per_epoch."""
    return bool(validate_augment(cfg).get("alternate_flip"))


# ---------------------------------------------------------------------------------------------
# tf.data pipelines. Images stay uint8 through shuffling and augmentation (4x less memory traffic)
# and become float32 in 0..255 at the end: the model rescales itself.


def _check_arrays(x, y, num_classes: int):
    import numpy as np

    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # keras.datasets gives labels as (N, 1)
        y = y[:, 0]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"images must have shape (N, height, width, channels), got {x.shape}; stack them in one array")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"labels must have shape ({len(x)},) to match the images, got {y.shape}")
    if len(x) == 0:
        raise DataError("no images: the dataset is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be whole class numbers, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(f"labels must be in 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() > 255:
            found = f"{x.dtype} {x.min()}..{x.max()}"
            raise DataError(f"images must be whole pixel values in 0..255, got {found}; pass uint8 images")
        x = x.astype(np.uint8)
    return x, y.astype(np.int32)


def _reflect(index, size: int):
    """Map indices in -size+1 .. 2*size-2 into 0..size-1 as reflect padding does (edge not repeated)."""
    import tensorflow as tf

    return (size - 1) - tf.abs((size - 1) - tf.abs(index))


def _uniform_ints(shape, high: int, seed):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=high, dtype=tf.int32)


def augment_batch(images, augment_cfg: dict, seed, mirror=None):
    """Apply the configured augmentations to a batch (N, H, W, C) with a stateless [2] int `seed`;
    `mirror` (N,) bool, if given, says which images to mirror instead of a random flip.

    All three become one gather: each output pixel reads a source pixel through a per-image index
    map. translate shifts the map by a random offset in -t..t and reflects it at the borders (the
    same pixels as reflect-padding then cropping), flip reverses its columns, and cutout points a
    square of it at an extra zero pixel. Far cheaper than tf.pad + tf.reverse + tf.where.
    """
    import tensorflow as tf

    cfg = validate_augment(augment_cfg)
    flip, shift, cut = bool(cfg.get("flip")), cfg.get("translate", 0), cfg.get("cutout", 0)
    if not (flip or shift or cut or mirror is not None):
        return images
    seed = tf.cast(seed, tf.int64)
    n, h, w, c = tf.shape(images)[0], images.shape[1], images.shape[2], images.shape[3]
    rows = tf.broadcast_to(tf.range(h)[None, :], [n, h])
    cols = tf.broadcast_to(tf.range(w)[None, :], [n, w])
    if shift:
        offset = _uniform_ints([n, 2], 2 * shift + 1, seed + tf.constant([0, 202], tf.int64)) - shift
        rows = _reflect(rows + offset[:, :1], h)
        cols = _reflect(cols + offset[:, 1:], w)
    if flip or mirror is not None:
        if mirror is None:
            mirror = tf.random.stateless_uniform([n], seed=seed + tf.constant([0, 101], tf.int64)) < 0.5
        cols = tf.where(mirror[:, None], tf.reverse(cols, axis=[1]), cols)
    index = rows[:, :, None] * w + cols[:, None, :]
    if cut:
        corner = _uniform_ints([n, 2], h - cut + 1, seed + tf.constant([0, 303], tf.int64))
        left = _uniform_ints([n, 1], w - cut + 1, seed + tf.constant([0, 404], tf.int64))
        r = tf.range(h)[None, :]
        col = tf.range(w)[None, :]
        in_rows = (r >= corner[:, :1]) & (r < corner[:, :1] + cut)
        in_cols = (col >= left) & (col < left + cut)
        index = tf.where(in_rows[:, :, None] & in_cols[:, None, :], h * w, index)  # h*w: the zero pixel
    flat = tf.concat([tf.reshape(images, [n, h * w, c]), tf.zeros([n, 1, c], images.dtype)], axis=1)
    out = tf.gather(flat, tf.reshape(index, [n, h * w]), axis=1, batch_dims=1)
    return tf.reshape(out, [n, h, w, c])


def _labels(y, num_classes: int, one_hot: bool):
    import tensorflow as tf

    return tf.one_hot(y, num_classes, dtype=tf.float32) if one_hot else y


def train_dataset(x, y, batch_size: int, augment_cfg: dict, seed: int, num_classes: int = 10, one_hot: bool = False,
                  epochs: range | None = None):
    """Shuffled (again each epoch, from `seed`), augmented batches of (float32 images, labels).

    Shuffles indices and gathers whole batches rather than shuffling single images (less CPU;
    see scripts/bench_augment.py).
    Augmentation draws come from a per-batch seed stream that changes each epoch, so the same
    `seed` gives the same batches epoch by epoch.

    With alternate_flip the batches depend on the epoch number: pass `epochs` (0-based epoch
    numbers, e.g. range(initial_epoch, epochs)) and get one dataset running through them in
    order, each epoch's order and draws from (seed, epoch) alone; fit it with steps_per_epoch.
    """
    import tensorflow as tf

    cfg = validate_augment(augment_cfg)
    x, y = _check_arrays(x, y, num_classes)
    batch_size = _check_batch(batch_size)
    _check_fits(x.shape, cfg)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise SpecError(f"seed={seed!r} must be a whole number", field="seed")
    seed = int(seed)
    images = tf.constant(x)
    labels = tf.constant(y)
    n = len(x)
    base = tf.constant(flip_base(n, seed)) if cfg.get("alternate_flip") else None

    def load(index, batch_seed, epoch):
        batch = tf.gather(images, index)
        mirror = None if base is None else tf.not_equal(tf.gather(base, index), epoch % 2 == 1)
        batch = augment_batch(batch, cfg, tf.stack([batch_seed, tf.constant(seed, tf.int64)]), mirror)
        return tf.cast(batch, tf.float32), _labels(tf.gather(labels, index), num_classes, one_hot)

    if base is not None:
        if epochs is None:
            raise ValueError("augment alternate_flip mirrors by epoch number: pass epochs=range(first, last) "
                             "and fit with steps_per_epoch")
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(epochs), tf.int64))
        ds = ds.flat_map(lambda epoch: _epoch_batches(n, batch_size, seed, epoch))
    else:
        order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(order, seeds, tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat())
    ds = ds.map(load, num_parallel_calls=_parallel_calls(), deterministic=True)
    return _prefetched(ds)


def flip_base(n: int, seed: int):
    """alternate_flip's draw: (n,) bool, True for the images mirrored on even epochs (0-based)."""
    import numpy as np

    return np.random.default_rng([seed, 505]).random(n) < 0.5


def _epoch_batches(n: int, batch_size: int, seed: int, epoch):
    """(indices, batch seed, epoch) of one epoch's batches, shuffled by (seed, epoch) alone."""
    import tensorflow as tf

    order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch])))
    batches = tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64)).batch(batch_size).enumerate()
    return batches.map(lambda k, index: (index, epoch * 1_000_003 + k, epoch))


def eval_dataset(x, y, batch_size: int, num_classes: int = 10, one_hot: bool = False):
    """Batches of (float32 images, labels) in the given order, without augmentation."""
    import tensorflow as tf

    x, y = _check_arrays(x, y, num_classes)
    batch_size = _check_batch(batch_size)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), _labels(b, num_classes, one_hot)),
                num_parallel_calls=_parallel_calls())
    return _prefetched(ds)


def _parallel_calls() -> int:
    """The job's thread budget (the worker sets TensorFlow's intra-op threads per job), else every core."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def _prefetched(ds):
    """`ds` prefetched, with tf.data's autotuning off. Its model thread sleeps up to a minute between
    tunings and deleting an iterator waits for that thread (TensorFlow 2.21): the end of a `fit` or
    `predict` stalled for up to 60 s (15-60 s seen at the end of `fast` runs). On a CPU-bound step,
    a map over all cores and two batches ahead keep the input ready without it."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def _view(images, dy: int, dx: int, mirrored: bool):
    """The batch moved by (dy, dx) pixels with reflected borders, then optionally mirrored."""
    import tensorflow as tf

    out = images
    if dy or dx:
        h, w = images.shape[1], images.shape[2]
        out = tf.gather(tf.gather(out, _reflect(tf.range(h) - dy, h), axis=1), _reflect(tf.range(w) - dx, w), axis=2)
    return tf.reverse(out, axis=[2]) if mirrored else out


def predict_probs(model, x, batch_size: int = 256, tta_flip: bool = False, tta_shift: int = 0):
    """Class probabilities (N, classes) as float32, averaged over the `tta_views` (just the image
    when both are off).

    A model whose outputs are not probabilities (logits: negative values or rows not summing to 1)
    gets a softmax first, so averaging happens on probabilities.
    """
    import numpy as np
    import tensorflow as tf

    x, _ = _check_arrays(x, np.zeros(len(x), dtype=np.int32), 1)
    batch_size = _check_batch(batch_size)
    views = tta_views(tta_flip, tta_shift)
    images = tf.data.Dataset.from_tensor_slices(x).batch(batch_size).map(lambda a: tf.cast(a, tf.float32))
    total = None
    for dy, dx, mirrored in views:
        view = images.map(lambda a, dy=dy, dx=dx, m=mirrored: _view(a, dy, dx, m))
        probs = _as_probs(model.predict(_prefetched(view), verbose=0))
        total = probs if total is None else total + probs
    return (total / len(views)).astype(np.float32)


def _as_probs(out):
    import numpy as np

    out = np.asarray(out, dtype=np.float64)
    if out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    shifted = np.exp(out - out.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise SpecError(f"batch_size={batch_size!r} must be a whole number >= 1", field="batch_size")
    return int(batch_size)


def _check_fits(shape: tuple, cfg: dict) -> None:
    side = min(shape[1], shape[2])
    if cfg.get("translate", 0) >= side:
        message = f"augment translate={cfg['translate']} needs images wider than that, got {side}px"
        raise SpecError(message, field="augment")
    if cfg.get("cutout", 0) > side:
        raise SpecError(f"augment cutout={cfg['cutout']} is larger than the {side}px images", field="augment")
