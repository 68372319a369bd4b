"""The spec: validation messages, normalisation, round trips, presets and the pure-Python summary.

No TensorFlow here; tests/test_models.py checks the same summaries against real Keras models.
"""

from __future__ import annotations

import json

import pytest
from networks import NOTEBOOK_LAYERS, PRESET_PARAMS

from cifar_core.errors import SpecError, SpecErrors
from cifar_core.spec.presets import NOTEBOOK_PRESETS, PRESET_TITLES, PRESETS, get_preset, preset_names
from cifar_core.spec.layers import layer_name
from cifar_core.spec.schema import ExperimentSpec
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import check_spec, load_spec, parse_spec

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}
FLAT = {"type": "Flatten"}


def doc(*layers, **settings) -> dict:
    return {"name": "t", "layers": list(layers), **settings}


def conv(filters=8, kernel_size=3, **kw) -> dict:
    return {"type": "Conv2D", "filters": filters, "kernel_size": kernel_size, **kw}


def one_error(d: dict, **dims) -> SpecError:
    errors = check_spec(d, **dims)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --- parsing and normalisation ------------------------------------------------------------------


def test_defaults_are_filled_in():
    spec = parse_spec(doc(conv(), {"type": "MaxPooling2D"}, FLAT, OUT))
    assert spec.optimizer == "adam" and spec.learning_rate == 1e-3 and spec.epochs == 10
    assert spec.validation == "holdout" and spec.schedule == {"type": "constant"} and spec.augment == {}
    assert spec.early_stopping is None and spec.description == ""
    assert spec.layers[0] == {
        "type": "Conv2D", "filters": 8, "kernel_size": 3, "strides": 1, "padding": "valid",
        "activation": "linear", "use_bias": True, "initializer": "glorot_uniform",
    }
    # the alias is resolved and strides default to the pool size, as in Keras
    assert spec.layers[1] == {"type": "MaxPool2D", "pool_size": 2, "strides": 2, "padding": "valid"}


def test_non_square_sizes_stay_pairs_and_square_pairs_become_ints():
    spec = parse_spec(doc(conv(kernel_size=[3, 5], strides=[2, 2]), {"type": "AvgPool2D", "pool_size": [2, 3]}, FLAT, OUT))
    assert spec.layers[0]["kernel_size"] == [3, 5] and spec.layers[0]["strides"] == 2
    assert spec.layers[1]["type"] == "AveragePooling2D" and spec.layers[1]["strides"] == [2, 3]


def test_round_trip_through_dict_and_json():
    d = doc(
        {"type": "RandomFlip", "mode": "horizontal"}, conv(16, [3, 5], padding="same", activation="relu"),
        {"type": "BatchNormalization"}, {"type": "GlobalAveragePooling2D"}, {"type": "Dropout", "rate": 0.3}, OUT,
        optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4, schedule={"type": "cosine"},
        augment={"flip": True, "translate": 2}, label_smoothing=0.1, tta_flip=True,
        early_stopping={"patience": 3}, description="round trip",
    )
    spec = parse_spec(d)
    data = spec.to_dict()
    assert parse_spec(data) == spec
    assert parse_spec(json.dumps(data)) == spec
    assert json.loads(json.dumps(data)) == data
    assert data["early_stopping"] == {"patience": 3, "monitor": "val_accuracy", "min_delta": 0.0}


def test_to_dict_is_a_copy():
    spec = parse_spec(get_preset("exp4"))
    data = spec.to_dict()
    data["layers"][0]["filters"] = 999
    assert spec.layers[0]["filters"] == 32


# --- top-level settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, field, message",
    [
        ({"optimizer": "adagrad"}, "optimizer", r"optimizer='adagrad' is not allowed; use one of adam, adamw, sgd, rmsprop"),
        ({"learning_rate": 0}, "learning_rate", r"learning_rate=0 is out of range \(0, 10\]"),
        ({"learning_rate": "0.1"}, "learning_rate", r"learning_rate must be a number, got '0.1'"),
        ({"batch_size": 9000}, "batch_size", r"batch_size=9000 is out of range 1\.\.8192"),
        ({"epochs": 2.5}, "epochs", r"epochs must be a whole number, got 2.5"),
        ({"seed": -1}, "seed", r"seed=-1 is out of range 0\.\.2147483647"),
        ({"validation": "val"}, "validation", r"validation='val' is not allowed; use one of holdout, test"),
        ({"label_smoothing": 0.6}, "label_smoothing", r"label_smoothing=0.6 is out of range 0\.\.0\.5"),
        ({"tta_flip": 1}, "tta_flip", r"tta_flip must be true or false, got 1"),
        ({"tta_shift": 5}, "tta_shift", r"tta_shift=5 is out of range 0\.\.4; 0 turns it off"),
        ({"momentum": 0.9}, "momentum", r"momentum=0.9 only applies to sgd and rmsprop, not adam"),
        ({"optimizer": "rmsprop", "nesterov": True}, "nesterov", r"nesterov only applies to sgd, not rmsprop"),
        ({"weight_decay": 0.01}, "weight_decay", r"weight_decay=0.01 only applies to adamw and sgd, not adam; use 'adamw'"),
        ({"name": "a/b"}, "name", r"name 'a/b' must be 1\.\.64 letters, digits, spaces or _ - \. characters"),
        ({"name": "x" * 65}, "name", r"must be 1\.\.64 letters"),
        ({"schedule": {"type": "warm"}}, "schedule", r"schedule type 'warm' is unknown"),
        ({"schedule": {"type": ["cosine"]}}, "schedule", r"schedule type must be a name such as 'cosine'"),
        ({"augment": {"mixup": True}}, "augment", r"augment takes no 'mixup'"),
        ({"early_stopping": {"patience": 0}}, "early_stopping", r"early_stopping: patience=0 is out of range 1\.\.1000"),
        ({"early_stopping": {}}, "early_stopping", r"early_stopping needs 'patience': a whole number in 1\.\.1000"),
        ({"early_stopping": {"patience": 2, "monitor": "loss"}}, "early_stopping", r"monitor='loss' is not allowed; use one of val_accuracy, val_loss"),
        ({"early_stopping": 5}, "early_stopping", r"early_stopping must be null or an object"),
        ({"lr": 0.1}, "lr", r"unknown setting 'lr': allowed keys are name, layers, optimizer, learning_rate"),
    ],
)
def test_top_level_errors_name_the_field(settings, field, message):
    error = one_error({**doc(FLAT, OUT), **settings})
    assert error.field == field and error.layer is None
    with pytest.raises(SpecErrors, match=message):
        parse_spec({**doc(FLAT, OUT), **settings})


def test_optimizer_specific_settings_are_accepted_where_they_apply():
    assert parse_spec(doc(FLAT, OUT, optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4)).nesterov
    assert parse_spec(doc(FLAT, OUT, optimizer="adamw", weight_decay=0.05)).weight_decay == 0.05
    assert parse_spec(doc(FLAT, OUT, optimizer="rmsprop", momentum=0.5)).momentum == 0.5


def test_missing_name_and_layers():
    errors = check_spec({})
    assert [e.field for e in errors] == ["name", "layers"]
    assert "name is missing" in str(errors[0]) and "layers is missing" in str(errors[1])


def test_spec_must_be_an_object():
    with pytest.raises(SpecErrors, match=r"a spec must be a JSON object .*, got a list"):
        parse_spec([FLAT, OUT])


def test_json_text_errors_give_line_and_column():
    with pytest.raises(SpecErrors, match=r"spec is not valid JSON: Expecting value at line 2 column 12"):
        parse_spec('{"name": "t",\n "layers": }')
    with pytest.raises(SpecErrors, match=r"holds NaN, which is not JSON"):
        parse_spec('{"name": "t", "layers": [], "learning_rate": NaN}')
    with pytest.raises(SpecErrors, match=r"has the key 'epochs' twice"):
        parse_spec('{"name": "t", "epochs": 1, "epochs": 2, "layers": []}')


# --- layers: arguments and types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, field, message",
    [
        ({"type": "Dense", "units": 0}, "units", r"layer 1 \(Dense\): units=0 is out of range 1\.\.4096; use a positive width"),
        ({"type": "Dense", "units": 5000}, "units", r"units=5000 is out of range 1\.\.4096"),
        ({"type": "Dense", "units": "64"}, "units", r"layer 1 \(Dense\): units must be a whole number, got '64'"),
        ({"type": "Dense"}, "units", r"layer 1 \(Dense\) needs 'units': a whole number in 1\.\.4096"),
        ({"type": "Dense", "units": 8, "activation": "relu6"}, "activation", r"activation='relu6' is not allowed; use one of relu, softmax"),
        ({"type": "Dense", "units": 8, "activation": "ReLU"}, "activation", r"did you mean 'relu'\?"),
        ({"type": "Dense", "units": 8, "activation": "tensorflow.nn.relu"}, "activation", r"activation='tensorflow.nn.relu' looks like a module path; a spec is data, never code"),
        ({"type": "Dense", "units": 8, "activation": {"class_name": "ReLU"}}, "activation", r"layer 1 \(Dense\): activation must be a plain value, not an object"),
        ({"type": "Dense", "units": 8, "use_bias": "yes"}, "use_bias", r"use_bias must be true or false"),
        ({"type": "Dense", "units": 8, "kernel_regularizer": {"l2": 0.01}}, "kernel_regularizer", r"layer 1 \(Dense\) takes no 'kernel_regularizer': allowed keys are type, units, activation, use_bias \(regularizer objects are not supported"),
        ({"type": "Dense", "units": [8]}, "units", r"units must be a single value, not a list"),
        ({"type": "Dense", "units": float("inf")}, "units", r"units=inf is not a finite number"),
        ({"type": "Dense", "units": 8, "activation": print}, "activation", r"is not a JSON value \(builtin_function_or_method\)"),
        (conv(kernel_size=12), "kernel_size", r"layer 1 \(Conv2D\): kernel_size=12 is out of range 1\.\.11"),
        (conv(kernel_size=[3, 3, 3]), "kernel_size", r"kernel_size must be a whole number or \[height, width\], got \[3, 3, 3\]"),
        (conv(strides=5), "strides", r"strides=5 is out of range 1\.\.4"),
        (conv(padding="causal"), "padding", r"padding='causal' is not allowed; use one of valid, same"),
        (conv(filters=0), "filters", r"filters=0 is out of range 1\.\.4096"),
        ({"type": "MaxPool2D", "pool_size": 9}, "pool_size", r"layer 1 \(MaxPool2D\): pool_size=9 is out of range 1\.\.8"),
        ({"type": "Dropout", "rate": 1.0}, "rate", r"layer 1 \(Dropout\): rate=1.0 is out of range \[0, 1\)"),
        ({"type": "BatchNormalization", "epsilon": 0}, "epsilon", r"epsilon=0 is out of range \(0, 0.1\]"),
        ({"type": "BatchNormalization", "momentum": 1}, "momentum", r"momentum=1 is out of range \[0, 1\)"),
        ({"type": "Activation"}, "activation", r"layer 1 \(Activation\) needs 'activation': one of relu"),
        ({"type": "RandomFlip", "mode": "diagonal"}, "mode", r"mode='diagonal' is not allowed; use one of horizontal, vertical"),
        ({"type": "RandomTranslation", "height_factor": 0.6, "width_factor": 0.1}, "height_factor", r"height_factor=0.6 is out of range 0\.\.0\.5"),
        ({"type": "RandomRotation", "factor": -0.1}, "factor", r"layer 1 \(RandomRotation\): factor=-0.1 is out of range 0\.\.0\.5"),
        ({"type": "Flatten", "name": "f"}, "name", r"layer 1 \(Flatten\) takes no 'name': allowed keys are type \(layer names are generated"),
    ],
)
def test_layer_argument_errors_name_layer_and_field(layer, field, message):
    d = doc(conv(), layer, FLAT, OUT)
    error = one_error(d)
    assert error.layer == 1 and error.field == field
    with pytest.raises(SpecErrors, match=message):
        parse_spec(d)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"type": "Lambda", "function": "lambda x: x"}, r"layer 2: type 'Lambda' is not allowed; use one of Flatten, Dense, Conv2D, .*\(no Lambda layers or custom objects: a spec is data, never code\)"),
        ({"type": "MyCustomLayer"}, r"layer 2: type 'MyCustomLayer' is not allowed; use one of Flatten"),
        ({"type": "keras.layers.Dense", "units": 4}, r"'keras.layers.Dense' looks like a module path, write 'Dense'"),
        ({"type": "__main__:Evil"}, r"'__main__:Evil' looks like a module path"),
        ({"type": "dense", "units": 4}, r"type 'dense' is not allowed.*did you mean 'Dense'\?"),
        ({"type": 3}, r"layer 2: type must be a layer name such as 'Dense', got 3"),
        ({"class_name": "Dense", "config": {"units": 4}}, r"layer 2 has no 'type' \(Keras's class_name/config form is not read\)"),
        ("Dense", r"layer 2 must be an object like"),
    ],
)
def test_layer_types_are_an_allow_list(layer, message):
    d = doc(FLAT, {"type": "Dropout", "rate": 0.1}, layer, OUT)
    error = one_error(d)
    assert error.layer == 2
    with pytest.raises(SpecErrors, match=message):
        parse_spec(d)


def test_layer_count_limits():
    with pytest.raises(SpecErrors, match=r"layers is empty: add at least one"):
        parse_spec(doc())
    with pytest.raises(SpecErrors, match=r"layers has 65 entries, over the limit of 64"):
        parse_spec(doc(FLAT, *[{"type": "Dropout", "rate": 0.1}] * 63, OUT))
    assert len(parse_spec(doc(FLAT, *[{"type": "Dropout", "rate": 0.1}] * 62, OUT)).layers) == 64
    with pytest.raises(SpecErrors, match=r"layers must be a list"):
        parse_spec({"name": "t", "layers": {"type": "Flatten"}})


# --- shape inference errors ---------------------------------------------------------------------


def test_dense_on_an_image_asks_for_flatten():
    d = doc(conv(64, padding="same"), {"type": "MaxPool2D"}, {"type": "MaxPool2D"}, {"type": "Dense", "units": 8}, FLAT, OUT)
    error = one_error(d)
    assert error.layer == 3
    with pytest.raises(SpecErrors, match=r"^layer 3 \(Dense\) gets a 4-D input \(8, 8, 64\): add a Flatten or GlobalAveragePooling2D before it$"):
        parse_spec(d)


@pytest.mark.parametrize("kind", ["Conv2D", "MaxPool2D", "GlobalAveragePooling2D", "RandomFlip"])
def test_image_layers_after_flatten(kind):
    layer = conv() if kind == "Conv2D" else {"type": kind}
    d = doc({"type": "Dropout", "rate": 0.1}, FLAT, {"type": "Dense", "units": 4}, layer, OUT)
    assert one_error(d).layer == 3
    # Issue 14: it gets its input from the Dense before it, not from the Flatten (which the message
    # used to name as the source, "from layer 1 (Flatten)").
    with pytest.raises(SpecErrors, match=rf"layer 3 \({kind}\) gets a 2-D input \(4,\) from layer 2 \(Dense\), a vector since "
                                         rf"layer 1 \(Flatten\) flattened the image: it needs an image .*; move it before layer 1"):
        parse_spec(d)


def test_an_image_layer_right_after_the_flatten_names_the_flatten():
    d = doc(FLAT, conv(), {"type": "Dense", "units": 4}, OUT)
    with pytest.raises(SpecErrors, match=r"layer 1 \(Conv2D\) gets a 2-D input \(\d+,\) from layer 0 \(Flatten\): it needs an image"):
        parse_spec(d)


def test_a_conv_after_the_last_dense_names_that_dense():
    d = doc(conv(), FLAT, {"type": "Dense", "units": 4}, OUT, conv())
    messages = [str(e) for e in check_spec(d)]
    assert messages[0].startswith("layer 4 (Conv2D) gets a 2-D input (10,) from layer 3 (Dense), a vector since layer 1 (Flatten)")
    assert "(Flatten):" not in messages[0]


def test_pool_that_shrinks_the_image_below_one_pixel():
    pools = [{"type": "MaxPool2D", "pool_size": 8}, {"type": "MaxPool2D", "pool_size": 4}]  # 32 -> 4 -> 1
    assert summarize(doc(*pools, FLAT, OUT)).layers[1].output_shape == (None, 1, 1, 3)
    d = doc(*pools, {"type": "Dropout", "rate": 0.1}, {"type": "MaxPool2D"}, FLAT, OUT)
    assert one_error(d).layer == 3
    with pytest.raises(SpecErrors, match=r"^layer 3 \(MaxPool2D\): input 1x1 is smaller than pool 2x2; remove the layer or use padding 'same'$"):
        parse_spec(d)
    d["layers"][3]["padding"] = "same"  # 'same' padding never shrinks below 1x1
    assert summarize(d).layers[3].output_shape == (None, 1, 1, 3)


def test_kernel_larger_than_the_image():
    d = doc({"type": "MaxPool2D", "pool_size": 8}, conv(kernel_size=5), FLAT, OUT)
    assert one_error(d).layer == 1
    with pytest.raises(SpecErrors, match=r"layer 1 \(Conv2D\): input 4x4 is smaller than kernel 5x5; remove the layer or use padding 'same'"):
        parse_spec(d)
    non_square = doc(conv(kernel_size=[1, 11], strides=[1, 4]), conv(kernel_size=[2, 7]), FLAT, OUT)
    with pytest.raises(SpecErrors, match=r"layer 1 \(Conv2D\): input 32x6 is smaller than kernel 2x7"):
        parse_spec(non_square)


@pytest.mark.parametrize(
    "last, message",
    [
        ({"type": "Dense", "units": 5, "activation": "softmax"}, r"layer 1 \(Dense\): the last layer must be Dense\(units=10, activation='softmax'\) to output class probabilities; got units=5, activation='softmax'"),
        ({"type": "Dense", "units": 10}, r"got units=10, activation='linear'"),
        ({"type": "Dropout", "rate": 0.5}, r"layer 1 \(Dropout\): the last layer must be Dense\(units=10, activation='softmax'\).*; add it at the end"),
    ],
)
def test_last_layer_must_output_class_probabilities(last, message):
    d = doc(FLAT, last)
    assert one_error(d).layer == 1
    with pytest.raises(SpecErrors, match=message):
        parse_spec(d)


def test_num_classes_is_respected():
    d = doc(FLAT, {"type": "Dense", "units": 100, "activation": "softmax"})
    assert check_spec(d, num_classes=100) == []
    assert "Dense(units=10" in str(check_spec(d)[0])


def test_large_models_under_the_limit_are_accepted():
    wide = {"type": "Dense", "units": 4096}
    assert summarize(doc(FLAT, wide, wide, OUT)).total_params == 3072 * 4096 + 4096 + 4096 * 4096 + 4096 + 40_970


def test_too_many_parameters_over_50_million():
    big = {"type": "Dense", "units": 4096}
    d = doc(FLAT, big, big, big, big, OUT)  # 3072*4096 + 3 * 4096*4096 + ... = 62,971,914
    error = one_error(d)
    assert error.layer == 2 and error.field == "layers"
    with pytest.raises(SpecErrors, match=r"the model has 62,971,914 parameters, over the limit of 50,000,000; layer 2 \(Dense\) alone has 16,781,312"):
        parse_spec(d)


def test_check_spec_reports_several_problems_at_once():
    d = {
        "name": "bad/name",
        "epochs": 0,
        "layers": [conv(filters=0), {"type": "Lambda"}, {"type": "Dense", "units": 4, "activation": "magic"}, {"type": "Dense", "units": 3}],
    }
    errors = check_spec(d)
    assert [(e.layer, e.field) for e in errors] == [
        (None, "name"), (None, "epochs"), (0, "filters"), (1, "type"), (2, "activation"), (3, None),
    ]
    with pytest.raises(SpecErrors) as info:
        parse_spec(d)
    assert len(info.value.errors) == 6 and "layer 1: type 'Lambda'" in str(info.value)


def test_shape_errors_stop_at_the_first_broken_layer_but_earlier_ones_are_reported():
    d = doc(conv(), {"type": "Dense", "units": 4}, {"type": "Dropout", "rate": 2}, OUT)
    errors = check_spec(d)
    assert [(e.layer, e.field) for e in errors] == [(2, "rate"), (1, None)]


# --- summaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESET_PARAMS))
def test_preset_parameter_counts(name):
    summary = summarize(get_preset(name))
    assert summary.total_params == PRESET_PARAMS[name]
    assert summary.trainable_params == PRESET_PARAMS[name] and summary.non_trainable_params == 0
    assert summary.name == name and summary.input_shape == (32, 32, 3)
    assert summary.layers[-1].output_shape == (None, 10)


NOTEBOOK_ACTIVATIONS = {  # Dense and Conv2D activations in order: relu everywhere, softmax out
    name: ["relu"] * (sum(t in ("Dense", "Conv2D") for t, _ in layers) - 1) + ["softmax"]
    for name, layers in NOTEBOOK_LAYERS.items()
}


@pytest.mark.parametrize("name", NOTEBOOK_PRESETS)
def test_notebook_presets_are_the_notebooks_networks_layer_by_layer(name):
    preset = get_preset(name)
    summary = summarize(parse_spec(preset))
    assert [(s.type, s.output_shape[1:]) for s in summary.layers] == NOTEBOOK_LAYERS[name]
    assert summary.total_params == PRESET_PARAMS[name]
    layers = parse_spec(preset).layers
    assert [la["activation"] for la in layers if la["type"] in ("Dense", "Conv2D")] == NOTEBOOK_ACTIVATIONS[name]
    for layer in layers:  # every conv 'same'-padded, every pool 2x2 with stride 2 and 'same' padding
        if layer["type"] == "Conv2D":
            assert (layer["padding"], layer["strides"]) == ("same", 1)
        if layer["type"] == "MaxPool2D":
            assert (layer["pool_size"], layer["strides"], layer["padding"]) == (2, 2, "same")
        if layer["type"] == "Dropout":
            assert layer["rate"] == 0.2
    kernels = [la["kernel_size"] for la in layers if la["type"] == "Conv2D"]
    assert kernels == {"exp3": [5], "exp4": [3, 3, 3], "exp5": [3, 3, 3]}.get(name, [])
    # The stored preset spells the pool as the notebook does, not through defaults.
    pools = [la for la in preset["layers"] if la["type"] == "MaxPool2D"]
    assert all(p == {"type": "MaxPool2D", "pool_size": 2, "strides": 2, "padding": "same"} for p in pools)


def test_maxpool_strides_and_padding_are_validated():
    pool = {"type": "MaxPool2D", "pool_size": 2, "strides": 2, "padding": "same"}
    assert parse_spec(doc(pool, FLAT, OUT)).layers[0] == pool
    assert summarize(doc(conv(4, padding="same"), {**pool, "pool_size": 3}, FLAT, OUT)).layers[1].output_shape == (None, 16, 16, 4)
    odd = summarize(doc({"type": "MaxPool2D", "pool_size": 2, "strides": 2, "padding": "same"}, FLAT, OUT), input_shape=(5, 7, 1))
    assert odd.layers[0].output_shape == (None, 3, 4, 1)  # ceil(5 / 2), ceil(7 / 2)
    err = one_error(doc({**pool, "strides": 9}, FLAT, OUT))
    assert (err.layer, err.field) == (0, "strides")
    assert str(err) == "layer 0 (MaxPool2D): strides=9 is out of range 1..8; leave it out to step by pool_size"
    err = one_error(doc({**pool, "padding": "full"}, FLAT, OUT))
    assert (err.layer, err.field) == (0, "padding")
    assert str(err) == "layer 0 (MaxPool2D): padding='full' is not allowed; use one of valid, same"
    assert str(one_error(doc({**pool, "strides": 0}, FLAT, OUT))).endswith("strides=0 is out of range 1..8; leave it out to step by pool_size")


def test_exp4_layer_by_layer():
    summary = summarize(parse_spec(get_preset("exp4")))
    assert [(s.name, s.output_shape, s.params) for s in summary.layers] == [
        ("l00_conv2d", (None, 32, 32, 32), 896),
        ("l01_maxpool2d", (None, 16, 16, 32), 0),
        ("l02_conv2d", (None, 16, 16, 64), 18_496),
        ("l03_maxpool2d", (None, 8, 8, 64), 0),
        ("l04_conv2d", (None, 8, 8, 64), 36_928),
        ("l05_maxpool2d", (None, 4, 4, 64), 0),
        ("l06_flatten", (None, 1024), 0),
        ("l07_dense", (None, 64), 65_600),
        ("l08_dense", (None, 10), 650),
    ]


def test_batch_normalization_counts_like_keras():
    summary = summarize(doc(conv(16, padding="same", use_bias=False), {"type": "BatchNormalization"}, {"type": "GlobalAveragePooling2D"}, OUT))
    bn = summary.layers[1]
    assert (bn.params, bn.trainable) == (64, 32)
    assert summary.layers[0].params == 3 * 3 * 3 * 16
    assert (summary.total_params, summary.trainable_params, summary.non_trainable_params) == (432 + 64 + 170, 432 + 32 + 170, 32)


def test_same_padding_and_strides_follow_keras_formulas():
    summary = summarize(doc(
        conv(4, kernel_size=3, strides=2, padding="same"),   # ceil(32 / 2) = 16
        conv(4, kernel_size=3, strides=2),                   # (16 - 3) // 2 + 1 = 7
        {"type": "MaxPool2D", "pool_size": 2, "padding": "same"},  # ceil(7 / 2) = 4
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 1},  # 4 - 3 + 1 = 2
        FLAT, OUT,
    ))
    assert [s.output_shape[1:3] for s in summary.layers[:4]] == [(16, 16), (7, 7), (4, 4), (2, 2)]


def test_other_input_shapes():
    summary = summarize(doc(conv(4), FLAT, OUT), input_shape=(28, 28, 1))
    assert summary.layers[0].params == 3 * 3 * 1 * 4 + 4
    assert summary.layers[1].output_shape == (None, 26 * 26 * 4)


def test_summary_text_and_dict():
    summary = summarize(get_preset("exp4"))
    text = summary.to_text()
    assert text.startswith('Model: "exp4"')
    assert "Total params: 122,570 (478.79 KB)" in text
    assert "Trainable params: 122,570" in text and "Non-trainable params: 0 (0.00 B)" in text
    assert "rescale (Rescaling)" in text and "l07_dense (Dense)" in text and "65,600" in text
    assert "(None, 16, 16, 64)" in text
    data = summary.to_dict()
    assert data["total_params"] == 122_570 and data["name"] == "exp4"
    assert data["layers"][0] == {"index": 0, "name": "l00_conv2d", "type": "Conv2D", "output_shape": [None, 32, 32, 32], "params": 896, "trainable": 896}
    json.dumps(data)


def test_summarize_raises_on_invalid_specs():
    with pytest.raises(SpecErrors, match=r"layer 0 \(Dense\) gets a 4-D input"):
        summarize(doc(OUT))


def test_layer_names():
    assert layer_name(3, "Conv2D") == "l03_conv2d"
    assert layer_name(12, "BatchNormalization") == "l12_batchnormalization"


# --- presets and loading ------------------------------------------------------------------------


def test_presets_are_the_notebook_settings():
    assert preset_names() == [*NOTEBOOK_PRESETS, "fast", "best", "resnet"] == list(PRESET_TITLES)
    settings = {n: (PRESETS[n]["learning_rate"], PRESETS[n]["epochs"]) for n in NOTEBOOK_PRESETS}
    assert settings == {"exp1": (0.01, 20), "exp2": (0.001, 40), "exp3": (0.0001, 10), "exp4": (0.001, 20), "exp5": (0.001, 10)}
    for name in NOTEBOOK_PRESETS:
        spec = parse_spec(get_preset(name))
        assert (spec.optimizer, spec.batch_size, spec.seed, spec.validation) == ("adam", 32, 0, "test")
        assert spec.description.startswith(PRESET_TITLES[name])
    assert "10%" in PRESETS["exp1"]["description"]


def test_get_preset_is_a_deep_copy_and_unknown_names_list_the_presets():
    preset = get_preset("exp1")
    preset["layers"][1]["units"] = 999
    assert get_preset("exp1")["layers"][1]["units"] == 10
    with pytest.raises(SpecError, match=r"no preset named 'exp9': use one of exp1, exp2, exp3, exp4, exp5"):
        get_preset("exp9")


def test_load_spec_by_preset_name_and_path(tmp_path):
    assert load_spec("exp3") == PRESETS["exp3"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc(FLAT, OUT, epochs=3)))
    assert parse_spec(load_spec(str(path))).epochs == 3


def test_load_spec_errors(tmp_path):
    with pytest.raises(SpecError, match=r"no preset or spec file 'nope.json' \(does not exist\): use a preset \(exp1, exp2"):
        load_spec("nope.json")
    with pytest.raises(SpecError, match=r"\(is a folder\)"):
        load_spec(str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "t",\n  "layers": [\n}\n')
    with pytest.raises(SpecError, match=r"bad.json is not valid JSON: Expecting value at line 4 column 1"):
        load_spec(str(bad))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(SpecError, match=r"list.json holds a JSON list, not an object"):
        load_spec(str(listed))
    huge = tmp_path / "huge.json"
    huge.write_text('{"description": "' + "x" * 1_300_000 + '"}')
    with pytest.raises(SpecError, match=r"huge.json is 1\.2 MB, over the 1 MB limit"):
        load_spec(str(huge))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(SpecError, match=r"bin.json is not UTF-8 text"):
        load_spec(str(binary))


def test_spec_is_frozen():
    spec = parse_spec(get_preset("exp1"))
    assert isinstance(spec, ExperimentSpec)
    with pytest.raises(AttributeError):
        spec.epochs = 3


def test_residual_block_needs_matching_channels():
    doc = {"name": "r", "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same"},
        {"type": "ResidualBlock", "filters": 16},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]}
    [error] = check_spec(doc)
    assert error.layer == 1
    assert "filters=16 must equal the input's 8 channels" in str(error)
    doc["layers"][1]["filters"] = 8
    summary = summarize(doc)
    assert summary.layers[1].params == 2 * 9 * 8 * 8 + 8 * 8
    assert summary.layers[1].trainable == 2 * 9 * 8 * 8 + 4 * 8


def test_preset_copies_do_not_share_layer_dicts():
    doc = get_preset("exp5")
    doc["layers"][2]["rate"] = 0.4
    assert [layer["rate"] for layer in doc["layers"] if layer["type"] == "Dropout"] == [0.4, 0.2, 0.2]
    assert get_preset("exp5")["layers"][2]["rate"] == 0.2


def test_the_resnet_preset_is_the_earlier_fast_resnet_lite():
    spec = parse_spec(get_preset("resnet"))
    assert spec.validation == "holdout" and spec.tta_flip and spec.schedule["type"] == "one_cycle"
    assert spec.batch_size == 128 and any(l["type"] == "ResidualBlock" for l in spec.layers)
    assert summarize(get_preset("resnet")).total_params == 409_834


@pytest.mark.parametrize("name, widths, epochs", [("fast", (32, 64, 64), 7), ("best", (64, 128, 128), 10)])
def test_fast_and_best_are_airbench94_muons_network_and_recipe(name, widths, epochs):
    spec = parse_spec(get_preset(name))
    assert spec.epochs == epochs
    assert spec.validation == "holdout" and spec.tta_flip and spec.tta_shift == 1
    assert spec.schedule == {"type": "one_cycle", "warmup": 0.0, "final_fraction": 0.0}  # linear decay from the peak
    assert (spec.muon_learning_rate, spec.muon_momentum) == (0.24, 0.6)  # airbench94_muon's, for the kernels
    assert (spec.batch_size, spec.momentum, spec.nesterov, spec.bn_bias_lr_multiplier) == (1024, 0.85, True, 64)
    # airbench's decay: 0.002 per step in PyTorch's coupled form, repeated 1/(1 - 0.85) times by the momentum
    assert spec.learning_rate * spec.weight_decay == pytest.approx(0.002 / 0.15, rel=1e-3)
    assert spec.decay_biases  # airbench decays its BatchNorm and whitening biases as well
    assert (spec.ema_momentum, spec.lookahead_steps) == (0, 0)  # airbench94_muon has no lookahead
    assert spec.augment == {"alternate_flip": True, "translate": 2} and spec.logit_scale == pytest.approx(1 / 9, rel=1e-5)
    summary = summarize(get_preset(name))
    w1, w2, w3 = widths
    group = ["Conv2D", "MaxPool2D", "BatchNormalization", "Activation", "Conv2D", "BatchNormalization", "Activation"]
    assert [s.type for s in summary.layers] == ["Whitening", "Activation", *group * 3, "MaxPool2D", "Flatten", "Dense"]
    shapes = [s.output_shape[1:] for s in summary.layers]
    assert shapes[0] == (31, 31, 24)  # 2x2 patches of 3 channels: 12 eigenvectors and their negatives
    assert [shapes[i] for i in (2, 3, 9, 10, 16, 17)] == [(31, 31, w1), (15, 15, w1), (15, 15, w2), (7, 7, w2),
                                                         (7, 7, w3), (3, 3, w3)]
    assert shapes[-3:] == [(1, 1, w3), (w3,), (10,)]
    assert all(l["initializer"] == "dirac" for l in spec.layers if l["type"] == "Conv2D")
    assert all(not l["scale"] for l in spec.layers if l["type"] == "BatchNormalization")
