"""The tables of the training settings a spec holds besides its layers, and their validation: the
`augment` keys (train/augment.py applies them), the learning-rate `schedule` types and their keys
(train/schedules.py computes them) and the test-time views of `tta_flip` and `tta_shift`
(train/augment.py predicts over them). Pure Python: spec, the Builder and the training monitor
read them without importing the training code.
"""

from __future__ import annotations

from numbers import Integral

from cifar_core.errors import SpecError

AUGMENT_KEYS: dict[str, tuple[type, int, int]] = {
    "flip": (bool, 0, 1),
    "alternate_flip": (bool, 0, 1),
    "translate": (int, 0, 8),
    "cutout": (int, 0, 16),
}


def validate_augment(cfg: object) -> dict:
    """Return the augmentation config, or raise SpecError naming the bad key."""
    if not isinstance(cfg, dict):
        raise SpecError(f"augment must be an object like {{\"flip\": true}}, got {cfg!r}", field="augment")
    out: dict = {}
    for key, value in cfg.items():
        if key not in AUGMENT_KEYS:
            raise SpecError(f"augment takes no {key!r}: allowed keys are {', '.join(AUGMENT_KEYS)}", field="augment")
        typ, low, high = AUGMENT_KEYS[key]
        if typ is bool:
            if not isinstance(value, bool):
                raise SpecError(f"augment {key} must be true or false, got {value!r}", field="augment")
        elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SpecError(f"augment {key}={value!r} must be a whole number of pixels in {low}..{high}", field="augment")
        out[key] = value
    if out.get("flip") and out.get("alternate_flip"):
        raise SpecError("augment flip and alternate_flip are two ways to mirror: keep one (flip draws at random, "
                        "alternate_flip mirrors each image on every other epoch)", field="augment")
    return out


SCHEDULE_KEYS: dict[str, dict[str, tuple[type, float, float]]] = {
    "constant": {},
    "step": {"every": (int, 1, 1000), "factor": (float, 1e-6, 1.0)},
    "cosine": {"final_fraction": (float, 0.0, 1.0)},
    "one_cycle": {"warmup": (float, 0.0, 0.9), "final_fraction": (float, 0.0, 1.0), "initial_fraction": (float, 0.0, 1.0)},
}

# Values used when a key is left out (the examples in train/schedules.py's docstring).
SCHEDULE_DEFAULTS: dict[str, dict[str, float]] = {
    "constant": {},
    "step": {"every": 10, "factor": 0.1},
    "cosine": {"final_fraction": 0.0},
    "one_cycle": {"warmup": 0.25, "final_fraction": 0.0, "initial_fraction": 0.0},
}


def validate_schedule(cfg: object) -> dict:
    """Return the schedule config with its defaults, or raise SpecError naming the bad key."""
    if not isinstance(cfg, dict):
        raise SpecError(f"schedule must be an object like {{\"type\": \"cosine\"}}, got {cfg!r}", field="schedule")
    kind = cfg.get("type", "constant")
    if kind not in SCHEDULE_KEYS:
        raise SpecError(
            f"schedule type {kind!r} is unknown: use one of {', '.join(SCHEDULE_KEYS)}", field="schedule"
        )
    allowed = SCHEDULE_KEYS[kind]
    out: dict = {"type": kind}
    for key, value in cfg.items():
        if key == "type":
            continue
        if key not in allowed:
            raise SpecError(
                f"schedule {kind!r} takes no {key!r}: allowed keys are {', '.join(allowed) or 'none'}",
                field="schedule",
            )
        typ, low, high = allowed[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
            raise SpecError(f"schedule {key} must be a {typ.__name__}, got {value!r}", field="schedule")
        if not low <= value <= high:
            raise SpecError(f"schedule {key}={value} is out of range: use {low}..{high}", field="schedule")
        out[key] = typ(value)
    return out


def tta_views(tta_flip: bool = False, tta_shift: int = 0) -> list[tuple[int, int, bool]]:
    """The test-time views as (rows down, columns right, mirrored): the image itself, then with
    `tta_shift`, the image moved that many pixels down, up, right and left (reflect-padded, as
    training's translate); each view also mirrored with `tta_flip`."""
    if isinstance(tta_shift, bool) or not isinstance(tta_shift, Integral) or not 0 <= tta_shift <= 4:
        raise SpecError(f"tta_shift={tta_shift!r} must be a whole number of pixels in 0..4", field="tta_shift")
    s = int(tta_shift)
    shifts = [(0, 0)] + ([(s, 0), (-s, 0), (0, s), (0, -s)] if s else [])
    return [(dy, dx, mirrored) for dy, dx in shifts for mirrored in ((False, True) if tta_flip else (False,))]
