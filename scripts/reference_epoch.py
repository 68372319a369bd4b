"""The unit of training time: one epoch of the reference net, in plain Keras, on the real data.

Machines differ and a shared host drifts up to 2x within an hour, so every training time the lab
reports should also be given as a multiple of this epoch, timed in the same session. The net is
the notebook's original exp4 (Rescaling, Conv2D 32/64/64 3x3 'valid', two 2x2 max-pools, Dense 64,
Dense 10: 122,570 parameters), trained with `model.fit`, batch 32, no validation, on the 50,000
training images. It stays the unit even though the lab's `exp4` preset now uses 'same' padding.

Each epoch is its own `fit(epochs=1)` call on the same model. In one multi-epoch `fit`, Keras makes
a new tf.data iterator at the start of every epoch, and deleting the old one waits for tf.data's
autotuning thread, which sleeps for seconds between tunings: a 0-7 s stall at the start of epoch 2
on, at random (2026-11-29, Zen 4 host: epochs of 13.5 s and of 20 s in the same process, the extra
time all in the epoch's first 200 batches). That stall measures tf.data, not the machine, so it is
kept out of the unit: here it falls after the epoch's timer, and is printed as the call's teardown.

    .venv/bin/python scripts/reference_epoch.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--epochs 2]

Prints one line per epoch (the first includes tracing) and a JSON line with them all.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _bootstrap import ROOT  # the checkout, put on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The unit is plain Keras with TensorFlow's own defaults. The lab's jobs turn oneDNN on where
# TensorFlow leaves it off (cifar_core.config.TF_ENV_DEFAULTS); the reference never does, so
# that speed-up shows in the multiples instead of moving the unit.
os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
PARAMS = 122_570


def reference_net():
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    if model.count_params() != PARAMS:
        raise SystemExit(f"reference net has {model.count_params()} parameters, expected {PARAMS}")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class EpochTimer:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def callback(self):
        import keras

        timer = self

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                timer.seconds.append(time.perf_counter() - self.start)
                print(f"reference epoch {len(timer.seconds)}: {timer.seconds[-1]:.1f} s "
                      f"(accuracy {logs.get('accuracy', 0):.4f})", flush=True)

        return _Timer()


def time_epochs(model, x, y, epochs: int) -> tuple[list[float], list[float]]:
    """(seconds of each epoch, seconds each fit call spent outside its epoch), one fit call an epoch."""
    timer = EpochTimer()
    teardowns = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[timer.callback()])
        teardowns.append(time.perf_counter() - start - timer.seconds[-1])
    return timer.seconds, teardowns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from cifar_core.data.sources import load_dataset

    ds = load_dataset(args.data)
    x, y = ds.split("train")
    seconds, teardowns = time_epochs(reference_net(), x, y, args.epochs)
    print(json.dumps({"reference_epoch_seconds": [round(s, 2) for s in seconds],
                      "teardown_seconds": [round(s, 2) for s in teardowns],
                      "load_average": os.getloadavg()[0], "when": time.strftime("%Y-%m-%dT%H:%M:%S")}))


if __name__ == "__main__":
    main()
