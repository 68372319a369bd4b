"""Schedules: hand-computed values, numpy == Keras, and a saved model that loads back."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_core.errors import SpecError
from cifar_core.spec.training import validate_schedule
from cifar_core.train.schedules import (
    make_schedule,
    resolve_schedule,
    schedule_preview,
    schedule_values,
)

CONFIGS = [
    {"type": "step", "every": 2, "factor": 0.5},
    {"type": "cosine", "final_fraction": 0.1},
    {"type": "one_cycle", "warmup": 0.2, "final_fraction": 0.05},
    {"type": "one_cycle", "warmup": 0.0},
]


def test_constant_is_a_plain_float():
    assert make_schedule({"type": "constant"}, 0.01, 10, 5) == 0.01
    assert isinstance(make_schedule({}, 0.01, 10, 5), float)
    assert schedule_values({"type": "constant"}, 0.01, 10, 5, [0, 49, 500]) == [0.01] * 3


def test_step_multiplies_every_n_epochs():
    cfg = {"type": "step", "every": 2, "factor": 0.5}
    # 10 steps per epoch: epochs 0-1 full rate, 2-3 half, 4-5 quarter
    got = schedule_values(cfg, 0.1, 10, 6, [0, 19, 20, 39, 40, 59])
    assert got == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_hand_values():
    cfg = {"type": "cosine", "final_fraction": 0.2}
    start, quarter, half, end = schedule_values(cfg, 0.1, 10, 4, [0, 10, 20, 40])
    assert start == pytest.approx(0.1)
    assert half == pytest.approx((1 + 0.2) / 2 * 0.1)
    assert quarter == pytest.approx(0.1 * (0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2))
    assert end == pytest.approx(0.02)


def test_one_cycle_hand_values():
    cfg = {"type": "one_cycle", "warmup": 0.25, "final_fraction": 0.0}
    # 100 steps: warm-up to the peak at step 25, then down to 0 at step 100
    got = schedule_values(cfg, 0.4, 10, 10, [0, 10, 25, 50, 100, 150])
    assert got == pytest.approx([0.0, 0.16, 0.4, 0.4 * 50 / 75, 0.0, 0.0])


def test_one_cycle_warms_up_from_its_initial_fraction_as_airbench_does():
    cfg = {"type": "one_cycle", "warmup": 0.25, "final_fraction": 0.1, "initial_fraction": 0.2}
    # 100 steps: 0.2 * 0.4 at step 0, the peak at 25, halfway up at 12.5, then down to 0.1 * 0.4
    got = schedule_values(cfg, 0.4, 10, 10, [0, 12.5, 25, 100])
    assert got == pytest.approx([0.08, 0.08 + 0.32 / 2, 0.4, 0.04])
    assert resolve_schedule({"type": "one_cycle"})["initial_fraction"] == 0.0  # older runs keep their schedule


def test_defaults_fill_left_out_keys():
    assert resolve_schedule({"type": "step"}) == {"type": "step", "every": 10, "factor": 0.1}
    assert resolve_schedule({"type": "one_cycle", "warmup": 0.1})["final_fraction"] == 0.0
    assert validate_schedule({"type": "cosine"}) == {"type": "cosine"}  # unchanged contract


@pytest.mark.parametrize(
    "cfg, base_lr, spe, epochs, match",
    [
        ({"type": "warm"}, 0.1, 10, 5, "schedule type 'warm' is unknown"),
        ({"type": "step", "every": 0}, 0.1, 10, 5, r"every=0 is out of range"),
        ({"type": "cosine"}, 0.0, 10, 5, r"learning_rate=0.0 must be a positive number"),
        ({"type": "cosine"}, 0.1, 0, 5, r"steps_per_epoch=0 must be a whole number >= 1"),
        ({"type": "cosine"}, 0.1, 10, 0, r"epochs=0 must be a whole number >= 1"),
    ],
)
def test_bad_settings_are_named(cfg, base_lr, spe, epochs, match):
    with pytest.raises(SpecError, match=match):
        make_schedule(cfg, base_lr, spe, epochs)


def test_preview_spans_the_run():
    frame = schedule_preview({"type": "cosine"}, 0.1, 10, 3, points=7)
    assert list(frame.columns) == ["step", "epoch", "learning_rate"]
    assert frame["step"].iloc[0] == 0 and frame["step"].iloc[-1] == 30
    assert frame["learning_rate"].iloc[0] == pytest.approx(0.1)
    assert frame["learning_rate"].iloc[-1] == pytest.approx(0.0, abs=1e-12)


def test_import_stays_cheap():
    code = "import sys, cifar_core.train.schedules; print('keras' in sys.modules or 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c['type']}-{c.get('warmup', '')}")
def test_keras_matches_numpy(cfg):
    steps = [0, 3, 10, 19, 20, 25, 47, 50, 60, 99, 100, 130]
    sched = make_schedule(cfg, 0.05, 10, 10)
    keras_values = [float(sched(s)) for s in steps]
    assert keras_values == pytest.approx(schedule_values(cfg, 0.05, 10, 10, steps), rel=1e-5, abs=1e-9)


def _tiny_model(learning_rate):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    model.fit(x, np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)  # builds the optimizer
    return model


def test_saved_model_loads_with_its_schedule(tmp_path: Path):
    import keras

    cfg = {"type": "cosine", "final_fraction": 0.1}
    path = tmp_path / "tiny.keras"
    _tiny_model(make_schedule(cfg, 0.05, 10, 4)).save(path)

    loaded = keras.saving.load_model(path)
    opt = loaded.optimizer
    assert type(opt.learning_rate).__name__ != "float"
    assert opt._learning_rate.get_config()["cfg"] == {"type": "cosine", "final_fraction": 0.1}
    opt.iterations.assign(20)
    assert float(opt.learning_rate) == pytest.approx(schedule_values(cfg, 0.05, 10, 4, [20])[0], rel=1e-6)


def test_fresh_process_loads_after_registering(tmp_path: Path):
    path = tmp_path / "tiny.keras"
    _tiny_model(make_schedule({"type": "step", "every": 1, "factor": 0.5}, 0.08, 10, 4)).save(path)
    code = (
        "import keras; from cifar_core.train.schedules import keras_custom_objects; keras_custom_objects();"
        f"m = keras.saving.load_model({str(path)!r}); m.optimizer.iterations.assign(25);"
        "print(float(m.optimizer.learning_rate))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1],
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(0.02)
