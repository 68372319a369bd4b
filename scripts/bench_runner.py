"""Benchmark: what the queue and worker cost over plain Keras.

Prints, in one run on the real data:
- the time to load the cached dataset in a new process (after a first load that writes the cache);
- for each preset (default: the notebook's Exp4 and the recommended `fast`), trained for 3 epochs
  in alternating rounds (default 2): through the queue (a real worker process), then with plain
  `model.fit` on the same arrays (same training/validation split, no augmentation): seconds per epoch,
  training images per second and their ratio (target: the runner costs at most 5% more). A second
  ratio compares the fastest epoch after the first (which traces the step) of each: this host's
  speed drifts by up to 2x from minute to minute, and drift only ever adds time to an epoch;
- the per-epoch cost of the preset's augmentation pipeline alone, on the same training images.

    .venv/bin/python scripts/bench_runner.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--epochs 3] [--rounds 2] [--presets exp4,fast]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _bootstrap import ROOT  # the checkout, put on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def plain_fit(doc: dict, source: str) -> tuple[list[float], int]:
    """The notebook's way: the same network, `model.fit` on the arrays. (s/epoch, train images)"""
    import keras

    from cifar_core.data.sources import load_dataset
    from cifar_core.train.models import build_model, compile_model, uses_one_hot
    from cifar_core.spec.validate import parse_spec
    from cifar_core.train.loop import make_splits

    ds = load_dataset(source)
    spec = parse_spec(doc)
    split = make_splits(spec, ds)
    y_train, y_val = split.y_train, split.y_val
    if uses_one_hot(spec):
        y_train, y_val = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_val, 10)
    keras.utils.set_random_seed(spec.seed)
    model = build_model(spec, ds.input_shape, ds.num_classes)
    compile_model(model, spec, steps_per_epoch=-(-len(split.x_train) // spec.batch_size))
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(split.x_train, y_train, batch_size=spec.batch_size, epochs=spec.epochs,
              validation_data=(split.x_val, y_val), callbacks=[Timer()], verbose=0)
    return times, len(split.x_train)


def through_queue(doc: dict, source: str) -> list[float]:
    from cifar_core.jobs import results
    from cifar_core.jobs import store
    from cifar_core.testing.procs import run_until_idle

    [job_id], _ = run_until_idle([doc], source)
    conn = store.connect()
    try:
        return list(results.run_history(conn, job_id)["seconds"])
    finally:
        conn.close()


def augment_cost(doc: dict, source: str) -> tuple[float, float]:
    """Seconds per epoch of the training input pipeline alone, (without, with) the preset's augmentation."""
    from bench_augment import epoch_times

    from cifar_core.train.augment import train_dataset
    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.validate import parse_spec
    from cifar_core.train.loop import make_splits

    spec = parse_spec(doc)
    split = make_splits(spec, load_dataset(source))
    walls = []
    for cfg in ({}, spec.augment):
        times = epoch_times(train_dataset(split.x_train, split.y_train, spec.batch_size, cfg, seed=0), epochs=2)
        walls.append(times[-1][0])  # the second epoch: the first includes tracing
    return walls[0], walls[1]


def cached_load_seconds(source: str) -> float:
    """Load the (already cached) dataset in a new process, as a worker does at its first job."""
    from bench_data import run

    return run(source, os.environ["CIFAR_LAB_HOME"])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--presets", default="exp4,fast")
    parser.add_argument("--rounds", type=int, default=2, help="queue and plain runs alternate this many times")
    args = parser.parse_args()
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or tempfile.mkdtemp(prefix="bench-runner-")

    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.presets import get_preset

    t0 = time.perf_counter()
    load_dataset(args.data)
    print(f"dataset ready in {time.perf_counter() - t0:.2f} s (home {os.environ['CIFAR_LAB_HOME']})")
    print(f"cached dataset load, new process: {cached_load_seconds(args.data):.2f} s", flush=True)
    for preset in args.presets.split(","):
        doc = dict(get_preset(preset), epochs=args.epochs)
        print(f"{preset}: {args.epochs} epochs, batch {doc['batch_size']}, augment {doc.get('augment', {})}", flush=True)
        queued, plain = [], []
        for round_ in range(1, args.rounds + 1):
            queued.append(through_queue(doc, args.data))
            times, images = plain_fit(doc, args.data)
            plain.append(times)
            for label, runs in (("plain model.fit", plain), ("through queue  ", queued)):
                print(f"  round {round_} {label}  s/epoch: " + ", ".join(f"{t:.2f}" for t in runs[-1])
                      + f"  ({images * len(runs[-1]) / sum(runs[-1]):,.0f} images/s)", flush=True)
        mean_plain, mean_queue = _mean([t for r in plain for t in r]), _mean([t for r in queued for t in r])
        print(f"  {images} training images; ratio queue/plain of the mean epoch = {mean_queue / mean_plain:.3f}")
        if args.epochs > 1:
            steady = min(t for r in queued for t in r[1:]) / min(t for r in plain for t in r[1:])
            print(f"  ratio of the fastest epochs after the first = {steady:.3f}", flush=True)
        plain_pipe, augmented = augment_cost(doc, args.data)
        print(f"  input pipeline alone, s/epoch: {plain_pipe:.2f} without augmentation, {augmented:.2f} with {doc.get('augment') or 'none'}", flush=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)

if __name__ == "__main__":
    main()
