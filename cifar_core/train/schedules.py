"""Learning-rate schedules named in a spec's `schedule` setting.

Formats (all keys besides `type` optional):
  {"type": "constant"}
  {"type": "step", "every": 10, "factor": 0.1}        # multiply the rate by factor every N epochs
  {"type": "cosine", "final_fraction": 0.0}           # cosine anneal to final_fraction * lr
  {"type": "one_cycle", "warmup": 0.25, "final_fraction": 0.0, "initial_fraction": 0.0}
      # linear warm-up from initial_fraction * lr for that fraction of steps, then linear anneal

Maths (step s counts optimizer updates from 0; total T = steps_per_epoch * epochs; s >= T is
clamped to T):
  constant   lr
  step       lr * factor ** floor(floor(s / steps_per_epoch) / every)
  cosine     lr * (f + (1 - f) * (1 + cos(pi * s / T)) / 2)          f = final_fraction
  one_cycle  lr * (i + (1 - i) * s / W) for s < W (W = warmup * T, i = initial_fraction), then
             lr -> f * lr linearly from W to T (airbench: i = 0.2, warmup 0.23, f = 0.07)

`schedule_values` computes these in numpy (for previews and tests); `make_schedule` builds the same
formula as a Keras schedule, imported lazily so importing this module stays cheap. Keras finds the
class by its registered name "cifar_lab>LabSchedule": a process that loads a saved model must call
`keras_custom_objects()` (or `make_schedule`) first, or pass its result as `custom_objects`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from cifar_core.errors import SpecError
from cifar_core.spec.training import SCHEDULE_DEFAULTS, SCHEDULE_KEYS, validate_schedule

REGISTERED_NAME = "cifar_lab>LabSchedule"


def resolve_schedule(cfg: object) -> dict:
    """Validate the config and fill every left-out key with its default."""
    valid = validate_schedule(cfg)
    return {"type": valid["type"], **SCHEDULE_DEFAULTS[valid["type"]], **valid}


def _check_run(base_lr: float, steps_per_epoch: int, epochs: int) -> None:
    if isinstance(base_lr, bool) or not isinstance(base_lr, Real) or not base_lr > 0:
        raise SpecError(f"learning_rate={base_lr!r} must be a positive number", field="learning_rate")
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, Integral) or steps_per_epoch < 1:
        raise SpecError(f"steps_per_epoch={steps_per_epoch!r} must be a whole number >= 1", field="schedule")
    if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 1:
        raise SpecError(f"epochs={epochs!r} must be a whole number >= 1", field="epochs")


def _lr_at(step, xp, cfg: dict, base_lr: float, steps_per_epoch: int, epochs: int):
    """The schedule formula, written once for both numpy (`xp=np`) and `keras.ops`."""
    kind = cfg["type"]
    total = float(steps_per_epoch * epochs)
    s = xp.minimum(step, total)
    if kind == "constant":
        return base_lr + 0.0 * s  # same shape as step
    if kind == "step":
        epoch = xp.floor(s / float(steps_per_epoch))
        return base_lr * xp.power(float(cfg["factor"]), xp.floor(epoch / float(cfg["every"])))
    final = float(cfg["final_fraction"]) * base_lr
    if kind == "cosine":
        return final + (base_lr - final) * 0.5 * (1.0 + xp.cos(math.pi * s / total))
    if kind == "one_cycle":
        warm = float(cfg["warmup"]) * total
        start = float(cfg["initial_fraction"]) * base_lr
        rising = start + (base_lr - start) * s / max(warm, 1e-12)  # divisor guard: unused when warm == 0
        falling = base_lr + (final - base_lr) * (s - warm) / (total - warm)
        return xp.where(s < warm, rising, falling)
    raise SpecError(f"schedule type {kind!r} is unknown: use one of {', '.join(SCHEDULE_KEYS)}", field="schedule")


def schedule_values(
    cfg: dict, base_lr: float, steps_per_epoch: int, epochs: int, steps: list[int]
) -> list[float]:
    """The learning rate at each of `steps` (optimizer updates counted from 0), in plain numpy."""
    import numpy as np

    full = resolve_schedule(cfg)
    _check_run(base_lr, steps_per_epoch, epochs)
    arr = np.asarray(steps, dtype=np.float64)
    if arr.size and arr.min() < 0:
        raise SpecError(f"steps must be >= 0, got {int(arr.min())}", field="schedule")
    values = _lr_at(arr, np, full, float(base_lr), int(steps_per_epoch), int(epochs))
    return [float(v) for v in np.broadcast_to(values, arr.shape)]


def schedule_preview(cfg: dict, base_lr: float, steps_per_epoch: int, epochs: int, points: int = 200):
    """A DataFrame (step, epoch, learning_rate) of about `points` evenly spaced steps, for a chart."""
    import numpy as np
    import pandas as pd

    total = steps_per_epoch * epochs
    steps = sorted(set(np.linspace(0, total, num=max(2, points)).round().astype(int).tolist()))
    values = schedule_values(cfg, base_lr, steps_per_epoch, epochs, steps)
    return pd.DataFrame({"step": steps, "epoch": [s / steps_per_epoch for s in steps], "learning_rate": values})


_SCHEDULE_CLASS: type | None = None


def _schedule_class() -> type:
    """Define and register the Keras schedule class on first use (keeps keras out of imports)."""
    global _SCHEDULE_CLASS
    if _SCHEDULE_CLASS is not None:
        return _SCHEDULE_CLASS
    import keras

    @keras.saving.register_keras_serializable(package="cifar_lab", name="LabSchedule")
    class LabSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """A lab schedule (step, cosine or one_cycle) as a Keras learning-rate schedule."""

        def __init__(self, cfg: dict, base_lr: float, steps_per_epoch: int, epochs: int):
            self.cfg = resolve_schedule(cfg)
            self.base_lr = float(base_lr)
            self.steps_per_epoch = int(steps_per_epoch)
            self.epochs = int(epochs)

        def __call__(self, step):
            s = keras.ops.cast(step, "float32")
            return _lr_at(s, keras.ops, self.cfg, self.base_lr, self.steps_per_epoch, self.epochs)

        def get_config(self) -> dict:
            return {
                "cfg": dict(self.cfg),
                "base_lr": self.base_lr,
                "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs,
            }

    _SCHEDULE_CLASS = LabSchedule
    return LabSchedule


def keras_custom_objects() -> dict[str, type]:
    """Register the schedule class with Keras and return it as `custom_objects` for load_model."""
    return {REGISTERED_NAME: _schedule_class()}


def make_schedule(cfg: dict, base_lr: float, steps_per_epoch: int, epochs: int):
    """A float for a constant schedule, else a registered, serialisable Keras schedule."""
    full = resolve_schedule(cfg)
    _check_run(base_lr, steps_per_epoch, epochs)
    if full["type"] == "constant":
        return float(base_lr)
    return _schedule_class()(full, float(base_lr), int(steps_per_epoch), int(epochs))
