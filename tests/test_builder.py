"""The Builder's editing rules (cifar_core.builder): layer edits, settings from widgets, what the
widgets show, where errors go, the schedule preview, and loading, saving and submitting with a real
store and small generated data. The page itself is driven in tests/test_pages.py."""

from __future__ import annotations

import json

import pytest

from cifar_core.views import builder as core
from cifar_core.lab import Lab
from cifar_core.jobs import queue
from cifar_core.spec.presets import get_preset
from cifar_core.spec.layers import LAYER_ARGS
from cifar_core.spec.validate import check_spec, parse_spec

OUT = {"type": "Dense", "units": 10, "activation": "softmax"}
TINY = {"name": "tiny", "layers": [{"type": "Conv2D", "filters": 4, "kernel_size": 3}, {"type": "Flatten"}, OUT],
        "epochs": 1, "batch_size": 32}


def editor(doc: dict | None = None) -> dict:
    return core.new_editor(doc or TINY)


def types(ed: dict) -> list:
    return [layer["type"] for layer in ed["doc"]["layers"]]


def messages(doc: dict) -> str:
    return "\n".join(str(e) for e in check_spec(doc))


def field(fields, key: str) -> core.Field:
    return next(f for f in fields if f.key == key)


def group(doc: dict, name: str) -> core.Group:
    return next(g for g in core.settings_groups(doc, check_spec(doc)) if g.name == name)


# ------------------------------------------------------------ layers


def test_layer_edits_keep_each_layers_id_and_leave_the_input_alone():
    ed = editor()
    assert ed["uids"] == [0, 1, 2] and ed["next"] == 3 and ed["gen"] == 0
    added = core.add_layer(ed, 1, "MaxPool2D")
    assert types(added) == ["Conv2D", "MaxPool2D", "Flatten", "Dense"] and added["uids"] == [0, 3, 1, 2]
    assert types(ed) == ["Conv2D", "Flatten", "Dense"]  # a copy: the old editor is unchanged
    moved = core.move_layer(added, 3, -1)
    assert types(moved) == ["MaxPool2D", "Conv2D", "Flatten", "Dense"] and moved["uids"] == [3, 0, 1, 2]
    assert core.move_layer(moved, 3, -1)["uids"] == [3, 0, 1, 2]  # already first
    assert core.move_layer(moved, 2, 1)["uids"] == [3, 0, 1, 2]  # already last
    removed = core.remove_layer(moved, 3)
    assert types(removed) == types(ed) and removed["uids"] == [0, 1, 2]
    assert core.remove_layer(removed, 99) == removed  # an id that is gone (a double click) changes nothing
    assert core.add_layer(ed, 99, "Dropout")["doc"]["layers"][-1] == {"type": "Dropout", "rate": 0.2}  # clamped to the end


def test_retyping_keeps_the_arguments_both_types_take():
    ed = core.set_layer_arg(editor(), 0, "filters", 16)
    ed = core.set_layer_arg(ed, 0, "padding", "same")
    ed = core.retype_layer(ed, 0, "ResidualBlock")
    assert ed["doc"]["layers"][0] == {"type": "ResidualBlock", "filters": 16, "kernel_size": 3}
    assert core.retype_layer(ed, 0, "Flatten")["doc"]["layers"][0] == {"type": "Flatten"}


@pytest.mark.parametrize("kind", list(LAYER_ARGS))
def test_a_new_layer_of_every_type_has_its_required_arguments(kind):
    layer = core.new_layer(kind)
    problems = messages({"name": "x", "layers": [layer, {"type": "Flatten"}, OUT]})
    assert "needs" not in problems and "takes no" not in problems, problems


def test_layer_arguments_from_widgets_drop_defaults_and_empty_boxes():
    ed = core.set_layer_arg(editor(), 2, "activation", "linear")  # the Dense default
    assert ed["doc"]["layers"][2] == {"type": "Dense", "units": 10}
    ed = core.set_layer_arg(ed, 2, "units", None)
    assert ed["doc"]["layers"][2] == {"type": "Dense"}
    assert "layer 2 (Dense) needs 'units'" in messages(ed["doc"])


def test_load_gives_fresh_ids_the_next_generation_and_a_notice():
    ed = core.add_layer(editor(), 0, "Flatten")
    loaded = core.load(ed, {"name": "x", "layers": "not a list"}, ("success", "ok"))
    assert loaded["doc"]["layers"] == [] and loaded["gen"] == 1 and loaded["notice"] == ("success", "ok")
    again = core.load(loaded, get_preset("exp1"))
    assert again["uids"] == [4, 5, 6] and again["gen"] == 2


# ------------------------------------------------------------ settings from widgets


def test_changing_the_optimizer_drops_the_settings_it_does_not_read():
    doc = core.set_setting(TINY, ("optimizer",), "sgd")
    doc = core.set_setting(doc, ("momentum",), 0.9)
    doc = core.set_setting(doc, ("nesterov",), True)
    doc = core.set_setting(doc, ("weight_decay",), 5e-4)
    assert parse_spec(doc).nesterov and parse_spec(doc).weight_decay == 5e-4
    adamw = core.set_setting(doc, ("optimizer",), "adamw")
    assert "momentum" not in adamw and "nesterov" not in adamw and adamw["weight_decay"] == 5e-4
    adam = core.set_setting(adamw, ("optimizer",), "adam")
    assert "weight_decay" not in adam and not check_spec(adam)


def test_schedule_type_fills_its_defaults_and_keeps_shared_values():
    doc = core.set_setting(TINY, ("schedule", "type"), "cosine")
    assert doc["schedule"] == {"type": "cosine", "final_fraction": 0.0}
    doc = core.set_setting(doc, ("schedule", "final_fraction"), 0.1)
    doc = core.set_setting(doc, ("schedule", "type"), "one_cycle")
    assert doc["schedule"] == {"type": "one_cycle", "warmup": 0.25, "final_fraction": 0.1, "initial_fraction": 0.0}
    doc = core.set_setting(doc, ("schedule", "type"), "step")
    doc = core.set_setting(doc, ("schedule", "every"), 5)
    assert parse_spec(doc).schedule == {"type": "step", "every": 5, "factor": 0.1}
    assert core.set_setting(doc, ("schedule", "type"), "constant")["schedule"] == {"type": "constant"}
    doc = core.set_setting(doc, ("schedule", "every"), 0)
    assert "schedule every=0 is out of range: use 1..1000" in messages(doc)


def test_augment_keeps_only_what_is_on():
    doc = core.set_setting(TINY, ("augment", "flip"), True)
    doc = core.set_setting(doc, ("augment", "translate"), 4)
    doc = core.set_setting(doc, ("augment", "cutout"), 8)
    assert parse_spec(doc).augment == {"flip": True, "translate": 4, "cutout": 8}
    for key, off in (("flip", False), ("translate", 0), ("cutout", None)):
        doc = core.set_setting(doc, ("augment", key), off)
    assert doc["augment"] == {}
    doc = core.set_setting(doc, ("augment", "translate"), 9)
    assert "augment translate=9 must be a whole number of pixels in 0..8" in messages(doc)


def test_early_stopping_switch_and_its_settings():
    doc = core.set_setting(TINY, ("early_stopping",), True)
    assert doc["early_stopping"] == {"patience": 5, "monitor": "val_accuracy", "min_delta": 0.0}
    doc = core.set_setting(doc, ("early_stopping", "monitor"), "val_loss")
    doc = core.set_setting(doc, ("early_stopping", "patience"), 3)
    assert parse_spec(doc).early_stopping == {"patience": 3, "monitor": "val_loss", "min_delta": 0.0}
    assert core.set_setting(doc, ("early_stopping",), True)["early_stopping"]["patience"] == 3  # on again keeps it
    assert "early_stopping" not in core.set_setting(doc, ("early_stopping",), False)
    empty = core.set_setting(doc, ("early_stopping", "patience"), None)
    assert "early_stopping needs 'patience'" in messages(empty)
    # a setting made before the switch is on turns it on with the other defaults
    assert core.set_setting(TINY, ("early_stopping", "patience"), 7)["early_stopping"]["monitor"] == "val_accuracy"


def test_other_training_settings_and_free_text():
    doc = core.set_setting(TINY, ("label_smoothing",), 0.1)
    doc = core.set_setting(doc, ("tta_flip",), True)
    doc = core.set_setting(doc, ("tta_shift",), 2)
    doc = core.set_setting(doc, ("description",), None)
    spec = parse_spec(doc)
    assert (spec.label_smoothing, spec.tta_flip, spec.tta_shift, spec.description) == (0.1, True, 2, "")
    assert core.set_setting(doc, ("epochs",), 10)["epochs"] == 10  # training settings stay explicit at their default
    assert "label_smoothing=0.6 is out of range 0..0.5; 0.1 is usual" in messages(core.set_setting(doc, ("label_smoothing",), 0.6))


def test_widget_values_json_boxes_and_apply_widget():
    assert core.widget_value("json", "[3, 5]") == [3, 5]
    assert core.widget_value("json", "[3,") == "[3,"  # kept, so the check names it
    assert core.widget_value("int", 7) == 7
    ed = core.set_layer_arg(editor(), 0, "kernel_size", [3, 5])
    [row] = core.layer_rows(ed, None, [])[:1]
    box = field(row.fields, "kernel_size")
    assert (box.widget, box.shown) == ("json", "[3, 5]")
    ed = core.apply_widget(ed, box, "[3,", uid=0)
    assert field(core.layer_rows(ed, None, [])[0].fields, "kernel_size").shown == "[3,"  # shown as typed
    assert "layer 0 (Conv2D): kernel_size must be a whole number or [height, width], got '[3,'" in messages(ed["doc"])
    rate = field(group(ed["doc"], "optimizer").fields, "learning_rate")
    assert core.apply_widget(ed, rate, 0.01)["doc"]["learning_rate"] == 0.01


# ------------------------------------------------------------ what the panel shows


def test_settings_groups_show_every_training_option_with_the_spec_defaults():
    groups = {g.name: g for g in core.settings_groups(TINY, [])}
    assert list(groups) == ["about", "optimizer", "schedule", "run", "regularise", "recipe", "early_stopping"]
    opt = {f.key: f for f in groups["optimizer"].fields}
    assert (opt["optimizer"].widget, opt["optimizer"].shown) == ("select", "adam")
    assert not any(opt[k].enabled for k in ("momentum", "nesterov", "weight_decay", "decay_biases"))
    assert opt["decay_biases"].help
    assert (opt["muon_learning_rate"].shown, opt["muon_momentum"].shown) == (0.0, 0.6)  # Muon: with any optimizer
    assert opt["muon_learning_rate"].enabled and opt["muon_learning_rate"].help
    assert not opt["muon_momentum"].enabled  # Muon is off (rate 0): its momentum applies to nothing
    assert [f.key for f in groups["schedule"].fields] == ["schedule_type"]
    assert {f.key: f.shown for f in groups["regularise"].fields} == {
        "label_smoothing": 0.0, "augment_flip": False, "augment_alternate_flip": False, "augment_translate": 0,
        "augment_cutout": 0, "tta_flip": False, "tta_shift": 0}
    assert {f.key: f.shown for f in groups["recipe"].fields} == {
        "logit_scale": 1.0, "ema_momentum": 0.0, "ema_warmup": 0.0, "lookahead_steps": 0, "bn_bias_lr_multiplier": 1.0}
    assert all(f.help for f in groups["recipe"].fields)
    assert [(f.key, f.shown) for f in groups["early_stopping"].fields] == [("early_stopping", False)]
    validation = field(groups["run"].fields, "validation")
    assert validation.widget == "radio" and validation.labels["holdout"] == "5,000 held-out train images"
    assert {f.widget for f in groups["about"].fields} == {"text", "textarea"}

    doc = core.set_setting(core.set_setting(TINY, ("schedule", "type"), "one_cycle"), ("early_stopping",), True)
    doc = core.set_setting(doc, ("optimizer",), "adamw")
    groups = {g.name: g for g in core.settings_groups(doc, [])}
    assert [f.key for f in groups["schedule"].fields] == ["schedule_type", "schedule_warmup", "schedule_final_fraction",
                                                              "schedule_initial_fraction"]
    assert [f.widget for f in groups["early_stopping"].fields] == ["checkbox", "int", "select", "float"]
    assert field(groups["optimizer"].fields, "weight_decay").enabled
    assert not field(groups["optimizer"].fields, "momentum").enabled


def test_muon_momentum_is_editable_only_while_muon_is_on():
    def muon_momentum(doc: dict) -> core.Field:
        return field(group(doc, "optimizer").fields, "muon_momentum")

    assert not muon_momentum({**TINY, "optimizer": "adam"}).enabled
    assert not muon_momentum({**TINY, "optimizer": "sgd", "muon_learning_rate": 0}).enabled
    assert muon_momentum({**TINY, "muon_learning_rate": 0.24}).enabled  # with any optimizer
    assert muon_momentum(get_preset("fast")).enabled
    off = {**TINY, "muon_momentum": 0.5}  # set, with Muon off: an error beside it, and editable so it can be cleared
    assert muon_momentum(off).enabled and group(off, "optimizer").errors
    for name in ("exp1", "exp5"):
        assert not muon_momentum(get_preset(name)).enabled, name


def test_errors_go_to_the_group_of_their_setting():
    doc = {**TINY, "momentum": 0.9, "schedule": {"type": "step", "every": 0}, "augment": {"cutout": 20},
           "early_stopping": {"patience": 0}, "bogus": 1,
           "layers": [{"type": "Dense", "units": 0}, {"type": "Flatten"}, OUT]}
    groups = {g.name: g for g in core.settings_groups(doc, check_spec(doc))}
    assert groups["optimizer"].errors == ("momentum=0.9 only applies to sgd and rmsprop, not adam; remove it or change optimizer",)
    assert field(groups["optimizer"].fields, "momentum").enabled  # so it can be cleared
    assert groups["schedule"].errors == ("schedule every=0 is out of range: use 1..1000",)
    assert groups["regularise"].errors == ("augment cutout=20 must be a whole number of pixels in 0..16",)
    assert groups["early_stopping"].errors == ("early_stopping: patience=0 is out of range 1..1000; 5 to 10 epochs is usual",)
    assert groups["other"].errors[0].startswith("unknown setting 'bogus'")
    assert not any("layer 0" in m for g in groups.values() for m in g.errors)
    rows = core.layer_rows(core.new_editor(doc), None, check_spec(doc))
    assert rows[0].errors and rows[0].errors[0].startswith("layer 0 (Dense): units=0 is out of range")
    assert rows[1].errors == ()
    assert core.place_errors(check_spec({"name": "x", "layers": []}))["layers"][0].startswith("layers is empty")


def test_a_setting_the_widgets_cannot_show_gets_a_json_box():
    doc = {**TINY, "schedule": "cosine", "early_stopping": 5}
    groups = {g.name: g for g in core.settings_groups(doc, check_spec(doc))}
    [box] = groups["schedule"].fields
    assert (box.path, box.widget, box.shown) == (("schedule",), "json", "cosine")  # not JSON: shown as written
    assert core.set_setting(doc, ("schedule",), {"type": "cosine"})["schedule"] == {"type": "cosine"}
    assert groups["schedule"].errors and groups["schedule"].preview is None
    assert groups["early_stopping"].fields[0].widget == "json"


def test_layer_rows_carry_the_summary_line_and_unknown_types():
    ed = editor({**TINY, "layers": [*TINY["layers"], {"type": "Lambda"}]})
    rows = core.layer_rows(ed, None, check_spec(ed["doc"]))
    assert rows[-1].kinds[-1] == "Lambda" and rows[-1].fields == ()
    assert "type 'Lambda' is not allowed" in rows[-1].errors[0]
    ed = editor()
    rows = core.layer_rows(ed, core.summary_of(ed["doc"], (32, 32, 3), 10), [])
    assert rows[0].info == "`l00_conv2d` → `(None, 30, 30, 4)` · **112** params"
    assert [f.key for f in rows[0].fields] == list(LAYER_ARGS["Conv2D"])
    assert core.summary_of({"name": "bad/name", "layers": TINY["layers"]}, (32, 32, 3), 10).name == "experiment"
    assert core.summary_of({"name": "x", "layers": [OUT, OUT]}, (32, 32, 3), 10) is None


def test_schedule_preview_follows_the_schedule_and_is_none_while_invalid():
    doc = {**TINY, "learning_rate": 0.1, "epochs": 4, "batch_size": 500,
           "schedule": {"type": "cosine", "final_fraction": 0.1}}
    preview = core.schedule_preview(doc)
    assert preview["step"].iloc[-1] == 4 * 90  # 45,000 images after the holdout, 500 a step
    assert preview["learning_rate"].iloc[0] == pytest.approx(0.1) and preview["learning_rate"].iloc[-1] == pytest.approx(0.01)
    assert core.schedule_preview({**doc, "validation": "test"})["step"].iloc[-1] == 4 * 100
    assert group(doc, "schedule").preview is not None and group(doc, "run").preview is None
    for bad in ({"learning_rate": 0}, {"batch_size": "big"}, {"epochs": 0}, {"schedule": {"type": ["x"]}},
                {"schedule": {"type": "step", "every": 0}}):
        assert core.schedule_preview({**doc, **bad}) is None, bad


# ------------------------------------------------------------ loading, saving, submitting


def test_start_options_and_loading_them(conn):
    assert core.start_options(["mine"])[-2:] == ["empty:", "saved:mine"]
    assert core.start_label("preset:exp1").startswith("exp1 · ") and core.start_label("saved:mine") == "saved · mine"
    ed = core.load_start(editor(), Lab(), "preset:exp4")
    assert ed["doc"]["name"] == "exp4" and ed["notice"] == ("success", "Loaded the preset exp4.")
    ed = core.load_start(ed, Lab(), "empty:")
    assert ed["doc"] == core.EMPTY and ed["doc"] is not core.EMPTY
    missing = core.load_start(ed, Lab(), "saved:gone")
    assert missing["doc"] == ed["doc"] and missing["notice"][0] == "error" and "no saved experiment 'gone'" in missing["notice"][1]


def test_load_json_from_an_upload_or_the_editor():
    ed = core.load_json(editor(), json.dumps({**TINY, "name": "up"}).encode(), "up.json")
    assert ed["doc"]["name"] == "up" and ed["notice"] == ("success", "Loaded up.json.")
    bad = {**TINY, "epochs": 0}
    kind, text = core.load_json(ed, json.dumps(bad).encode(), "bad.json")["notice"]
    assert kind == "warning" and "1 problem(s)" in text
    for data, expected in ((b'{"name": "x",', "broken.json was not loaded: spec is not valid JSON"),
                           (b'{"name": "x", "layers": 5}', 'broken.json was not loaded: "layers" must be a list of objects')):
        kept = core.load_json(ed, data, "broken.json")
        assert kept["doc"] == ed["doc"] and kept["gen"] == ed["gen"] and kept["notice"][1].startswith(expected)
    applied = core.load_json(ed, json.dumps(TINY).encode())
    assert applied["doc"]["name"] == "tiny" and applied["notice"] == ("success", "Applied the JSON.")
    assert core.load_json(ed, b"[1]")["notice"][1].startswith("The JSON was not applied")


def test_save_and_submit_record_their_outcome(conn, small_data):
    ed = core.save(editor(), Lab())
    assert ed["result"] == ("success", "Saved 'tiny'; it is listed under Start from.")
    assert Lab().experiment("tiny")["layers"][0]["filters"] == 4
    assert core.save(editor({**TINY, "name": "a/b"}), Lab())["result"][0] == "error"
    doc = core.set_setting(TINY, ("augment", "flip"), True)
    ed = core.submit(core.new_editor(doc), Lab(), str(small_data), repeats=2)
    assert ed["result"] == ("success", "Queued jobs #1, #2.") and ed["queued"] == [1, 2]
    assert queue.get_job(conn, 2).spec["augment"] == {"flip": True} and queue.get_job(conn, 2).spec["seed"] == 1
    missing = core.submit(editor(), Lab(), str(small_data / "nowhere"))
    assert missing["result"][0] == "data" and missing["queued"] == []


def test_the_recipe_options_have_one_line_of_help_beside_their_widgets():
    doc = {**TINY, "layers": [{"type": "Whitening"}, {"type": "BatchNormalization", "scale": False},
                              {"type": "Conv2D", "filters": 4, "kernel_size": 3, "initializer": "dirac"}, *TINY["layers"][1:]]}
    editor = core.new_editor(doc)
    rows = core.layer_rows(editor, core.summary_of(doc, (32, 32, 3), 10), [])
    helps = {(row.kind, f.key): f.help for row in rows for f in row.fields}
    for key in [("Whitening", "kernel_size"), ("Whitening", "epsilon"), ("Whitening", "negatives"),
                ("Whitening", "bias_epochs"), ("BatchNormalization", "scale"), ("BatchNormalization", "momentum"),
                ("Conv2D", "initializer")]:
        assert helps[key] and "\n" not in helps[key], key
    assert helps[("Conv2D", "filters")] == ""  # its label says it
    conv = next(f for f in rows[2].fields if f.key == "initializer")
    assert (conv.widget, conv.shown, conv.options) == ("select", "dirac", ("glorot_uniform", "dirac"))
    regularise = {f.key: f for g in core.settings_groups(doc, []) for f in g.fields}
    assert "every other epoch" in regularise["augment_alternate_flip"].help
