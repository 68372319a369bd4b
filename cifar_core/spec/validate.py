"""Validation of a spec document: `parse_spec` turns a dict (or JSON text) into an
`ExperimentSpec` or raises SpecErrors holding every problem, each naming the bad value and the fix;
`check_spec` returns them as a list; `load_spec` reads a preset or a JSON file."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

from cifar_core.errors import SpecError, SpecErrors
from cifar_core.spec import jsonread
from cifar_core.spec.layers import (
    EARLY_STOPPING_ARGS,
    INPUT_SHAPE,
    LAYER_ALIASES,
    LAYER_ARGS,
    MAX_DESCRIPTION,
    MAX_LAYERS,
    MUON_LAYERS,
    NAME_PATTERN,
    NUM_CLASSES,
    OPTIMIZER_USERS,
    REQUIRED,
    TOP_ARGS,
    Arg,
)
from cifar_core.spec.schema import SPEC_FIELDS, ExperimentSpec
from cifar_core.spec.shapes import _check_last_layer, _check_size, _check_whitening_place, _infer
from cifar_core.spec.training import validate_augment, validate_schedule


_KEY_HINTS = {
    "name": "layer names are generated from the index (l03_conv2d)",
    "input_shape": "the input shape comes from the dataset",
    "kernel_regularizer": "regularizer objects are not supported; use the spec's weight_decay with adamw or sgd",
    "bias_regularizer": "regularizer objects are not supported; use the spec's weight_decay with adamw or sgd",
    "kernel_initializer": "initializers are the Keras defaults, seeded from the spec's seed",
    "class_name": "write the layer as {\"type\": \"Dense\", \"units\": 64}, not Keras's class_name/config form",
    "config": "write the layer as {\"type\": \"Dense\", \"units\": 64}, not Keras's class_name/config form",
}


def parse_spec(doc: dict | str, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> ExperimentSpec:
    """Validate a spec document (a dict, or JSON text) and return it normalised.

    Raises SpecErrors holding every problem found, each a SpecError with `.layer` or `.field`.
    """
    spec, _, errors = _validate(doc, input_shape, num_classes)
    if errors:
        raise SpecErrors(errors)
    return spec


def check_spec(doc: dict | str, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> list[SpecError]:
    """The same checks as `parse_spec`, returned as a list (empty when the spec is valid)."""
    return _validate(doc, input_shape, num_classes)[2]


def load_spec(name_or_path: str) -> dict:
    """The document of a preset (by name) or of a JSON file (by path); raises SpecError if unreadable."""
    from cifar_core.spec.presets import PRESETS, get_preset

    if name_or_path in PRESETS:
        return get_preset(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise SpecError(
            f"no preset or spec file {name_or_path!r} ({what}): use a preset ({', '.join(PRESETS)}) "
            "or the path of a .json file"
        )
    doc = jsonread.load_file(path, f"spec file {path}")
    if not isinstance(doc, dict):
        raise SpecError(
            f"spec file {path} holds a JSON {_json_kind(doc)}, not an object; "
            'write {"name": ..., "layers": [...]}'
        )
    return doc


# --- validation -----------------------------------------------------------------------------


def _validate(doc, input_shape, num_classes):
    """(spec or None, layer summaries, errors) for a document."""
    _check_dims(input_shape, num_classes)
    if isinstance(doc, str):
        try:
            doc = jsonread.loads(doc, "spec")
        except SpecError as exc:
            return None, [], [exc]
    if not isinstance(doc, dict):
        message = f'a spec must be a JSON object {{"name": ..., "layers": [...]}}, got a {_json_kind(doc)}'
        return None, [], [SpecError(message)]
    errors: list[SpecError] = []
    for key in doc:
        if key not in SPEC_FIELDS:
            message = f"unknown setting {key!r}: allowed keys are {', '.join(SPEC_FIELDS)}"
            errors.append(SpecError(message, field=str(key)))
    values = _check_top(doc, errors)
    layers, summaries = _check_layers(doc.get("layers", REQUIRED), input_shape, num_classes, errors)
    if values.get("muon_learning_rate", 0.0) > 0 and layers and not any(
            layer["type"] in MUON_LAYERS for layer in layers):
        errors.append(SpecError(
            f"muon_learning_rate={values['muon_learning_rate']} steps convolution kernels, and this network has "
            f"no {' or '.join(sorted(MUON_LAYERS))} layer; add one or set muon_learning_rate to 0",
            field="muon_learning_rate",
        ))
    if errors:
        return None, summaries, errors
    return ExperimentSpec(layers=tuple(layers), **values), summaries, errors


def _check_dims(input_shape, num_classes) -> None:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"input_shape={input_shape!r} must be (height, width, channels) of positive ints")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 2")


def _check_top(doc: dict, errors: list[SpecError]) -> dict:
    """The checked top-level settings except layers; problems are appended to `errors`."""
    values: dict = {}
    for key, check in (("name", _check_name), ("description", _check_description), ("sweep_params", _check_sweep_params)):
        try:
            values[key] = check(doc.get(key, REQUIRED))
        except SpecError as exc:
            errors.append(exc)
    checked, problems = _check_args({k: v for k, v in doc.items() if k in TOP_ARGS}, TOP_ARGS, "", None, None)
    values.update(checked)
    errors.extend(problems)
    for key, check in (("schedule", _check_schedule), ("augment", validate_augment)):
        try:
            values[key] = check(doc.get(key, {"type": "constant"} if key == "schedule" else {}))
        except SpecError as exc:
            exc.field = exc.field or key
            errors.append(exc)
    try:
        values["early_stopping"] = _check_early_stopping(doc.get("early_stopping"))
    except SpecErrors as exc:
        errors.extend(exc.errors)
    if "optimizer" in values:
        errors.extend(_check_optimizer_settings(values))
    if values.get("lookahead_steps", 0) > 0 and values.get("ema_momentum", 0.0) == 0:
        errors.append(SpecError(
            f"lookahead_steps={values['lookahead_steps']} resets the weights to their moving average, which "
            "ema_momentum=0 turns off; set ema_momentum (0.9 to 0.99 suits lookahead) or lookahead_steps to 0",
            field="lookahead_steps",
        ))
    if values.get("decay_biases") and values.get("weight_decay", 0.0) == 0:
        errors.append(SpecError(
            "decay_biases=true has no decay to apply: weight_decay is 0; set weight_decay (with sgd or adamw) "
            "or remove decay_biases",
            field="decay_biases",
        ))
    if values.get("ema_warmup", 0.0) > 0 and values.get("ema_momentum", 0.0) == 0:
        errors.append(SpecError(
            f"ema_warmup={values['ema_warmup']} ramps the moving average's momentum, which ema_momentum=0 "
            "turns off; set ema_momentum (0.95 with ema_warmup 0.6 is airbench's) or ema_warmup to 0",
            field="ema_warmup",
        ))
    muon_default = TOP_ARGS["muon_momentum"].default
    if values.get("muon_momentum", muon_default) != muon_default and values.get("muon_learning_rate", 0.0) == 0:
        errors.append(SpecError(
            f"muon_momentum={values['muon_momentum']} is Muon's momentum, which muon_learning_rate=0 turns off; "
            "set muon_learning_rate (airbench94_muon: 0.24) or remove muon_momentum",
            field="muon_momentum",
        ))
    errors.extend(_check_no_validation(values))
    if values.get("ema_momentum", 0.0) > 0 and values.get("early_stopping"):
        errors.append(SpecError(
            f"ema_momentum={values['ema_momentum']} does not combine with early_stopping: early stopping would "
            "restore its best epoch's raw weights, not the averaged ones it scored; remove one of them",
            field="ema_momentum",
        ))
    return values


def _check_name(value) -> str:
    if value is REQUIRED:
        raise SpecError("name is missing: give the experiment a name like 'exp4 wider'", field="name")
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or not value.strip():
        raise SpecError(
            f"name {value!r} must be 1..64 letters, digits, spaces or _ - . characters; e.g. 'exp4 wider'",
            field="name",
        )
    return value


def _check_description(value) -> str:
    if value is REQUIRED:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        shown = f"{len(value)} characters" if isinstance(value, str) else repr(value)
        raise SpecError(f"description must be text of at most {MAX_DESCRIPTION} characters, got {shown}", field="description")
    return value


def _check_no_validation(values: dict) -> list[SpecError]:
    """validation 'none' (a refit) has no validation set to watch, and a refit trains without one."""
    problems = []
    if values.get("validation") == "none" and values.get("early_stopping"):
        problems.append(SpecError(
            "early_stopping watches the validation set, which validation='none' leaves out; remove early_stopping "
            "(a refit trains the epochs its holdout run chose) or use validation 'holdout'", field="early_stopping"))
    if values.get("refit_of", 0) and values.get("validation") != "none":
        problems.append(SpecError(
            f"refit_of={values['refit_of']} marks a refit on train + holdout, which validates on nothing: set "
            "validation to 'none' or remove refit_of", field="refit_of"))
    return problems


def _check_sweep_params(value) -> dict:
    if value is REQUIRED:
        return {}
    plain = (str, int, float, bool, type(None))
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, plain) for k, v in value.items()):
        raise SpecError(f"sweep_params must map setting paths to plain values, got {value!r}", field="sweep_params")
    return dict(value)


def _check_schedule(value) -> dict:
    kind = value.get("type", "constant") if isinstance(value, dict) else "constant"
    if not isinstance(kind, str):  # validate_schedule looks the type up in a dict: it must be hashable
        raise SpecError(f"schedule type must be a name such as 'cosine', got {kind!r}", field="schedule")
    return validate_schedule(value)


def _check_early_stopping(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpecErrors([
            SpecError(
                f'early_stopping must be null or an object like {{"patience": 5}}, got {value!r}',
                field="early_stopping",
            )
        ])
    checked, problems = _check_args(value, EARLY_STOPPING_ARGS, "early_stopping", None, "early_stopping")
    for key in value:
        if key not in EARLY_STOPPING_ARGS:
            message = f"early_stopping takes no {key!r}: allowed keys are {', '.join(EARLY_STOPPING_ARGS)}"
            problems.append(SpecError(message, field="early_stopping"))
    if problems:
        raise SpecErrors(problems)
    return checked


def _check_optimizer_settings(values: dict) -> list[SpecError]:
    """Settings that only some optimizers read: reject them elsewhere rather than ignore them."""
    opt = values["optimizer"]
    errors = []
    if values.get("momentum", 0.0) > 0 and opt not in OPTIMIZER_USERS["momentum"]:
        errors.append(SpecError(
            f"momentum={values['momentum']} only applies to sgd and rmsprop, not {opt}; remove it or change optimizer",
            field="momentum",
        ))
    if values.get("nesterov") and opt not in OPTIMIZER_USERS["nesterov"]:
        errors.append(SpecError(f"nesterov only applies to sgd, not {opt}; remove it or use sgd", field="nesterov"))
    if values.get("weight_decay", 0.0) > 0 and opt not in OPTIMIZER_USERS["weight_decay"]:
        errors.append(SpecError(
            f"weight_decay={values['weight_decay']} only applies to adamw and sgd, not {opt}; "
            "use 'adamw' for Adam with weight decay",
            field="weight_decay",
        ))
    return errors


def _check_layers(raw, input_shape, num_classes, errors: list[SpecError]):
    """(normalised layers, summaries up to the first problem); problems are appended to `errors`."""
    example = f'[{{"type": "Flatten"}}, {{"type": "Dense", "units": {num_classes}, "activation": "softmax"}}]'
    if raw is REQUIRED:
        errors.append(SpecError(f"layers is missing: list them, e.g. {example}", field="layers"))
        return [], []
    if not isinstance(raw, (list, tuple)):
        errors.append(SpecError(f"layers must be a list like {example}, got a {_json_kind(raw)}", field="layers"))
        return [], []
    if not raw:
        errors.append(SpecError(f"layers is empty: add at least one, e.g. {example}", field="layers"))
        return [], []
    if len(raw) > MAX_LAYERS:
        errors.append(SpecError(f"layers has {len(raw)} entries, over the limit of {MAX_LAYERS}; remove some", field="layers"))
        return [], []
    layers = []
    for i, item in enumerate(raw):
        layer, problems = _normalise_layer(i, item)
        layers.append(layer)
        errors.extend(problems)
    first_error = len(errors)
    valid_prefix = []
    for layer in layers:
        if layer is None:
            break
        valid_prefix.append(layer)
    errors.extend(_check_whitening_place(valid_prefix))
    summaries = _infer(valid_prefix, input_shape, errors)
    if layers[-1] is not None:
        errors.extend(_check_last_layer(len(layers) - 1, layers[-1], num_classes))
    if len(errors) == first_error and len(summaries) == len(layers):
        errors.extend(_check_size(summaries))
    return layers, summaries


def _normalise_layer(i: int, raw) -> tuple[dict | None, list[SpecError]]:
    """The layer with its type resolved and defaults filled in (None if it has problems), and its problems."""
    if not isinstance(raw, dict):
        message = f'layer {i} must be an object like {{"type": "Dense", "units": 64}}, got {raw!r}'
        return None, [SpecError(message, layer=i)]
    try:
        kind = _layer_type(i, raw)
    except SpecError as exc:
        return None, [exc]
    schema = LAYER_ARGS[kind]
    where = f"layer {i} ({kind})"
    layer, errors = _check_args({k: v for k, v in raw.items() if k != "type"}, schema, where, i, None)
    for key in raw:
        if key != "type" and key not in schema:
            allowed = ", ".join(["type", *schema])
            hint = f" ({_KEY_HINTS[key]})" if key in _KEY_HINTS else ""
            errors.append(SpecError(f"{where} takes no {key!r}: allowed keys are {allowed}{hint}", layer=i, field=str(key)))
    if errors:
        return None, errors
    if "pool_size" in layer and layer["strides"] is None:
        layer["strides"] = copy.deepcopy(layer["pool_size"])  # as Keras: step by the pool size
    return {"type": kind, **layer}, []


def _layer_type(i: int, raw: dict) -> str:
    value = raw.get("type", REQUIRED)
    if value is REQUIRED:
        hint = " (Keras's class_name/config form is not read)" if "class_name" in raw else ""
        raise SpecError(f'layer {i} has no \'type\'{hint}: write it like {{"type": "Dense", "units": 64}}', layer=i, field="type")
    if not isinstance(value, str):
        raise SpecError(f"layer {i}: type must be a layer name such as 'Dense', got {value!r}", layer=i, field="type")
    kind = LAYER_ALIASES.get(value, value)
    if kind in LAYER_ARGS:
        return kind
    known = [*LAYER_ARGS, *LAYER_ALIASES]
    hint = ""
    if _looks_like_path(value):
        tail = LAYER_ALIASES.get(re.split(r"[.:/\\]", value)[-1], re.split(r"[.:/\\]", value)[-1])
        hint = f"; {value!r} looks like a module path" + (f", write {tail!r}" if tail in LAYER_ARGS else "")
    else:
        close = [name for name in known if name.lower() == value.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SpecError(
        f"layer {i}: type {value!r} is not allowed; use one of {', '.join(LAYER_ARGS)} "
        f"(no Lambda layers or custom objects: a spec is data, never code){hint}",
        layer=i,
        field="type",
    )


def _check_args(raw: dict, schema: dict[str, Arg], where: str, layer: int | None, field_name: str | None):
    """(checked values with defaults filled in, problems) for the keys of `schema` found in `raw`."""
    out: dict = {}
    errors: list[SpecError] = []
    prefix = f"{where}: " if where else ""
    for key, arg in schema.items():
        spot = {"layer": layer, "field": field_name or key}
        if key not in raw:
            if arg.default is REQUIRED:
                errors.append(SpecError(f"{where or 'the spec'} needs {key!r}: {_describe(arg)}", **spot))
            else:
                out[key] = copy.deepcopy(arg.default)
            continue
        try:
            out[key] = _check_value(key, raw[key], arg, prefix)
        except SpecError as exc:
            errors.append(SpecError(str(exc), **spot))
    return out, errors


def _check_value(key: str, value, arg: Arg, prefix: str):
    """The value normalised (floats as float, square sizes as one int), or SpecError naming it."""
    if isinstance(value, dict):
        raise SpecError(f"{prefix}{key} must be a plain value, not an object; a spec is data, never code")
    if arg.kind == "size":
        return _check_size_value(key, value, arg, prefix)
    if isinstance(value, (list, tuple)):
        raise SpecError(f"{prefix}{key} must be a single value, not a list; {_describe(arg)}")
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise SpecError(f"{prefix}{key}={value!r} is not a JSON value ({type(value).__name__}); a spec is data, never code")
    if arg.kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"{prefix}{key} must be true or false, got {value!r}")
        return value
    if arg.kind == "choice":
        return _check_choice(key, value, arg, prefix)
    number = _as_number(key, value, arg.kind, prefix)
    if not _in_range(number, arg):
        raise SpecError(f"{prefix}{key}={value!r} is out of range {_range_text(arg)}; {arg.fix or 'use a value in range'}")
    return number


def _check_choice(key: str, value, arg: Arg, prefix: str) -> str:
    options = ", ".join(arg.choices)
    if not isinstance(value, str):
        raise SpecError(f"{prefix}{key} must be one of {options}, got {value!r}")
    if value in arg.choices:
        return value
    if _looks_like_path(value):
        raise SpecError(f"{prefix}{key}={value!r} looks like a module path; a spec is data, never code: use one of {options}")
    close = [c for c in arg.choices if c == value.lower()]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(f"{prefix}{key}={value!r} is not allowed; use one of {options}{hint}")


def _as_number(key: str, value, kind: str, prefix: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        noun = "a whole number" if kind == "int" else "a number"
        raise SpecError(f"{prefix}{key} must be {noun}, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{prefix}{key}={value!r} is not a finite number; JSON has no NaN or Infinity")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise SpecError(f"{prefix}{key} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _check_size_value(key: str, value, arg: Arg, prefix: str):
    if value is None and arg.default is None:
        return None
    sides = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sides) not in (1, 2) or any(isinstance(s, bool) or not isinstance(s, int) for s in sides):
        raise SpecError(f"{prefix}{key} must be a whole number or [height, width], got {value!r}")
    if not all(_in_range(s, arg) for s in sides):
        raise SpecError(f"{prefix}{key}={value!r} is out of range {_range_text(arg)}; {arg.fix or 'use a value in range'}")
    return sides[0] if len(sides) == 1 or sides[0] == sides[1] else sides


def _in_range(value, arg: Arg) -> bool:
    above = value > arg.low if arg.open_low else value >= arg.low
    below = value < arg.high if arg.open_high else value <= arg.high
    return above and below


def _range_text(arg: Arg) -> str:
    if arg.kind in ("int", "size") or not (arg.open_low or arg.open_high):
        return f"{arg.low:g}..{arg.high:g}" if arg.kind == "float" else f"{arg.low}..{arg.high}"
    return f"{'(' if arg.open_low else '['}{arg.low:g}, {arg.high:g}{')' if arg.open_high else ']'}"


def _describe(arg: Arg) -> str:
    if arg.kind == "choice":
        return f"one of {', '.join(arg.choices)}"
    if arg.kind == "bool":
        return "true or false"
    if arg.kind == "size":
        return f"a whole number in {_range_text(arg)}, or [height, width]"
    noun = "a whole number" if arg.kind == "int" else "a number"
    return f"{noun} in {_range_text(arg)}"


def _looks_like_path(text: str) -> bool:
    return bool(re.search(r"[.:/\\<>]", text))


def _json_kind(value) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__
