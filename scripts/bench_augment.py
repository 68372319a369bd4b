"""Time the training input pipeline alone: one epoch over 50,000 random uint8 images, batch 256.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python scripts/bench_augment.py [--images 50000] [--epochs 3]

Prints wall and CPU seconds per epoch (the first epoch includes tracing) for no augmentation
and for {"flip": true, "translate": 4, "cutout": 8}, plus a naive per-image shuffle for reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _bootstrap  # noqa: F401 (puts the checkout on sys.path)

from cifar_core.train.augment import train_dataset  # noqa: E402

CONFIGS = {"none": {}, "flip+translate4+cutout8": {"flip": True, "translate": 4, "cutout": 8}}


def epoch_times(ds, epochs: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per epoch; CPU time is steadier when other jobs share the machine."""
    times = []
    for _ in range(epochs):
        wall, cpu = time.perf_counter(), time.process_time()
        for _batch in ds:
            pass
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def naive_dataset(x, y, batch_size: int):
    """Per-image shuffle of a from_tensor_slices dataset: the usual first attempt, for comparison."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch_size)
    return ds.map(lambda a, b: (tf.cast(a, tf.float32), b)).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=args.images).astype(np.int32)
    print(f"{args.images} images, batch {args.batch}: wall/CPU seconds per epoch (epoch 1 includes tracing)")
    rows = {name: epoch_times(train_dataset(x, y, args.batch, cfg, seed=0, num_classes=10, one_hot=False), args.epochs)
            for name, cfg in CONFIGS.items()}
    rows["naive per-image shuffle, none"] = epoch_times(naive_dataset(x, y, args.batch), args.epochs)
    for name, times in rows.items():
        wall = np.mean([w for w, _ in times[1:] or times])
        cpu = np.mean([c for _, c in times[1:] or times])
        epochs = "  ".join(f"{w:5.2f}/{c:5.2f}" for w, c in times)
        print(f"  {name:30s} {epochs}   after epoch 1: {wall:.2f} s wall, {cpu:.2f} s CPU"
              f" ({args.images / wall:,.0f} images/s)")


if __name__ == "__main__":
    main()
