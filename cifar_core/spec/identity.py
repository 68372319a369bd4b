"""What makes two runs "the same configuration": every setting of the spec except the seed, the
name and the description (and a sweep's record of what it chose, which the settings repeat),
plus the data source. Seeds of one configuration are pooled (mean, std, min–max); anything else,
including the same settings on another data source, is a different configuration.

The one owner of that notion: the leaderboard's grouping (`jobs.results`), model choice's
candidates (`analysis.choice`), the leaderboard CSV and `python -m cifar_core leaderboard` all
call `config_key`. No TensorFlow, no store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cifar_core import config
from cifar_core.spec.layers import LAYER_ARGS, REQUIRED
from cifar_core.spec.schema import SPEC_DEFAULTS

IGNORED = ("seed", "name", "description", "sweep_params", "refit_of")  # not part of a configuration
VALIDATION_WORDS = {"none": "refit on train + holdout"}  # how describe() shows a validation setting


def settings(spec: dict) -> dict:
    """The spec's settings that define its configuration (everything but IGNORED), leaving out
    those at their defaults (top-level and layer arguments): a spec stored before a setting
    existed is the same configuration as a new one holding it at its default."""
    out = {}
    for key, value in spec.items():
        if key in IGNORED or (key in SPEC_DEFAULTS and _same(value, SPEC_DEFAULTS[key])):
            continue
        out[key] = [_layer_settings(la) for la in value] if key == "layers" and isinstance(value, list) else value
    return out


def _layer_settings(layer) -> object:
    if not isinstance(layer, dict):
        return layer
    schema = LAYER_ARGS.get(layer.get("type"), {})
    return {k: v for k, v in layer.items()
            if not (k in schema and schema[k].default is not REQUIRED and _same(v, schema[k].default))}


_SCALARS = (str, int, float, bool, type(None))


def _same(a: object, b: object) -> bool:
    """Equal as JSON (so 1 and true differ, and a list and a tuple do not). Two scalars of one type
    compare directly: the leaderboard asks this of every setting of every run."""
    if type(a) is type(b) and isinstance(a, _SCALARS):
        return a == b or a != a and b != b  # NaN is NaN, as in JSON's text
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def config_key(spec: dict, source: str) -> str:
    """A short, stable id of the configuration of `spec` trained on `source` (10 hex digits)."""
    text = json.dumps([settings(spec), str(source)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def source_name(source: str) -> str:
    """A data source as the lab shows it: the file or folder name, never the path on the machine
    that trained ("cifar10-jpeg.tar.gz"); "keras" stays "keras"."""
    source = str(source)
    return source if source == config.DEFAULT_SOURCE else (Path(source).name or source)


def describe(spec: dict) -> str:
    """The settings an analyst reads first, in one short line:
    "adam lr 0.0003 · batch 64 · 3 epochs · holdout"."""
    parts = [f"{spec.get('optimizer', 'adam')} lr {spec.get('learning_rate', '?'):g}"
             if isinstance(spec.get("learning_rate"), (int, float)) else str(spec.get("optimizer", "adam")),
             f"batch {spec.get('batch_size', '?')}", f"{spec.get('epochs', '?')} epoch{'' if spec.get('epochs') == 1 else 's'}",
             VALIDATION_WORDS.get(spec.get("validation", "holdout"), str(spec.get("validation", "holdout")))]
    if isinstance(spec.get("muon_learning_rate"), (int, float)) and spec["muon_learning_rate"] > 0:
        parts[0] += f" + muon {spec['muon_learning_rate']:g}"  # the kernels' rate
    schedule = (spec.get("schedule") or {}).get("type", "constant")
    if schedule != "constant":
        parts.insert(1, f"{schedule} schedule")
    return " · ".join(parts)


def label(names, spec: dict) -> str:
    """A configuration's readable label: its runs' name(s) and its main settings,
    e.g. "exp2-s01, exp2-s07 · adam lr 0.0003 · batch 64 · 3 epochs · holdout"."""
    unique = list(dict.fromkeys(str(n) for n in names))
    shown = ", ".join(unique[:3]) + (f" +{len(unique) - 3} more" if len(unique) > 3 else "")
    return f"{shown} · {describe(spec)}"
