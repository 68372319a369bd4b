"""The Builder page's editing rules as plain functions over plain data, so the page only draws.

The page keeps an *editor* dict in its session state: {"doc": the working spec document, "uids":
one stable id per layer (widget keys follow a layer when it moves), "next": the next free id,
"gen": bumped on every load so every widget starts from the new values}. The edit functions take
an editor (or a doc) and return a changed copy; nothing here knows about Streamlit.

A setting is addressed by its path in the doc: ("learning_rate",), ("schedule", "every"),
("augment", "flip"), ("early_stopping", "patience"); ("early_stopping",) is the on/off switch.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cifar_core.errors import DataError, LabError, SpecError, UploadError
from cifar_core.spec import jsonread
from cifar_core.spec.presets import PRESET_TITLES, get_preset, preset_names
from cifar_core.spec.layers import (
    EARLY_STOPPING_ARGS,
    LAYER_ARGS,
    NAME_PATTERN,
    OPTIMIZER_USERS,
    REQUIRED,
    TOP_ARGS,
    Arg,
)
from cifar_core.spec.summary import ModelSummary, summarize_prefix
from cifar_core.spec.training import AUGMENT_KEYS, SCHEDULE_DEFAULTS, SCHEDULE_KEYS
from cifar_core.spec.validate import check_spec

if TYPE_CHECKING:
    from cifar_core.lab import Lab

EMPTY = {"name": "new-experiment", "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}],
         "optimizer": "adam", "learning_rate": 0.001, "epochs": 10, "batch_size": 32, "seed": 0, "validation": "holdout"}
STARTERS = {"units": 64, "filters": 32, "kernel_size": 3, "rate": 0.2, "activation": "relu", "factor": 0.1,
            "height_factor": 0.1, "width_factor": 0.1, "patience": 5}  # first values of required arguments
STEPS = {"learning_rate": 1e-4, "rate": 0.05, "momentum": 0.01, "epsilon": 1e-4, "weight_decay": 1e-4, "factor": 0.05,
         "height_factor": 0.05, "width_factor": 0.05, "label_smoothing": 0.05, "final_fraction": 0.05, "warmup": 0.05, "initial_fraction": 0.05,
         "min_delta": 0.001, "ema_momentum": 0.001, "bn_bias_lr_multiplier": 1,
         "muon_learning_rate": 0.01, "muon_momentum": 0.05}  # number-box steps; others step by 0.01 (floats) or 1 (ints)
VALIDATION_LABELS = {"test": "test set each epoch (notebook)", "holdout": "5,000 held-out train images"}
CIFAR_TRAIN_IMAGES = 50_000  # the schedule preview's step count; its curve over epochs barely depends on it
HOLDOUT_IMAGES = 5_000

SCHEDULE_TYPE = Arg("choice", "constant", choices=tuple(SCHEDULE_KEYS))
SCHEDULE_ARGS: dict[str, dict[str, Arg]] = {
    kind: {key: Arg("int" if typ is int else "float", SCHEDULE_DEFAULTS[kind][key], low, high)
           for key, (typ, low, high) in keys.items()}
    for kind, keys in SCHEDULE_KEYS.items()
}
AUGMENT_ARGS: dict[str, Arg] = {
    key: Arg("bool", False) if typ is bool else Arg("int", 0, low, high) for key, (typ, low, high) in AUGMENT_KEYS.items()
}
EARLY_STOPPING_SWITCH = Arg("bool", False)
LABELS = {  # settings whose name alone says too little, by Field.key
    "schedule_type": "schedule", "schedule_every": "every (epochs)", "schedule_factor": "multiply by",
    "schedule_final_fraction": "final fraction of the rate", "schedule_warmup": "warm-up (fraction of steps)",
    "schedule_initial_fraction": "warm-up starts at (fraction of the rate)",
    "augment_flip": "random flip", "augment_translate": "translate (pixels)", "augment_cutout": "cutout (pixels)",
    "tta_flip": "test-time flip (TTA)", "tta_shift": "test-time shifts (pixels)", "early_stopping": "enabled",
    "early_stopping_patience": "patience (epochs)", "early_stopping_min_delta": "min improvement",
    "augment_alternate_flip": "alternating flip", "ema_momentum": "EMA momentum",
    "bn_bias_lr_multiplier": "BN bias rate multiplier", "lookahead_steps": "lookahead every (steps)",
    "ema_warmup": "EMA warm-up (power)", "decay_biases": "decay biases too",
    "muon_learning_rate": "Muon rate (conv kernels)", "muon_momentum": "Muon momentum",
}
HELP = {  # one line under the "?" of a widget, by Field.key (a layer's argument: "Type.argument")
    "augment_alternate_flip": "Instead of a random flip: each image mirrored on every other epoch (a random half, then the other).",
    "tta_flip": "Average the predictions over each test image and its mirror.",
    "tta_shift": "Also average over the test image shifted this many pixels each way.",
    "logit_scale": "Multiply the last layer's logits by this before its softmax (airbench: 1/9).",
    "ema_momentum": "Validate, test and save a moving average of the weights (avg = m·avg + (1-m)·w each step); 0 is off.",
    "decay_biases": "Weight decay also shrinks biases and BatchNorm shifts, not only kernels (airbench decays them).",
    "ema_warmup": "With EMA: its momentum at step t of T is m·(t/T)^this, so early weights move freely; 0 keeps m fixed.",
    "lookahead_steps": "With EMA: every this many steps the weights are reset to their average (lookahead); 0 is off.",
    "bn_bias_lr_multiplier": "BatchNormalization biases learn at this multiple of the learning rate (airbench: 64).",
    "muon_learning_rate": "Conv kernels step by Muon (orthogonalised momentum) at this peak rate, on the schedule; 0 is off.",
    "muon_momentum": "With Muon: the Nesterov momentum of the kernels' steps (airbench94_muon: 0.6).",
    "Whitening.kernel_size": "Side of the patches whitened: 2 or 3 pixels.",
    "Whitening.epsilon": "Added to each eigenvalue before the square root: damps the faint directions.",
    "Whitening.negatives": "Also the negated filters (twice the channels), so an activation after it keeps both signs.",
    "Whitening.bias_epochs": "Epochs the bias trains before it is frozen; the filters never train.",
    "BatchNormalization.scale": "Off: no learned scale (gamma), only the shift, as in airbench.",
    "BatchNormalization.momentum": "Weight of the old moving statistics at each step.",
    "Conv2D.initializer": "dirac: the first filters start as the identity on their channel; the rest glorot_uniform.",
}
_TEXT = Arg("text", "")
_RAW = Arg("json", None)  # a value the widgets cannot show (edited as JSON text)
_GROUPS = {  # settings panel groups: the top-level keys whose widgets and errors each one holds
    "about": ("About", ("name", "description")),
    "optimizer": ("Optimizer", ("optimizer", "learning_rate", "momentum", "nesterov", "weight_decay", "decay_biases",
                                "muon_learning_rate", "muon_momentum")),
    "schedule": ("Learning-rate schedule", ("schedule",)),
    "run": ("Run", ("epochs", "batch_size", "seed", "validation")),
    "regularise": ("Regularisation and augmentation", ("label_smoothing", "augment", "tta_flip", "tta_shift")),
    "recipe": ("Output and weight averaging", ("logit_scale", "ema_momentum", "ema_warmup", "lookahead_steps", "bn_bias_lr_multiplier")),
    "early_stopping": ("Early stopping", ("early_stopping",)),
}


@dataclass(frozen=True)
class Field:
    """One widget: where its value lives in the doc, which widget shows it, and the value shown."""

    path: tuple[str, ...]  # ("learning_rate",), ("schedule", "every"); a layer's argument: (name,)
    label: str
    widget: str  # checkbox | select | radio | int | float | text | textarea | json
    shown: object  # the widget's value: JSON text for "json", None for an empty number box
    enabled: bool = True
    step: float = 1
    options: tuple = ()  # select and radio
    labels: dict = field(default_factory=dict)  # option -> text, for radio
    help: str = ""  # one line of what the setting does, or "" when its label says it

    @property
    def key(self) -> str:
        return "_".join(self.path)


@dataclass(frozen=True)
class Group:
    """A block of the settings panel, with the messages of the spec errors in its settings."""

    name: str
    title: str
    fields: tuple[Field, ...]
    errors: tuple[str, ...]
    preview: object = None  # the schedule group's DataFrame (step, epoch, learning_rate), if valid


@dataclass(frozen=True)
class LayerRow:
    uid: int
    index: int
    kind: object  # the layer's type as written (maybe not an allowed one)
    kinds: tuple  # the type box's options
    info: str | None  # name, output shape and params, when the summary reaches this layer
    fields: tuple[Field, ...]
    errors: tuple[str, ...]


# ------------------------------------------------------------ the editor and its layers


def new_editor(doc: dict, first_uid: int = 0, gen: int = 0) -> dict:
    """An editor holding a copy of `doc` (layers that are not a list become an empty list)."""
    layers = doc.get("layers", [])
    doc = copy.deepcopy({**doc, "layers": layers if isinstance(layers, list) else []})
    count = len(doc["layers"])
    return {"doc": doc, "uids": list(range(first_uid, first_uid + count)), "next": first_uid + count, "gen": gen}


def load(editor: dict, doc: dict, notice: tuple[str, str] | None = None) -> dict:
    """The editor holding `doc` instead, with fresh layer ids, the next generation of widgets and
    `notice` ((kind, text) for the page to show once)."""
    return {**editor, **new_editor(doc, editor["next"], editor["gen"] + 1), "notice": notice}


def new_layer(kind: str, old: dict | None = None) -> dict:
    """A layer of `kind` with starter values for its required arguments (keeping those `old` shares)."""
    layer = {"type": kind}
    for name, arg in LAYER_ARGS.get(kind, {}).items():
        if old and name in old:
            layer[name] = old[name]
        elif arg.default is REQUIRED:
            layer[name] = STARTERS.get(name, arg.low)
    return layer


def add_layer(editor: dict, at: int, kind: str) -> dict:
    """A new `kind` layer inserted at position `at` (clamped to the list)."""
    out = _copy(editor)
    at = min(max(int(at), 0), len(out["uids"]))
    out["doc"]["layers"].insert(at, new_layer(kind))
    out["uids"].insert(at, out["next"])
    out["next"] += 1
    return out


def remove_layer(editor: dict, uid: int) -> dict:
    out = _copy(editor)
    if uid in out["uids"]:
        i = out["uids"].index(uid)
        del out["doc"]["layers"][i], out["uids"][i]
    return out


def move_layer(editor: dict, uid: int, step: int) -> dict:
    """The layer moved `step` places (-1 up, +1 down); a move past either end changes nothing."""
    out = _copy(editor)
    if uid not in out["uids"]:
        return out
    i = out["uids"].index(uid)
    j = i + step
    if 0 <= j < len(out["uids"]):
        layers, uids = out["doc"]["layers"], out["uids"]
        layers[i], layers[j], uids[i], uids[j] = layers[j], layers[i], uids[j], uids[i]
    return out


def retype_layer(editor: dict, uid: int, kind: str) -> dict:
    """The layer made a `kind`, keeping the arguments both types take."""
    out = _copy(editor)
    if uid in out["uids"]:
        i = out["uids"].index(uid)
        old = out["doc"]["layers"][i]
        out["doc"]["layers"][i] = new_layer(kind, old if isinstance(old, dict) else None)
    return out


def set_layer_arg(editor: dict, uid: int, name: str, value) -> dict:
    """A layer argument set from its widget; an empty box or the type's default leaves the key out."""
    out = _copy(editor)
    if uid in out["uids"]:
        layer = out["doc"]["layers"][out["uids"].index(uid)]
        arg = LAYER_ARGS.get(layer.get("type"), {}).get(name, _RAW)
        _put(layer, name, value, arg, keep_default=False)
    return out


def apply_widget(editor: dict, f: Field, raw, uid: int | None = None) -> dict:
    """The editor with a widget's new state `raw` written to its setting, or to layer `uid`'s argument."""
    value = widget_value(f.widget, raw)
    if uid is not None:
        return set_layer_arg(editor, uid, f.path[0], value)
    return {**editor, "doc": set_setting(editor["doc"], f.path, value)}


def _copy(editor: dict) -> dict:
    return {**editor, "doc": copy.deepcopy(editor["doc"]), "uids": list(editor["uids"])}


# ------------------------------------------------------------ settings


def arg_at(path: tuple[str, ...]) -> Arg:
    """The rule for the setting at `path` (an unknown path gets a raw JSON box)."""
    head, tail = path[0], path[1:]
    if not tail:
        if head in ("name", "description"):
            return _TEXT
        return EARLY_STOPPING_SWITCH if head == "early_stopping" else TOP_ARGS.get(head, _RAW)
    key = tail[0]
    if head == "schedule":
        return SCHEDULE_TYPE if key == "type" else next((a[key] for a in SCHEDULE_ARGS.values() if key in a), _RAW)
    return {"augment": AUGMENT_ARGS, "early_stopping": EARLY_STOPPING_ARGS}.get(head, {}).get(key, _RAW)


def set_setting(doc: dict, path: tuple[str, ...], value) -> dict:
    """The doc with the setting at `path` set from its widget (a copy; `doc` is left alone)."""
    doc = copy.deepcopy(doc)
    head, arg = path[0], arg_at(path)
    if len(path) == 1:
        if head == "early_stopping":
            _switch_early_stopping(doc, value)
        elif arg is _TEXT:
            doc[head] = value if value is not None else ""
        else:
            _put(doc, head, value, arg, keep_default=True)  # training settings stay explicit
        if head == "optimizer":  # settings the new optimizer does not read would only be errors now
            for extra, users in OPTIMIZER_USERS.items():
                if doc.get("optimizer") not in users:
                    doc.pop(extra, None)
        return doc
    key = path[1]
    if head == "schedule" and key == "type":
        doc["schedule"] = with_schedule_type(doc.get("schedule"), value)
    elif head == "augment":
        augment = dict(_as_dict(doc.get("augment")))
        _put(augment, key, value, arg, keep_default=False)  # no augmentation is the empty {}
        doc["augment"] = augment
    else:
        current = doc.get(head)
        starter = {"type": "constant"} if head == "schedule" else early_stopping_defaults()
        inner = dict(current) if isinstance(current, dict) else starter
        _put(inner, key, value, arg, keep_default=True)
        doc[head] = inner
    return doc


def with_schedule_type(schedule, kind) -> dict:
    """A schedule of `kind` with its keys' defaults, keeping the values it shares with `schedule`."""
    if not isinstance(kind, str) or kind not in SCHEDULE_DEFAULTS:
        return {"type": kind}  # the spec check names it
    old = schedule if isinstance(schedule, dict) else {}
    return {"type": kind, **{k: old.get(k, default) for k, default in SCHEDULE_DEFAULTS[kind].items()}}


def early_stopping_defaults() -> dict:
    return {k: STARTERS[k] if a.default is REQUIRED else a.default for k, a in EARLY_STOPPING_ARGS.items()}


def _switch_early_stopping(doc: dict, value) -> None:
    if value is True:
        current = doc.get("early_stopping")
        doc["early_stopping"] = current if isinstance(current, dict) else early_stopping_defaults()
    elif value is False or value is None:
        doc.pop("early_stopping", None)
    else:  # from a JSON box: the spec check names what is wrong with it
        doc["early_stopping"] = value


def _put(target: dict, name: str, value, arg: Arg, keep_default: bool) -> None:
    is_default = arg.default is not REQUIRED and value == arg.default and type(value) is type(arg.default)
    if value is None or (is_default and not keep_default):
        target.pop(name, None)
    else:
        target[name] = value


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------ what the widgets show


def _field(path: tuple[str, ...], arg: Arg, value, label: str | None = None, enabled: bool = True,
           labels: dict | None = None, kind: str | None = None) -> Field:
    """The widget that fits `arg` holding `value` (a JSON box for values of another kind); `kind`
    is the layer type when it is a layer's argument."""
    label = label or LABELS.get("_".join(path)) or path[-1].replace("_", " ")
    number = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    step = STEPS.get(path[-1], 0.01)
    if arg.kind == "text":
        widget, shown = ("textarea" if path[-1] == "description" else "text"), "" if value is None else str(value)
    elif arg.kind == "bool" and isinstance(value, bool):
        widget, shown = "checkbox", value
    elif arg.kind == "choice" and isinstance(value, str) and value in arg.choices:
        widget, shown = ("radio" if labels else "select"), value
    elif arg.kind in ("int", "size") and number and (value is None or isinstance(value, int)):
        widget, shown, step = "int", value, 1
    elif arg.kind == "float" and number:
        widget, shown = "float", None if value is None else float(value)
    else:
        widget, shown = "json", _json_text(value)
    help_text = HELP.get(f"{kind}.{path[0]}" if kind else "_".join(path), "")
    return Field(path, label, widget, shown, enabled, step, arg.choices, labels or {}, help_text)


def _json_text(value) -> str:
    if isinstance(value, str):
        try:
            jsonread.loads(value, "the value")
        except SpecError:
            return value  # text that is not JSON shows as typed (widget_value keeps it as text)
    return json.dumps(value)


def widget_value(widget: str, raw):
    """The doc value of a widget's state: JSON boxes are parsed (text that is not JSON stays text,
    so the spec check names it beside the setting)."""
    if widget != "json":
        return raw
    if not isinstance(raw, str):
        return raw
    try:
        return jsonread.loads(raw, "the value")
    except SpecError:
        return raw


def setting_enabled(doc: dict, name: str) -> bool:
    """Optimizer-specific settings are editable with an optimizer that reads them, Muon's momentum
    while Muon is on (muon_learning_rate > 0); either also while set to a value other than the
    default (so a value from a file can still be cleared)."""
    if name == "muon_momentum":
        rate = doc.get("muon_learning_rate", TOP_ARGS["muon_learning_rate"].default)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate > 0:
            return True
    else:
        users = OPTIMIZER_USERS.get(name)
        if users is None or doc.get("optimizer", TOP_ARGS["optimizer"].default) in users:
            return True
    return name in doc and doc[name] != TOP_ARGS[name].default


def settings_groups(doc: dict, errors: list[SpecError]) -> list[Group]:
    """The settings panel: each group's widgets and the messages of the errors in its settings; a
    last group "other" holds errors of settings no widget shows (unknown keys, for example)."""
    places = place_errors(errors)
    groups = []
    for name, (title, keys) in _GROUPS.items():
        fields = [f for key in keys for f in _top_fields(doc, key)]
        messages = [m for key in keys for m in places.pop(key, [])]
        preview = schedule_preview(doc) if name == "schedule" else None
        groups.append(Group(name, title, tuple(fields), tuple(messages), preview))
    leftover = [m for place, ms in places.items() if isinstance(place, str) and place != "layers" for m in ms]
    if leftover:
        groups.append(Group("other", "Other settings", (), tuple(leftover)))
    return groups


def _top_fields(doc: dict, key: str) -> list[Field]:
    if key == "schedule":
        return _nested_fields(doc, "schedule", {"type": "constant"}, _schedule_args)
    if key == "augment":
        return _nested_fields(doc, "augment", {}, lambda _: AUGMENT_ARGS)
    if key == "early_stopping":
        value = doc.get("early_stopping")
        if value is not None and not isinstance(value, dict):
            return [_field(("early_stopping",), _RAW, value, "early stopping")]
        switch = [_field(("early_stopping",), EARLY_STOPPING_SWITCH, value is not None)]
        if value is None:
            return switch
        return switch + [_field(("early_stopping", k), a, value.get(k, None if a.default is REQUIRED else a.default))
                         for k, a in EARLY_STOPPING_ARGS.items()]
    arg = arg_at((key,))
    value = doc.get(key, arg.default if arg is not _TEXT else "")
    labels = VALIDATION_LABELS if key == "validation" else None
    return [_field((key,), arg, value, enabled=setting_enabled(doc, key), labels=labels)]


def _schedule_args(schedule: dict) -> dict[str, Arg]:
    kind = schedule.get("type", "constant")
    return {"type": SCHEDULE_TYPE, **(SCHEDULE_ARGS.get(kind, {}) if isinstance(kind, str) else {})}


def _nested_fields(doc: dict, head: str, empty: dict, schema_of) -> list[Field]:
    value = doc.get(head, empty)
    if not isinstance(value, dict):
        return [_field((head,), _RAW, value, head)]
    return [_field((head, k), a, value.get(k, a.default)) for k, a in schema_of(value).items()]


# ------------------------------------------------------------ layers, errors and the summary


def place_errors(errors: list[SpecError]) -> dict[int | str, list[str]]:
    """Messages by where they belong: a layer index, else the setting named, else "spec"."""
    places: dict[int | str, list[str]] = {}
    for e in errors:
        places.setdefault(e.layer if e.layer is not None else (e.field or "spec"), []).append(str(e))
    return places


def layer_rows(editor: dict, summary: ModelSummary | None, errors: list[SpecError]) -> list[LayerRow]:
    """Every layer with its widgets, its line of the summary and its errors."""
    places = place_errors(errors)
    rows = []
    for i, (uid, layer) in enumerate(zip(editor["uids"], editor["doc"]["layers"])):
        kind = layer.get("type")
        kinds = tuple(LAYER_ARGS) if kind in LAYER_ARGS else (*LAYER_ARGS, kind)
        info = None
        if summary is not None and i < len(summary.layers):
            out = summary.layers[i]
            info = f"`{out.name}` → `{tuple(out.output_shape)}` · **{out.params:,}** params"
        fields = tuple(_field((name,), arg, layer.get(name, None if arg.default is REQUIRED else arg.default), kind=kind)
                       for name, arg in LAYER_ARGS.get(kind, {}).items())
        rows.append(LayerRow(uid, i, kind, kinds, info, fields, tuple(places.get(i, []))))
    return rows


def summary_of(doc: dict, input_shape, num_classes: int) -> ModelSummary | None:
    """The layers' summary, titled with the spec's name if usable: every layer when their shapes
    work out, else the layers before the first one at fault (see `summary_complete`); None when
    not even the first layer can be summarised."""
    name = doc.get("name")
    title = name if isinstance(name, str) and NAME_PATTERN.fullmatch(name) and name.strip() else "experiment"
    layers = doc.get("layers")
    return summarize_prefix({"name": title, "layers": layers if isinstance(layers, list) else []}, input_shape, num_classes)


def summary_complete(doc: dict, summary: ModelSummary | None) -> bool:
    """Whether `summary` covers every layer of `doc` (else it stops before the layer at fault)."""
    layers = doc.get("layers")
    return summary is not None and isinstance(layers, list) and len(summary.layers) == len(layers)


def schedule_preview(doc: dict, train_images: int = CIFAR_TRAIN_IMAGES):
    """A DataFrame (step, epoch, learning_rate) of the doc's schedule, or None while the schedule,
    learning rate, epochs or batch size is invalid (their errors show beside them)."""
    from cifar_core.train import schedules

    values = [doc.get(k, TOP_ARGS[k].default) for k in ("learning_rate", "epochs", "batch_size")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    lr, epochs, batch = values
    schedule = doc.get("schedule", {"type": "constant"})
    if not isinstance(batch, int) or batch < 1 or not isinstance(schedule, dict) or not isinstance(schedule.get("type", ""), str):
        return None
    train = train_images - (HOLDOUT_IMAGES if doc.get("validation", "holdout") == "holdout" else 0)
    try:
        return schedules.schedule_preview(schedule, lr, max(1, math.ceil(train / batch)), epochs)
    except SpecError:
        return None


# ------------------------------------------------------------ loading, saving, submitting
# These record what happened as (kind, text) in the editor: "notice" shows at the top of the page,
# "result" below the buttons ("data" when the dataset is at fault), each once.


def start_options(saved: list[str]) -> list[str]:
    """The "Start from" choices: presets, an empty experiment, then saved experiments."""
    return [*(f"preset:{n}" for n in preset_names()), "empty:", *(f"saved:{n}" for n in saved)]


def start_label(option: str) -> str:
    kind, _, name = option.partition(":")
    return {"preset": f"{name} · {PRESET_TITLES.get(name, '')}", "empty": "empty experiment"}.get(kind, f"saved · {name}")


def load_start(editor: dict, lab: Lab, option: str) -> dict:
    """The editor holding a "Start from" choice (a missing saved experiment leaves it as it was)."""
    kind, _, name = option.partition(":")
    if kind == "preset":
        return load(editor, get_preset(name), ("success", f"Loaded the preset {name}."))
    if kind == "saved":
        try:
            return load(editor, lab.experiment(name), ("success", f"Loaded the saved experiment {name!r}."))
        except LabError as exc:
            return {**editor, "notice": ("error", str(exc))}
    return load(editor, EMPTY, ("success", "Started an empty experiment."))


def load_json(editor: dict, data: bytes, filename: str | None = None) -> dict:
    """The editor holding the spec in JSON `data`: an uploaded file, or the JSON editor's text if
    `filename` is None. Unreadable JSON leaves the spec alone; a spec with problems still loads."""
    what = filename or "The JSON"
    try:
        doc = jsonread.spec_upload(data)
        layers = doc.get("layers", [])
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise UploadError('"layers" must be a list of objects like {"type": "Dense", "units": 64}')
    except UploadError as exc:
        return {**editor, "notice": ("error", f"{what} was not {'loaded' if filename else 'applied'}: {exc}")}
    if filename is None:
        return load(editor, doc, ("success", "Applied the JSON."))
    problems = check_spec(doc)
    more = f" It has {len(problems)} problem(s), shown beside the settings at fault." if problems else ""
    return load(editor, doc, ("warning" if problems else "success", f"Loaded {filename}.{more}"))


def save(editor: dict, lab: Lab) -> dict:
    """The spec saved under its name (validated first), with the outcome as the editor's result."""
    try:
        name = lab.save_experiment(editor["doc"]).name
    except LabError as exc:
        return {**editor, "result": ("error", str(exc)), "queued": []}
    return {**editor, "result": ("success", f"Saved {name!r}; it is listed under Start from."), "queued": []}


def submit(editor: dict, lab: Lab, source: str, repeats: int = 1, tags=()) -> dict:
    """The spec queued `repeats` times (seeds seed, seed+1, ...), each run carrying `tags`; "queued"
    holds the job ids."""
    try:
        ids = lab.submit(editor["doc"], source, repeats=int(repeats), tags=tags).job_ids
    except DataError as exc:
        return {**editor, "result": ("data", str(exc)), "queued": []}
    except LabError as exc:
        return {**editor, "result": ("error", str(exc)), "queued": []}
    text = f"Queued job{'s' if len(ids) > 1 else ''} {', '.join(f'#{i}' for i in ids)}."
    return {**editor, "result": ("success", text), "queued": ids}
