"""The experiment spec: a JSON document describing one run, its validation, and a Keras-style
summary computed in pure Python (shape inference and parameter counts without TensorFlow), so the
builder page answers instantly.

Layer indexes are 0-based everywhere: `SpecError.layer`, the "layer N" in messages,
`LayerSummary.index` and the Keras layer names built from them ("l03_conv2d" is spec layer 3).
A spec is data, never code: layer types come from an allow-list and every argument is a plain
JSON value checked against its type and range.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from cifar_core.train.augment import validate_augment
from cifar_core.errors import SpecError, SpecErrors
from cifar_core.spec import jsonread
from cifar_core.train.schedules import validate_schedule

INPUT_SHAPE = (32, 32, 3)  # CIFAR-10 images, height x width x channels
NUM_CLASSES = 10
MAX_LAYERS = 64
MAX_PARAMS = 50_000_000
MAX_DESCRIPTION = 2000  # characters
NAME_PATTERN = re.compile(r"[A-Za-z0-9 _.\-]{1,64}")

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
VALIDATIONS = ("holdout", "test")
ACTIVATIONS = ("relu", "softmax", "sigmoid", "tanh", "elu", "selu", "gelu", "swish", "linear", "leaky_relu")
PADDINGS = ("valid", "same")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Arg:
    """One setting: its kind, its default (REQUIRED if it has none) and the values allowed."""

    kind: str  # "int" | "float" | "bool" | "choice" | "size" (an int or [height, width])
    default: object = REQUIRED
    low: float = 0
    high: float = 0
    open_low: bool = False  # the range excludes `low`
    open_high: bool = False  # the range excludes `high`
    choices: tuple[str, ...] = ()
    fix: str = ""  # how to repair an out-of-range value


_ACTIVATION = Arg("choice", "linear", choices=ACTIVATIONS)
_PADDING = Arg("choice", "valid", choices=PADDINGS)
_FILL = Arg("choice", "reflect", choices=FILL_MODES)
_USE_BIAS = Arg("bool", True)
_POOL = {
    "pool_size": Arg("size", 2, 1, 8, fix="2 halves the image"),
    "strides": Arg("size", None, 1, 8, fix="leave it out to step by pool_size"),  # None: = pool_size
    "padding": _PADDING,
}
_FACTOR = Arg("float", REQUIRED, 0, 0.5, fix="0.1 is a usual amount")

LAYER_ARGS: dict[str, dict[str, Arg]] = {
    "Flatten": {},
    "Dense": {
        "units": Arg("int", REQUIRED, 1, 4096, fix="use a positive width"),
        "activation": _ACTIVATION,
        "use_bias": _USE_BIAS,
    },
    "Conv2D": {
        "filters": Arg("int", REQUIRED, 1, 4096, fix="use a positive number of filters"),
        "kernel_size": Arg("size", REQUIRED, 1, 11, fix="3 is usual"),
        "strides": Arg("size", 1, 1, 4, fix="1 keeps the image size, 2 halves it"),
        "padding": _PADDING,
        "activation": _ACTIVATION,
        "use_bias": _USE_BIAS,
        # dirac: the first min(in, out) filters start as the identity (pass channel c through), the
        # rest as glorot_uniform; as airbench initialises its convolutions
        "initializer": Arg("choice", "glorot_uniform", choices=("glorot_uniform", "dirac")),
    },
    "MaxPool2D": _POOL,
    "AveragePooling2D": _POOL,
    "GlobalAveragePooling2D": {},
    "Dropout": {"rate": Arg("float", REQUIRED, 0, 1, open_high=True, fix="0.2 to 0.5 is usual")},
    "BatchNormalization": {
        "momentum": Arg("float", 0.99, 0, 1, open_high=True, fix="0.99 is the Keras default"),
        "epsilon": Arg("float", 1e-3, 0, 0.1, open_low=True, fix="0.001 is the Keras default"),
        "scale": Arg("bool", True),  # false: no gamma, the output is only normalised and shifted (airbench)
    },
    "Activation": {"activation": Arg("choice", REQUIRED, choices=ACTIVATIONS)},
    # Two conv-BN-ReLU of `filters` channels (same padding, no bias) added back to the input: an
    # identity shortcut, so the input must already have `filters` channels.
    "ResidualBlock": {
        "filters": Arg("int", REQUIRED, 1, 4096, fix="use the input's channel count"),
        "kernel_size": Arg("int", 3, 1, 11, fix="3 is usual"),
    },
    # A frozen first convolution that whitens the training images' patches (train/whitening.py):
    # kernel_size**2 * channels filters, twice that with the negated copies; valid padding, stride 1.
    "Whitening": {
        "kernel_size": Arg("int", 2, 2, 3, fix="2 or 3 pixels: the side of the whitened patches"),
        "epsilon": Arg("float", 5e-4, 0, 0.1, open_low=True, fix="5e-4 is airbench's; larger damps the faint directions"),
        "negatives": Arg("bool", True),
        "bias_epochs": Arg("int", 3, 0, 1000, fix="0 never trains the bias; 3 is airbench's"),
    },
    "RandomFlip": {"mode": Arg("choice", "horizontal_and_vertical", choices=FLIP_MODES)},
    "RandomTranslation": {"height_factor": _FACTOR, "width_factor": _FACTOR, "fill_mode": _FILL},
    "RandomRotation": {"factor": _FACTOR, "fill_mode": _FILL},
}
LAYER_ALIASES = {"MaxPooling2D": "MaxPool2D", "AvgPool2D": "AveragePooling2D"}
AUGMENT_LAYERS = frozenset({"RandomFlip", "RandomTranslation", "RandomRotation"})  # no-ops at inference
IMAGE_LAYERS = frozenset(
    {"Conv2D", "Whitening", "ResidualBlock", "MaxPool2D", "AveragePooling2D", "GlobalAveragePooling2D", "RandomFlip", "RandomTranslation", "RandomRotation"}
)
_KEY_HINTS = {
    "name": "layer names are generated from the index (l03_conv2d)",
    "input_shape": "the input shape comes from the dataset",
    "kernel_regularizer": "regularizer objects are not supported; use the spec's weight_decay with adamw or sgd",
    "bias_regularizer": "regularizer objects are not supported; use the spec's weight_decay with adamw or sgd",
    "kernel_initializer": "initializers are the Keras defaults, seeded from the spec's seed",
    "class_name": "write the layer as {\"type\": \"Dense\", \"units\": 64}, not Keras's class_name/config form",
    "config": "write the layer as {\"type\": \"Dense\", \"units\": 64}, not Keras's class_name/config form",
}

MUON_LAYERS = frozenset({"Conv2D", "ResidualBlock"})  # the layers whose kernels Muon steps (4-D)
TOP_ARGS: dict[str, Arg] = {
    "optimizer": Arg("choice", "adam", choices=OPTIMIZERS),
    "learning_rate": Arg("float", 1e-3, 0, 10, open_low=True, fix="0.001 suits adam, 0.01 to 0.1 suits sgd"),
    "momentum": Arg("float", 0.0, 0, 1, open_high=True, fix="0.9 is usual with sgd"),
    "nesterov": Arg("bool", False),
    "weight_decay": Arg("float", 0.0, 0, 0.5, fix="values like 0.0005 are usual"),
    "decay_biases": Arg("bool", False),
    "epochs": Arg("int", 10, 1, 1000, fix="use 1 to 1000 passes over the data"),
    "batch_size": Arg("int", 32, 1, 8192, fix="32 to 512 is usual"),
    "seed": Arg("int", 0, 0, 2**31 - 1, fix="use a non-negative 31-bit integer"),
    "validation": Arg("choice", "holdout", choices=VALIDATIONS),
    "label_smoothing": Arg("float", 0.0, 0, 0.5, fix="0.1 is usual"),
    "tta_flip": Arg("bool", False),
    "tta_shift": Arg("int", 0, 0, 4, fix="0 turns it off; 2 pixels suits images trained with 2-pixel shifts"),
    "logit_scale": Arg("float", 1.0, 0, 100, open_low=True, fix="1 leaves them alone; airbench divides them by 9 (0.111)"),
    "ema_momentum": Arg("float", 0.0, 0, 1, open_high=True, fix="0 turns it off; 0.99 to 0.999 is usual"),
    "ema_warmup": Arg("float", 0.0, 0, 8, fix="0 keeps ema_momentum fixed; airbench's average grows with power 3 "
                      "of its 5-step updates, 0.6 per step"),
    "lookahead_steps": Arg("int", 0, 0, 1000, fix="0 turns it off; airbench resets every 5 steps"),
    "bn_bias_lr_multiplier": Arg("float", 1.0, 0, 256, open_low=True, fix="1 trains them like the rest; airbench uses 64"),
    "muon_learning_rate": Arg("float", 0.0, 0, 10, fix="0 turns it off; airbench94_muon uses 0.24"),
    "muon_momentum": Arg("float", 0.6, 0, 1, open_high=True, fix="airbench94_muon uses 0.6"),
}
EARLY_STOPPING_ARGS: dict[str, Arg] = {
    "patience": Arg("int", REQUIRED, 1, 1000, fix="5 to 10 epochs is usual"),
    "monitor": Arg("choice", "val_accuracy", choices=("val_accuracy", "val_loss")),
    "min_delta": Arg("float", 0.0, 0, 1, fix="0 counts any improvement"),
}
# the settings only some optimizers read, and those optimizers (the Builder hides them for the others)
OPTIMIZER_USERS: dict[str, tuple[str, ...]] = {
    "momentum": ("sgd", "rmsprop"), "nesterov": ("sgd",), "weight_decay": ("adamw", "sgd"), "decay_biases": ("adamw", "sgd"),
}


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
    # "test": validate on the test set each epoch (notebook style)
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

    def to_dict(self) -> dict:
        """A JSON-ready dict that `parse_spec` turns back into an equal spec."""
        return {f.name: copy.deepcopy(_jsonable(getattr(self, f.name))) for f in fields(self)}


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ExperimentSpec))
SPEC_DEFAULTS: dict[str, object] = {  # every setting that has a default, at it
    f.name: f.default_factory() if f.default_factory is not MISSING else f.default
    for f in fields(ExperimentSpec) if f.default is not MISSING or f.default_factory is not MISSING
}


@dataclass(frozen=True)
class LayerSummary:
    index: int  # 0-based position in the spec's layers
    type: str
    output_shape: tuple[int | None, ...]  # with the batch dimension first, as None
    params: int
    trainable: int

    @property
    def name(self) -> str:
        return layer_name(self.index, self.type)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    input_shape: tuple
    layers: tuple[LayerSummary, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "layers": [
                {
                    "index": s.index,
                    "name": s.name,
                    "type": s.type,
                    "output_shape": list(s.output_shape),
                    "params": s.params,
                    "trainable": s.trainable,
                }
                for s in self.layers
            ],
        }

    def to_text(self) -> str:
        """A table like Keras's `model.summary()`, including the "rescale" layer the model starts with."""
        rows = [("rescale (Rescaling)", _shape_text((None, *self.input_shape)), "0")]
        rows += [(f"{s.name} ({s.type})", _shape_text(s.output_shape), f"{s.params:,}") for s in self.layers]
        w1 = max(30, max(len(r[0]) for r in rows) + 2)
        w2 = max(24, max(len(r[1]) for r in rows) + 2)
        w3 = max(12, max(len(r[2]) for r in rows) + 1)
        width = w1 + w2 + w3 + 2
        lines = [f'Model: "{self.name}"', "_" * width]
        lines.append(f" {'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>{w3}}")
        lines.append("=" * width)
        for k, (col1, col2, col3) in enumerate(rows):
            lines.append(f" {col1:<{w1}}{col2:<{w2}}{col3:>{w3}}")
            lines.append(("=" if k == len(rows) - 1 else "_") * width)
        for label, count in (
            ("Total params", self.total_params),
            ("Trainable params", self.trainable_params),
            ("Non-trainable params", self.non_trainable_params),
        ):
            lines.append(f" {label}: {count:,} ({_memory_text(count * 4)})")  # float32 weights
        lines.append("_" * width)
        return "\n".join(lines)


def layer_name(index: int, kind: str) -> str:
    """The Keras name of spec layer `index`: "l03_conv2d"."""
    return f"l{index:02d}_{kind.lower()}"


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


def summarize(spec_or_doc, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> ModelSummary:
    """Output shape and parameter count of every layer, as Keras would report them; raises SpecErrors."""
    doc = spec_or_doc.to_dict() if isinstance(spec_or_doc, ExperimentSpec) else spec_or_doc
    spec, summaries, errors = _validate(doc, input_shape, num_classes)
    if errors:
        raise SpecErrors(errors)
    total = sum(s.params for s in summaries)
    trainable = sum(s.trainable for s in summaries)
    return ModelSummary(spec.name, tuple(input_shape), tuple(summaries), total, trainable, total - trainable)


def summarize_prefix(doc: dict, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES) -> ModelSummary | None:
    """The summary of the layers as far as they can be read: every layer when their shapes work
    out (even if another setting is wrong), else up to the first layer with a problem; None when
    not even the first layer can be summarised. Never raises on a bad document."""
    _, summaries, _ = _validate(doc, input_shape, num_classes)
    if not summaries:
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    total = sum(s.params for s in summaries)
    trainable = sum(s.trainable for s in summaries)
    return ModelSummary(name if isinstance(name, str) else "experiment", tuple(input_shape), tuple(summaries), total,
                        trainable, total - trainable)


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


# --- shape inference ------------------------------------------------------------------------


def _infer(layers: list[dict], input_shape, errors: list[SpecError]) -> list[LayerSummary]:
    """Summaries of `layers` in order, stopping at the first shape problem (appended to `errors`)."""
    shape = tuple(input_shape)
    flattened_by: tuple[int, str] | None = None  # the layer that turned the image into a vector
    summaries = []
    for i, layer in enumerate(layers):
        try:
            fed_by = (i - 1, layers[i - 1]["type"]) if i else None
            new_shape, params, trainable = _infer_layer(i, layer, shape, flattened_by, fed_by)
        except SpecError as exc:
            errors.append(exc)
            break
        if len(shape) == 3 and len(new_shape) == 1:
            flattened_by = (i, layer["type"])
        shape = new_shape
        summaries.append(LayerSummary(i, layer["type"], (None, *shape), params, trainable))
    return summaries


def _infer_layer(i: int, layer: dict, shape: tuple, flattened_by, fed_by=None) -> tuple[tuple, int, int]:
    """(output shape without the batch dimension, params, trainable params) of one layer.
    `flattened_by` is the layer that turned the image into a vector, `fed_by` the one just before."""
    kind = layer["type"]
    where = f"layer {i} ({kind})"
    if kind in IMAGE_LAYERS and len(shape) != 3:
        # Name the layer whose output it gets (a Dense after the Flatten, say), then where to move it.
        source = f" from layer {fed_by[0]} ({fed_by[1]})" if fed_by else ""
        if flattened_by and fed_by and fed_by[0] != flattened_by[0]:
            source += f", a vector since layer {flattened_by[0]} ({flattened_by[1]}) flattened the image"
        move = f"move it before layer {flattened_by[0]}" if flattened_by else "move it before the Flatten"
        raise SpecError(
            f"{where} gets a {len(shape) + 1}-D input {_shape_text(shape)}{source}: it needs an image "
            f"(height, width, channels); {move}",
            layer=i,
        )
    if kind == "Dense":
        if len(shape) != 1:
            raise SpecError(
                f"{where} gets a {len(shape) + 1}-D input {_shape_text(shape)}: add a Flatten or "
                "GlobalAveragePooling2D before it",
                layer=i,
            )
        params = shape[0] * layer["units"] + (layer["units"] if layer["use_bias"] else 0)
        return (layer["units"],), params, params
    if kind == "Conv2D":
        height, width, channels = shape
        kh, kw = _pair(layer["kernel_size"])
        out = _window_output(where, i, "kernel", (height, width), (kh, kw), _pair(layer["strides"]), layer["padding"])
        params = kh * kw * channels * layer["filters"] + (layer["filters"] if layer["use_bias"] else 0)
        return (*out, layer["filters"]), params, params
    if kind == "Whitening":
        height, width, channels = shape
        k = layer["kernel_size"]
        out = _window_output(where, i, "patch", (height, width), (k, k), (1, 1), "valid")
        filters = k * k * channels * (2 if layer["negatives"] else 1)
        bias = filters if layer["bias_epochs"] > 0 else 0  # the kernel never trains
        return (*out, filters), k * k * channels * filters + filters, bias
    if kind == "ResidualBlock":
        channels, filters, k = shape[2], layer["filters"], layer["kernel_size"]
        if channels != filters:
            raise SpecError(
                f"{where}: filters={filters} must equal the input's {channels} channels (the shortcut adds "
                f"the input back); set filters to {channels} or put a Conv2D with {filters} filters before it",
                layer=i,
            )
        convs = 2 * k * k * filters * filters
        return shape, convs + 2 * 4 * filters, convs + 2 * 2 * filters
    if kind in ("MaxPool2D", "AveragePooling2D"):
        size, strides = _pair(layer["pool_size"]), _pair(layer["strides"])
        return (*_window_output(where, i, "pool", shape[:2], size, strides, layer["padding"]), shape[2]), 0, 0
    if kind == "Flatten":
        return (math.prod(shape),), 0, 0
    if kind == "GlobalAveragePooling2D":
        return (shape[2],), 0, 0
    if kind == "BatchNormalization":
        trained = 2 if layer["scale"] else 1  # gamma (unless scale is off) and beta; moving statistics do not train
        return shape, (trained + 2) * shape[-1], trained * shape[-1]
    return shape, 0, 0  # Dropout, Activation, Random*: shape-preserving, no weights


def _check_whitening_place(layers: list[dict]) -> list[SpecError]:
    """A Whitening layer must see the pixels its filters were computed from: only augmentation
    layers (no-ops at inference) may come before it."""
    errors = []
    for i, layer in enumerate(layers):
        before = [j for j in range(i) if layers[j]["type"] not in AUGMENT_LAYERS]
        if layer["type"] == "Whitening" and before:
            errors.append(SpecError(
                f"layer {i} (Whitening) must come first (only Random* augmentation layers before it): its filters "
                f"are computed from the training images' pixels, and layer {before[0]} ({layers[before[0]]['type']}) "
                "changes them; move it to position 0",
                layer=i,
            ))
    return errors


def _window_output(where: str, i: int, noun: str, size, window, strides, padding: str) -> tuple[int, int]:
    """Output height and width of a convolution or pooling window, with Keras's formulas."""
    if padding == "same":
        return tuple(-(-n // s) for n, s in zip(size, strides))  # ceil(n / s)
    if size[0] < window[0] or size[1] < window[1]:
        raise SpecError(
            f"{where}: input {size[0]}x{size[1]} is smaller than {noun} {window[0]}x{window[1]}; "
            "remove the layer or use padding 'same'",
            layer=i,
        )
    return tuple((n - k) // s + 1 for n, k, s in zip(size, window, strides))


def _check_last_layer(i: int, layer: dict, num_classes: int) -> list[SpecError]:
    want = f"Dense(units={num_classes}, activation='softmax')"
    if layer["type"] == "Dense":
        if layer["units"] == num_classes and layer["activation"] == "softmax":
            return []
        got = f"got units={layer['units']}, activation={layer['activation']!r}"
        return [SpecError(f"layer {i} (Dense): the last layer must be {want} to output class probabilities; {got}", layer=i)]
    return [SpecError(
        f"layer {i} ({layer['type']}): the last layer must be {want} to output class probabilities; add it at the end",
        layer=i,
    )]


def _check_size(summaries: list[LayerSummary]) -> list[SpecError]:
    total = sum(s.params for s in summaries)
    if total <= MAX_PARAMS:
        return []
    big = max(summaries, key=lambda s: s.params)
    return [SpecError(
        f"the model has {total:,} parameters, over the limit of {MAX_PARAMS:,}; layer {big.index} ({big.type}) "
        f"alone has {big.params:,}: use fewer units or filters, or pool before the Flatten",
        layer=big.index,
        field="layers",
    )]


# --- small helpers --------------------------------------------------------------------------


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("None" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _memory_text(size: float) -> str:
    """Bytes as Keras's summary prints them: "478.79 KB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TB"


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


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
