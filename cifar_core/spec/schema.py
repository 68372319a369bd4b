"""The experiment spec: a JSON document describing one run, held once validated as an
`ExperimentSpec` (its settings, with their defaults and units). The document is checked by
`spec/validate.py` (`parse_spec`) against the argument table of `spec/layers.py`, and summarised
Keras-style by `spec/summary.py` in pure Python (shape inference in `spec/shapes.py`, parameter
counts without TensorFlow), so the builder page answers instantly.

Layer indexes are 0-based everywhere: `SpecError.layer`, the "layer N" in messages,
`LayerSummary.index` and the Keras layer names built from them ("l03_conv2d" is spec layer 3).
A spec is data, never code: layer types come from an allow-list and every argument is a plain
JSON value checked against its type and range.
"""

from __future__ import annotations

import copy
from dataclasses import MISSING, dataclass, field, fields


@dataclass(frozen=True)
class ExperimentSpec:
    """One validated experiment. Build it with `parse_spec`, never directly."""

    name: str  # 1..64 letters, digits, spaces, _ - .
    layers: tuple[dict, ...]  # normalised layer dicts, each with "type" and every default filled in
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    learning_rate: float = 1e-3  # initial rate, (0, 10]
    momentum: float = 0.0  # sgd and rmsprop only, [0, 1)
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # adamw and sgd only, [0, 0.5]
    decay_biases: bool = False  # weight decay also shrinks biases and BatchNorm shifts (beta), not only
    # kernels (airbench does); BatchNorm scales (gamma) never
    epochs: int = 10  # passes over the training set, 1..1000
    batch_size: int = 32  # images per step, 1..8192
    seed: int = 0  # 0..2**31-1
    validation: str = "holdout"  # "holdout": 5,000 train images held out, test scored once at the end;
    # "test": validate on the test set each epoch (notebook style); "none": train on every training
    # image, no validation, test scored once at the end (a refit)
    schedule: dict = field(default_factory=lambda: {"type": "constant"})  # see cifar_core.schedules
    label_smoothing: float = 0.0  # [0, 0.5]
    augment: dict = field(default_factory=dict)  # see cifar_core.augment
    tta_flip: bool = False  # average predictions over the image and its mirror at test time
    tta_shift: int = 0  # 0..4: also average over the image shifted this many pixels up, down, left, right
    logit_scale: float = 1.0  # (0, 100]: the last Dense's outputs are multiplied by this before its softmax
    ema_momentum: float = 0.0  # [0, 1): validate, test and save an exponential moving average of the weights
    # (avg = m * avg + (1 - m) * w after every step); 0: the weights themselves
    ema_warmup: float = 0.0  # [0, 8], with ema_momentum: m at step t of T is ema_momentum * (t / T) ** this
    # (weights move freely early, are averaged strongly at the end); 0: m fixed
    lookahead_steps: int = 0  # 0..1000, with ema_momentum: every this many steps the weights are set to
    # their moving average and training goes on from there (lookahead, as airbench does it); 0: never
    bn_bias_lr_multiplier: float = 1.0  # (0, 256]: BatchNormalization biases (beta) learn at this times the rate
    muon_learning_rate: float = 0.0  # [0, 10]: convolution kernels take Muon steps at this peak rate, on the
    # schedule (orthogonalised Nesterov momentum, each kernel renormalised first); 0: the optimizer's steps
    muon_momentum: float = 0.6  # [0, 1), with muon_learning_rate: Muon's momentum
    early_stopping: dict | None = None  # {"patience", "monitor", "min_delta"}
    description: str = ""
    sweep_params: dict = field(default_factory=dict)  # {path: value} this run of a sweep was given
    refit_of: int = 0  # the run this one refits on train + holdout (`Lab.refit`); 0: not a refit

    def to_dict(self) -> dict:
        """A JSON-ready dict that `parse_spec` turns back into an equal spec."""
        return {f.name: copy.deepcopy(_jsonable(getattr(self, f.name))) for f in fields(self)}


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ExperimentSpec))
SPEC_DEFAULTS: dict[str, object] = {  # every setting that has a default, at it
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default
    for f in fields(ExperimentSpec) if f.default is not MISSING or f.default_factory is not MISSING
}


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
