"""Benchmark: what a network's train step costs on this CPU, under the settings that matter here.

For each spec (a preset name or a spec JSON file) and each setting (TensorFlow intra-op and
inter-op threads, oneDNN on or off, Keras precision policy, batch size), times `model.fit` batches
on random images, the model built and compiled as the worker does (the lab's fused BatchNorm, its
optimizer). Each setting runs in its own process, since TensorFlow reads threads,
TF_ENABLE_ONEDNN_OPTS and the precision policy once at start-up; rounds alternate between the
settings and the best round counts, because other load on the host only slows a round down. Prints images per second, seconds per 45,000-image epoch and the
achieved GFLOP/s: 6 x the spec's multiply-adds per image (forward 2 FLOPs per multiply-add,
backward twice the forward) x images per second.

Channels: Keras on a CPU is channels-last (NHWC) only; TensorFlow's CPU convolutions refuse
channels-first, so there is nothing to choose there. Precision: `mixed_bfloat16` computes in
bfloat16 with float32 weights, which only pays on a CPU with bfloat16 arithmetic (AVX512_BF16 or
AMX; see /proc/cpuinfo); under it the lab's fused BatchNorm falls back to Keras's own.

    .venv/bin/python scripts/bench_steptime.py [--specs fast,best] [--batches 256,512,1024]
        [--threads 2:1,2:2,1:1] [--onednn 1,0] [--precision float32,mixed_bfloat16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _bootstrap  # noqa: F401 (puts the checkout on sys.path)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BATCHES = 8  # timed per round and batch size, after 2 untimed ones (tracing, warm-up)
EPOCH_IMAGES = 45_000  # a holdout run's training split


def load_doc(name: str) -> dict:
    from cifar_core.spec.presets import PRESETS, get_preset

    return get_preset(name) if name in PRESETS else json.loads(Path(name).read_text())


def train_flops(doc: dict) -> float:
    """FLOPs of one training image: 2 per multiply-add forward, and the backward pass twice that."""
    from cifar_core.spec.cost import multiply_adds
    from cifar_core.spec.validate import parse_spec

    return 6.0 * multiply_adds(parse_spec(doc))


def _measure(specs: list[str], batches: list[int]) -> dict:
    """In this process (its threads and oneDNN already set): images/s per (spec, batch)."""
    import keras
    import numpy as np

    from cifar_core.spec.validate import parse_spec
    from cifar_core.train.models import build_model, compile_model, uses_one_hot

    rates = {}
    rng = np.random.default_rng(0)
    for name, batch in itertools.product(specs, batches):
        spec = parse_spec({**load_doc(name), "batch_size": batch})
        model = build_model(spec)
        compile_model(model, spec, steps_per_epoch=BATCHES + 2)
        x = rng.integers(0, 256, (batch * (BATCHES + 2), 32, 32, 3)).astype("float32")
        y = rng.integers(0, 10, len(x))
        if uses_one_hot(spec):
            y = keras.utils.to_categorical(y, 10)
        times: list[float] = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, b, logs=None):
                self.t0 = time.perf_counter()

            def on_train_batch_end(self, b, logs=None):
                times.append(time.perf_counter() - self.t0)

        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[Timer()])
        rates[f"{name}|{batch}"] = batch / float(np.median(times[2:]))
        keras.backend.clear_session()
    return rates


def _child(args) -> None:
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(args.policy)
    intra, inter = (int(v) for v in args.setting.split(":"))
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    print(json.dumps(_measure(args.specs.split(","), [int(b) for b in args.batches.split(",")])))


def _round(setting: str, onednn: str, policy: str, args) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    cmd = [sys.executable, __file__, "--child", "--setting", setting, "--policy", policy, "--specs", args.specs,
           "--batches", args.batches]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="fast,best", help="preset names or spec JSON paths, comma-separated")
    parser.add_argument("--batches", default="256,512,1024")
    parser.add_argument("--threads", default="2:1,2:2,1:1", help="intra:inter thread pairs, comma-separated")
    parser.add_argument("--onednn", default="1,0", help="TF_ENABLE_ONEDNN_OPTS values to try")
    parser.add_argument("--precision", default="float32", help="Keras precision policies to try (float32, mixed_bfloat16)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)

    settings = [(t, o, p) for p in args.precision.split(",") for o in args.onednn.split(",") for t in args.threads.split(",")]
    best: dict[tuple, float] = {}
    for r in range(args.rounds):
        for setting in settings:  # alternating: drift hits every setting alike
            for key, rate in _round(*setting, args).items():
                best[(*setting, key)] = max(rate, best.get((*setting, key), 0.0))
                print(f"round {r + 1}: {Path(key.split('|')[0]).stem} batch {key.split('|')[1]} threads {setting[0]} "
                      f"oneDNN {setting[1]} {setting[2]}: {rate:.0f} images/s (load {os.getloadavg()[0]:.1f})", flush=True)
    flops = {name: train_flops(load_doc(name)) for name in args.specs.split(",")}
    print(f"\ntrain step on random images, best of {args.rounds} rounds of {BATCHES} batches")
    print(f"{'spec':10s} {'batch':>5s} {'threads':>7s} {'oneDNN':>6s} {'precision':>14s} {'images/s':>9s} "
          f"{'s/epoch':>8s} {'GFLOP/s':>8s}")
    for (threads, onednn, policy, key), rate in sorted(best.items(), key=lambda kv: (kv[0][3], -kv[1])):
        name, batch = key.split("|")
        print(f"{Path(name).stem:10s} {batch:>5s} {threads:>7s} {onednn:>6s} {policy:>14s} {rate:9.0f} "
              f"{EPOCH_IMAGES / rate:8.1f} {rate * flops[name] / 1e9:8.1f}")
    for name in args.specs.split(","):
        (threads, onednn, policy, key), rate = max(((k, v) for k, v in best.items() if k[3].startswith(name + "|")),
                                                   key=lambda kv: kv[1])
        print(f"best for {Path(name).stem}: batch {key.split('|')[1]}, threads {threads}, oneDNN {onednn}, {policy}: "
              f"{rate:.0f} images/s, {rate * flops[name] / 1e9:.1f} GFLOP/s ({flops[name] / 1e9:.3f} GFLOP per training image)")


if __name__ == "__main__":
    main()
