"""Benchmark: what the queue and worker cost over plain Keras.

Trains the notebook's Exp4 for 2 epochs on the real data twice in one run: once with plain
`model.fit` on the arrays, once through the queue (a real worker process), and prints the
per-epoch times and their ratio (target: the runner costs at most 5% more).

    .venv/bin/python scripts/bench_runner.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def plain_fit(doc: dict, source: str) -> list[float]:
    """The notebook's way: the same network, `model.fit` on the arrays, validation on the test set."""
    import keras

    from cifar_core.data import load_dataset
    from cifar_core.models import build_model, compile_model
    from cifar_core.spec import parse_spec

    ds = load_dataset(source)
    spec = parse_spec(doc)
    keras.utils.set_random_seed(spec.seed)
    model = build_model(spec, ds.input_shape, ds.num_classes)
    compile_model(model, spec, steps_per_epoch=-(-len(ds.x_train) // spec.batch_size))
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(ds.x_train, ds.y_train, batch_size=spec.batch_size, epochs=spec.epochs,
              validation_data=(ds.x_test, ds.y_test), callbacks=[Timer()], verbose=0)
    return times


def through_queue(doc: dict, source: str) -> list[float]:
    from cifar_core import results, store
    from cifar_core.experiments import submit_experiment

    conn = store.connect()
    [job_id] = submit_experiment(conn, doc, source)
    subprocess.run([sys.executable, "-m", "cifar_core", "worker", "--exit-when-idle"], cwd=ROOT, check=True)
    return list(results.run_history(conn, job_id)["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="exp4")
    args = parser.parse_args()
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or tempfile.mkdtemp(prefix="bench-runner-")

    from cifar_core.data import load_dataset
    from cifar_core.presets import get_preset

    doc = dict(get_preset(args.preset), epochs=args.epochs)
    t0 = time.perf_counter()
    load_dataset(args.data)
    print(f"dataset ready in {time.perf_counter() - t0:.1f} s (home {os.environ['CIFAR_LAB_HOME']})")

    queued = through_queue(doc, args.data)
    plain = plain_fit(doc, args.data)
    print(f"{args.preset}, {args.epochs} epochs, batch {doc['batch_size']}")
    print("plain model.fit  s/epoch: " + ", ".join(f"{t:.2f}" for t in plain))
    print("through queue    s/epoch: " + ", ".join(f"{t:.2f}" for t in queued))
    mean_plain, mean_queue = sum(plain) / len(plain), sum(queued) / len(queued)
    print(f"mean s/epoch: plain {mean_plain:.2f}, queue {mean_queue:.2f}, ratio queue/plain = {mean_queue / mean_plain:.3f}")


if __name__ == "__main__":
    main()
