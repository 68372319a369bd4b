"""Comparing specs: their settings side by side, one row per setting, with the differences flagged.
Plain pandas, no drawing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields

import pandas as pd

from cifar_core.spec.layers import LAYER_ALIASES, LAYER_ARGS
from cifar_core.spec.schema import SPEC_DEFAULTS, ExperimentSpec

ABSENT = "–"  # shown where a run has no such setting


def layer_text(layer: object) -> str:
    """A layer in one line, only its non-default arguments: "Conv2D filters=32 kernel_size=3 activation=relu"."""
    if not isinstance(layer, dict):
        return _value_text(layer)
    kind = layer.get("type")
    schema = LAYER_ARGS.get(LAYER_ALIASES.get(kind, kind), {}) if isinstance(kind, str) else {}
    parts = [str(kind)]
    for key, value in layer.items():
        if key == "type":
            continue
        arg = schema.get(key)
        if arg is not None and _same(value, arg.default):
            continue
        if key == "strides" and "pool_size" in layer and _same(value, layer["pool_size"]):
            continue  # a pool steps by its size unless told otherwise
        parts.append(f"{key}={_value_text(value)}")
    return " ".join(parts)


def flatten_spec(doc: Mapping) -> dict[str, str]:
    """One display row per setting: top-level values (missing ones at their defaults), nested
    settings as "schedule.type", and one row per layer ("layer 03")."""
    rows: dict[str, str] = {}
    ordered = [f.name for f in fields(ExperimentSpec) if f.name != "layers"]
    ordered += [k for k in doc if k not in SPEC_DEFAULTS]  # unknown keys still show
    for key in ordered:
        value = doc.get(key, SPEC_DEFAULTS.get(key))
        _flatten(rows, key, value)
    layers = doc.get("layers") or []
    rows["layers"] = str(len(layers)) if isinstance(layers, list) else _value_text(layers)
    if isinstance(layers, list):
        for i, layer in enumerate(layers):
            rows[f"layer {i:02d}"] = layer_text(layer)
    return rows


def _flatten(rows: dict[str, str], key: str, value: object) -> None:
    if isinstance(value, dict) and value:
        for sub, inner in value.items():
            _flatten(rows, f"{key}.{sub}", inner)
    else:
        rows[key] = _value_text(value)


def settings_table(specs: Mapping[str, Mapping] | Iterable[Mapping]) -> pd.DataFrame:
    """Settings of several specs side by side: one column per spec (keyed by label, or by name
    when given a list), one row per setting, and a boolean "differs" column."""
    if not isinstance(specs, Mapping):
        specs = _label_by_name(list(specs))
    flat = {str(label): flatten_spec(doc) for label, doc in specs.items()}
    order: list[str] = []
    for rows in flat.values():
        order += [k for k in rows if k not in order]
    table = pd.DataFrame({label: [rows.get(k, ABSENT) for k in order] for label, rows in flat.items()}, index=order)
    table.index.name = "setting"
    table["differs"] = table.nunique(axis=1) > 1 if len(flat) > 1 else False
    return table


def differences(a: Mapping, b: Mapping, ignore: Iterable[str] = ()) -> dict[str, tuple[str, str]]:
    """The settings (rows of `flatten_spec`) where two specs differ, as {setting: (a's, b's)}, in
    `flatten_spec`'s order; settings whose top-level key is in `ignore` are left out."""
    skip = set(ignore)
    flat_a, flat_b = flatten_spec(a), flatten_spec(b)
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    return {k: (flat_a.get(k, ABSENT), flat_b.get(k, ABSENT)) for k in keys
            if k.split(".")[0] not in skip and flat_a.get(k, ABSENT) != flat_b.get(k, ABSENT)}


def _label_by_name(docs: list[Mapping]) -> dict[str, Mapping]:
    out: dict[str, Mapping] = {}
    for i, doc in enumerate(docs):
        label = str(doc.get("name", f"spec {i}"))
        out[label if label not in out else f"{label} ({i})"] = doc
    return out


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _value_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":")) if value else ("none" if isinstance(value, dict) else "[]")
    return str(value)
