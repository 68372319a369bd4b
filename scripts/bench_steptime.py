"""Benchmark: training images per second of a network's train step, on random images.

For each preset (or spec JSON file), builds the model as the worker does and times `model.fit`
batches twice: with the lab's fused batch normalisation (`models.fused_batch_norm_class`, what
the worker uses) and with Keras 3's own BatchNormalization code path. Rounds alternate between
the variants, and the best round is reported, because other load on the machine only slows a
round down. No augmentation, validation or queue: this is the network's cost alone, the figure
to compare when designing a preset (scripts/bench_runner.py measures the whole runner).

    .venv/bin/python scripts/bench_steptime.py [--presets fast,best] [--batch 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BATCHES = 14  # per round; the first 3 are left out of the median (tracing, warm-up)


def load_doc(name: str) -> dict:
    from cifar_core.spec.presets import PRESETS, get_preset

    return get_preset(name) if name in PRESETS else json.loads(Path(name).read_text())


def build(doc: dict, batch: int):
    from cifar_core.train.models import build_model, compile_model
    from cifar_core.spec.schema import parse_spec

    spec = parse_spec({**doc, "batch_size": batch})
    model = build_model(spec)
    compile_model(model, spec, steps_per_epoch=BATCHES)
    return model, spec


def images_per_second(model, spec, batch: int) -> float:
    """Median seconds per batch over one round of BATCHES batches, as images per second."""
    import keras
    import numpy as np

    from cifar_core.train.models import uses_one_hot

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * BATCHES, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, batch * BATCHES)
    if uses_one_hot(spec):
        y = keras.utils.to_categorical(y, 10)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, b, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, b, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[Timer()])
    return batch / float(np.median(times[3:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="fast,best", help="preset names or spec JSON paths, comma-separated")
    parser.add_argument("--batch", type=int, help="batch size (default: each spec's own)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from cifar_core.train.models import fused_batch_norm_class
    from cifar_core.spec.schema import summarize

    tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count() or 1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    fused = fused_batch_norm_class()
    fused_call = fused.call
    models = {}
    for name in args.presets.split(","):
        doc = load_doc(name)
        batch = args.batch or doc.get("batch_size", 32)
        for variant, call in (("fused BN", fused_call), ("Keras BN", keras.layers.BatchNormalization.call)):
            fused.call = call  # looked up when fit() traces the step, so each model keeps its own
            model, spec = build(doc, batch)
            models[(name, variant)] = (model, spec, batch, [])
            images_per_second(model, spec, batch)  # trace now, under this variant's call
    fused.call = fused_call
    for _ in range(args.rounds):
        for model, spec, batch, rates in models.values():
            rates.append(images_per_second(model, spec, batch))
    print(f"train step on random images, best of {args.rounds} rounds of {BATCHES} batches")
    for (name, variant), (model, spec, batch, rates) in models.items():
        best = max(rates)
        print(f"  {name:10s} {variant:9s} batch {batch:3d}  {summarize(spec).total_params:>9,} params  "
              f"{best:6.0f} images/s  ({45000 / best:5.1f} s per 45,000-image epoch)  rounds: "
              + " ".join(f"{r:.0f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
