"""The spec's argument table: every layer type the spec allows and the arguments each takes, the
top-level settings, their kinds, defaults and ranges (`Arg`), and the Keras name of a spec layer.
Validation (`spec/validate.py`), shape inference (`spec/shapes.py`), the Builder's fields
(`views/builder.py`) and the Keras models (`train/models.py`) all read this one table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


INPUT_SHAPE = (32, 32, 3)  # CIFAR-10 images, height x width x channels
NUM_CLASSES = 10
MAX_LAYERS = 64
MAX_PARAMS = 50_000_000
MAX_DESCRIPTION = 2000  # characters
NAME_PATTERN = re.compile(r"[A-Za-z0-9 _.\-]{1,64}")

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
VALIDATIONS = ("holdout", "test", "none")  # none: every training image trains (a refit), no validation
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
    "refit_of": Arg("int", 0, 0, 2**31 - 1, fix="the id of the run this one refits on train + holdout; 0: not a refit"),
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


def layer_name(index: int, kind: str) -> str:
    """The Keras name of spec layer `index`: "l03_conv2d"."""
    return f"l{index:02d}_{kind.lower()}"
