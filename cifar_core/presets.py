"""The five experiments of the original notebook, as built-in spec documents.

They keep the notebook's settings: the test set as validation data, batch 32, seed 0, the same
optimizer, rate and epochs. Parameter counts (checked by tests/test_spec.py):
exp1 30,840 / exp2 110,058 / exp3 265,834 / exp4 122,570 / exp5 196,426.
"""

from __future__ import annotations

import json

from .errors import SpecError


def _dense(units: int, activation: str = "relu") -> dict:
    return {"type": "Dense", "units": units, "activation": activation}


def _conv(filters: int, kernel_size: int, padding: str = "valid") -> dict:
    return {"type": "Conv2D", "filters": filters, "kernel_size": kernel_size, "padding": padding, "activation": "relu"}


_POOL = {"type": "MaxPool2D", "pool_size": 2}
_FLATTEN = {"type": "Flatten"}
_DROPOUT = {"type": "Dropout", "rate": 0.2}
_OUTPUT = _dense(10, "softmax")


def _notebook(name: str, description: str, layers: list[dict], learning_rate: float, epochs: int) -> dict:
    return {
        "name": name,
        "description": description,
        "layers": layers,
        "optimizer": "adam",
        "learning_rate": learning_rate,
        "epochs": epochs,
        "batch_size": 32,
        "seed": 0,
        "validation": "test",
    }


PRESET_TITLES: dict[str, str] = {
    "exp1": "Dense 10 relu",
    "exp2": "Dense 32-64-128",
    "exp3": "Conv16 5x5",
    "exp4": "Conv32-64-64",
    "exp5": "Conv + Dropout",
}

PRESETS: dict[str, dict] = {
    "exp1": _notebook(
        "exp1",
        "Dense 10 relu: the notebook's first try, flattened pixels into one hidden layer of 10 ReLU "
        "units, Adam at lr 0.01. It never learned: accuracy stayed at 10%, chance level for 10 "
        "classes. A 10-unit bottleneck trained at a high rate can lose every unit to dead ReLUs.",
        [_FLATTEN, _dense(10), _OUTPUT],
        learning_rate=0.01,
        epochs=20,
    ),
    "exp2": _notebook(
        "exp2",
        "Dense 32-64-128: a deeper fully connected net on flattened pixels, Adam at lr 0.001 for 40 "
        "epochs. The notebook reached about 45% validation accuracy: a dense net ignores the "
        "spatial layout of the image, so it stays well below the convolutional nets.",
        [_FLATTEN, _dense(32), _dense(64), _dense(128), _OUTPUT],
        learning_rate=0.001,
        epochs=40,
    ),
    "exp3": _notebook(
        "exp3",
        "Conv16 5x5: the first convolutional net, 16 filters of 5x5 with 'same' padding, a 2x2 "
        "max-pool, then dense 64 and 32. Adam at a small lr 0.0001 for only 10 epochs: the notebook reached about 57% "
        "validation accuracy, still improving when training stopped.",
        [_conv(16, 5, "same"), _POOL, _FLATTEN, _dense(64), _dense(32), _OUTPUT],
        learning_rate=0.0001,
        epochs=10,
    ),
    "exp4": _notebook(
        "exp4",
        "Conv32-64-64: the classic TensorFlow CNN tutorial net (3x3 convolutions of 32, 64 and 64 "
        "filters with 2x2 max-pools, dense 64). Adam at lr 0.001 for 20 epochs: the notebook reached about 72% validation "
        "accuracy with 91% on training: it overfits, the validation loss rises while training "
        "accuracy keeps climbing.",
        [_conv(32, 3), _POOL, _conv(64, 3), _POOL, _conv(64, 3), _FLATTEN, _dense(64), _OUTPUT],
        learning_rate=0.001,
        epochs=20,
    ),
    "exp5": _notebook(
        "exp5",
        "Conv + Dropout: exp4's convolutions with Dropout 0.2 after each pool and dense layer, and "
        "a wider dense head (128 then 64). Adam at lr 0.001 for 10 epochs: the notebook's best, about 75.6% validation "
        "accuracy; dropout narrows the gap between training and validation that exp4 shows.",
        [
            _conv(32, 3), _POOL, _DROPOUT,
            _conv(64, 3), _POOL, _DROPOUT,
            _conv(64, 3), _FLATTEN,
            _dense(128), _DROPOUT,
            _dense(64), _DROPOUT,
            _OUTPUT,
        ],
        learning_rate=0.001,
        epochs=10,
    ),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> dict:
    """A deep copy of the preset's spec document; SpecError listing the presets if unknown."""
    if name not in PRESETS:
        raise SpecError(f"no preset named {name!r}: use one of {', '.join(PRESETS)}", field="name")
    return json.loads(json.dumps(PRESETS[name]))  # not deepcopy: presets share layer dicts, copies must not
