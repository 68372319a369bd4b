"""Architecture builder: edit an experiment layer by layer with its Keras-style summary and every
validation error beside the layer at fault, set its training settings, then save, download or
submit it. The spec being edited lives in st.session_state (a UI selection until it is saved).

Each widget writes its value into the working spec from an on_change callback, so the spec is
current when a run starts and the errors drawn beside each layer match what is on screen.
"""

from __future__ import annotations

import copy
import json

import streamlit as st

from cifar_core import experiments, images
from cifar_core.errors import DataError, LabError, SpecErrors, UploadError
from cifar_core.presets import PRESET_TITLES, get_preset, preset_names
from cifar_core.spec import LAYER_ARGS, NAME_PATTERN, REQUIRED, TOP_ARGS, Arg, check_spec, summarize
from pages import common

EMPTY = {"name": "new-experiment", "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}],
         "optimizer": "adam", "learning_rate": 0.001, "epochs": 10, "batch_size": 32, "seed": 0, "validation": "holdout"}
STARTERS = {"units": 64, "filters": 32, "kernel_size": 3, "rate": 0.2, "activation": "relu", "factor": 0.1,
            "height_factor": 0.1, "width_factor": 0.1}  # first values of required arguments in a new layer
STEPS = {"learning_rate": 1e-4, "rate": 0.05, "momentum": 0.01, "epsilon": 1e-4, "weight_decay": 1e-4,
         "factor": 0.05, "height_factor": 0.05, "width_factor": 0.05}
VALIDATION = {"test": "test set each epoch (notebook)", "holdout": "5,000 held-out train images"}


# ------------------------------------------------------------ the working spec (session state)


def _state() -> dict:
    if "builder" not in st.session_state:
        st.session_state.builder = {"doc": {}, "uids": [], "gen": 0, "next": 0, "notice": None}
        _load(get_preset(preset_names()[0]))
    return st.session_state.builder


def _load(doc: dict, notice: tuple[str, str] | None = None) -> None:
    """Replace the working spec; fresh widget keys so every widget shows the new values."""
    s = st.session_state.builder
    layers = doc.get("layers", [])
    s["doc"] = copy.deepcopy({**doc, "layers": layers if isinstance(layers, list) else []})
    s["uids"] = list(range(s["next"], s["next"] + len(s["doc"]["layers"])))
    s["next"] += len(s["uids"])
    s["gen"] += 1
    s["notice"] = notice


def _load_choice() -> None:
    choice = st.session_state.builder_start
    kind, _, name = choice.partition(":")
    if kind == "preset":
        _load(get_preset(name), ("success", f"Loaded the preset {name}."))
    elif kind == "saved":
        try:
            with common.connection() as conn:
                _load(experiments.get_experiment(conn, name), ("success", f"Loaded the saved experiment {name!r}."))
        except LabError as exc:
            st.session_state.builder["notice"] = ("error", str(exc))
    else:
        _load(EMPTY, ("success", "Started an empty experiment."))


def _on_upload() -> None:
    upload = st.session_state.builder_upload
    if upload is None:
        return
    try:
        doc = _parse(upload.getvalue())
    except UploadError as exc:
        st.session_state.builder["notice"] = ("error", f"{upload.name} was not loaded: {exc}")
        return
    problems = check_spec(doc)
    text = f" It has {len(problems)} problem(s), shown beside the settings at fault." if problems else ""
    _load(doc, ("warning" if problems else "success", f"Loaded {upload.name}.{text}"))


def _apply_json(key: str) -> None:
    try:
        _load(_parse(st.session_state[key].encode()), ("success", "Applied the JSON."))
    except UploadError as exc:
        st.session_state.builder["notice"] = ("error", f"The JSON was not applied: {exc}")


def _parse(data: bytes) -> dict:
    """A spec document from JSON bytes, if its layers can be edited here (a list of objects)."""
    doc = images.spec_upload(data)
    layers = doc.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise UploadError('"layers" must be a list of objects like {"type": "Dense", "units": 64}')
    return doc


def _new_layer(kind: str, old: dict | None = None) -> dict:
    """A layer of `kind` with starter values for its required arguments (keeping those `old` shares)."""
    layer = {"type": kind}
    for name, arg in LAYER_ARGS.get(kind, {}).items():
        if old and name in old:
            layer[name] = old[name]
        elif arg.default is REQUIRED:
            layer[name] = STARTERS.get(name, arg.low)
    return layer


def _edit_layers(action: str, i: int, kind: str | None = None) -> None:
    s = st.session_state.builder
    layers, uids = s["doc"]["layers"], s["uids"]
    if action == "remove":
        layers.pop(i), uids.pop(i)
    elif action in ("up", "down"):
        j = i - 1 if action == "up" else i + 1
        if 0 <= j < len(layers):
            layers[i], layers[j], uids[i], uids[j] = layers[j], layers[i], uids[j], uids[i]
    elif action == "insert":
        layers.insert(i, _new_layer(kind or st.session_state.builder_new_type))
        uids.insert(i, s["next"])
        s["next"] += 1
    elif action == "type":
        layers[i] = _new_layer(st.session_state[f"bt{uids[i]}"], layers[i])


def _set_value(key: str, target: dict, name: str, arg: Arg, as_json: bool, keep_default: bool = False) -> None:
    """Write a widget's value into the spec; an empty box (or a layer's default) leaves the key out."""
    value = st.session_state[key]
    if as_json:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # keep the text: the spec check names it next to the setting
    is_default = arg.default is not REQUIRED and value == arg.default and type(value) is type(arg.default)
    if value is None or (is_default and not keep_default):
        target.pop(name, None)
    else:
        target[name] = value


def _set_layer_arg(uid: int, key: str, name: str, arg: Arg, as_json: bool) -> None:
    s = st.session_state.builder
    _set_value(key, s["doc"]["layers"][s["uids"].index(uid)], name, arg, as_json)


def _set_top(key: str, name: str, arg: Arg | None, as_json: bool = False) -> None:
    doc = st.session_state.builder["doc"]
    if arg is None:  # free text: name, description
        doc[name] = st.session_state[key]
    else:
        _set_value(key, doc, name, arg, as_json, keep_default=True)  # training settings stay explicit
    if name == "optimizer":  # settings the new optimizer does not read would only be errors now
        for extra, users in (("momentum", ("sgd", "rmsprop")), ("nesterov", ("sgd",)), ("weight_decay", ("adamw", "sgd"))):
            if doc.get("optimizer", "adam") not in users:
                doc.pop(extra, None)


# ------------------------------------------------------------ widgets


def _field(label: str, name: str, arg: Arg, value, key: str, on_change, args: tuple, width="stretch") -> None:
    """The widget that fits an argument's kind (a JSON text box for values of another kind)."""
    kw = dict(key=key, width=width)
    if arg.kind == "bool" and isinstance(value, bool):
        st.checkbox(label, value=value, on_change=on_change, args=(*args, False), **kw)
    elif arg.kind == "choice" and value in arg.choices:
        st.selectbox(label, arg.choices, index=arg.choices.index(value), on_change=on_change, args=(*args, False), **kw)
    elif arg.kind in ("int", "size") and (value is None or (isinstance(value, int) and not isinstance(value, bool))):
        st.number_input(label, value=value, step=1, placeholder="default", on_change=on_change, args=(*args, False), **kw)
    elif arg.kind == "float" and (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
        st.number_input(label, value=None if value is None else float(value), step=STEPS.get(name, 0.01),
                        format="%g", on_change=on_change, args=(*args, False), **kw)
    else:
        st.text_input(label, value=json.dumps(value), on_change=on_change, args=(*args, True), **kw)


def _layer_row(i: int, uid: int, layer: dict, summary, errors: list) -> None:
    """One layer: its type, shape and parameters, move/remove buttons, its arguments, its errors."""
    kind = layer.get("type")
    schema = LAYER_ARGS.get(kind, {})
    with st.container(border=True):
        head, info, tail = st.columns([2.4, 5, 1.4], vertical_alignment="bottom")
        kinds = list(LAYER_ARGS) if kind in LAYER_ARGS else [*LAYER_ARGS, kind]
        head.selectbox(f"Layer {i}", kinds, index=kinds.index(kind), key=f"bt{uid}", on_change=_edit_layers, args=("type", i))
        if summary is not None:
            out = summary.layers[i]
            info.markdown(f"`{out.name}` → `{tuple(out.output_shape)}` · **{out.params:,}** params")
        b1, b2, b3 = tail.columns(3)
        b1.button("", icon=":material/arrow_upward:", key=f"bu{uid}", help="Move up", on_click=_edit_layers, args=("up", i), disabled=i == 0)
        b2.button("", icon=":material/arrow_downward:", key=f"bd{uid}", help="Move down", on_click=_edit_layers, args=("down", i))
        b3.button("", icon=":material/delete:", key=f"bx{uid}", help="Remove", on_click=_edit_layers, args=("remove", i))
        if schema:
            with st.container(horizontal=True, wrap=True):
                for name, arg in schema.items():
                    key = f"b{uid}_{kind}_{name}"
                    value = layer.get(name, None if arg.default is REQUIRED else arg.default)
                    _field(name, name, arg, value, key, _set_layer_arg, (uid, key, name, arg), width=150)
        for e in errors:
            st.error(common.md(e), icon=":material/error:")


def _settings(doc: dict, gen: int, errors: list) -> None:
    st.text_input("Name", value=str(doc.get("name", "")), key=f"bs{gen}_name", on_change=_set_top, args=(f"bs{gen}_name", "name", None))
    st.text_area("Description", value=str(doc.get("description", "")), height=90, key=f"bs{gen}_description",
                 on_change=_set_top, args=(f"bs{gen}_description", "description", None))
    opt = doc.get("optimizer", "adam")
    shown = ["optimizer", "learning_rate"]
    shown += ["momentum"] if opt in ("sgd", "rmsprop") or doc.get("momentum") else []
    shown += ["nesterov"] if opt == "sgd" or doc.get("nesterov") else []
    shown += ["weight_decay"] if opt in ("adamw", "sgd") or doc.get("weight_decay") else []
    shown += ["epochs", "batch_size", "seed"]
    a, b = st.columns(2)
    for k, name in enumerate(shown):
        arg = TOP_ARGS[name]
        with (a if k % 2 == 0 else b):
            _field(name.replace("_", " "), name, arg, doc.get(name, arg.default), f"bs{gen}_{name}", _set_top, (f"bs{gen}_{name}", name, arg))
    b.number_input("repeats", min_value=1, max_value=100, step=1, key="builder_repeats",
                   help="Runs with seeds seed, seed+1, ...; the leaderboard groups them to mean and spread")
    if doc.get("validation", "holdout") in VALIDATION:
        st.radio("Validation", list(VALIDATION), format_func=VALIDATION.get, horizontal=True,
                 index=list(VALIDATION).index(doc.get("validation", "holdout")), key=f"bs{gen}_validation",
                 on_change=_set_top, args=(f"bs{gen}_validation", "validation", TOP_ARGS["validation"]))
    for e in errors:
        st.error(common.md(f"{e.field or 'spec'}: {e}"), icon=":material/error:")


def _save() -> None:
    s = st.session_state.builder
    try:
        with common.connection() as conn:
            name = experiments.save_experiment(conn, s["doc"]).name
        s["result"] = ("success", f"Saved {name!r}; it is listed under Start from.", [])
    except LabError as exc:
        s["result"] = ("error", str(exc), [])


def _submit() -> None:
    s = st.session_state.builder
    try:
        with common.connection() as conn:
            ids = experiments.submit_experiment(conn, s["doc"], common.source(), repeats=int(st.session_state.builder_repeats))
        s["result"] = ("success", f"Queued job{'s' if len(ids) > 1 else ''} {', '.join(f'#{i}' for i in ids)}.", ids)
    except DataError as exc:
        s["result"] = ("data", str(exc), [])
    except LabError as exc:
        s["result"] = ("error", str(exc), [])


def _actions(doc: dict, valid: bool) -> None:
    """Save, download and submit buttons; save and submit report what they did once, below them."""
    a, b, c = st.columns(3)
    a.button("Save", icon=":material/save:", key="builder_save", disabled=not valid, width="stretch", on_click=_save)
    b.download_button("Download", json.dumps(doc, indent=2), file_name=f"{doc.get('name') or 'experiment'}.json",
                      mime="application/json", icon=":material/download:", key="builder_download", width="stretch")
    c.button("Submit", type="primary", icon=":material/play_arrow:", key="builder_submit", disabled=not valid,
             width="stretch", on_click=_submit)
    kind, message, ids = st.session_state.builder.pop("result", None) or (None, "", [])
    if kind == "data":
        common.data_error(message)
    elif kind:
        getattr(st, kind)(common.md(message))
    if ids:
        st.page_link("pages/training.py", label="Watch them on the Training page", icon=":material/model_training:")


# ------------------------------------------------------------ the page


def _summary_name(doc: dict) -> str:
    """The summary's title: the spec's name if it is a usable one (its own errors show elsewhere)."""
    name = doc.get("name")
    return name if isinstance(name, str) and NAME_PATTERN.fullmatch(name) and name.strip() else "experiment"


def _start_options() -> list[str]:
    with common.connection() as conn:
        saved = experiments.list_experiments(conn)
    return [*(f"preset:{n}" for n in preset_names()), "empty:", *(f"saved:{n}" for n in saved)]


def _start_label(option: str) -> str:
    kind, _, name = option.partition(":")
    return {"preset": f"{name} · {PRESET_TITLES.get(name, '')}", "empty": "empty experiment"}.get(kind, f"saved · {name}")


def render() -> None:
    common.use_the_router()
    s = _state()
    doc, uids = s["doc"], s["uids"]
    st.title("Builder")
    shape, classes, problem = common.data_dims(common.source())
    if problem:
        st.warning(f"Checking against CIFAR-10's shape {shape} and {classes} classes: the dataset is not readable ({common.md(problem)})")
    top = st.columns([3, 1, 3], vertical_alignment="bottom")
    top[0].selectbox("Start from", _start_options(), format_func=_start_label, key="builder_start")
    top[1].button("Load", icon=":material/upload_file:", on_click=_load_choice, key="builder_load", width="stretch")
    top[2].file_uploader("…or upload a spec (JSON, up to 256 KB)", type=["json"], key="builder_upload", on_change=_on_upload)
    if s["notice"]:
        kind, message = s["notice"]
        s["notice"] = None  # shown once
        getattr(st, kind)(common.md(message))
    errors = check_spec(doc, shape, classes)
    try:
        summary = summarize({"name": _summary_name(doc), "layers": doc["layers"]}, shape, classes)
    except SpecErrors:
        summary = None
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader(f"Layers · {summary.total_params:,} parameters" if summary else "Layers")
        for e in (e for e in errors if e.layer is None and e.field == "layers"):
            st.error(common.md(e), icon=":material/error:")
        for i, (uid, layer) in enumerate(zip(uids, doc["layers"])):
            _layer_row(i, uid, layer, summary, [e for e in errors if e.layer == i])
        a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
        a.selectbox("New layer", list(LAYER_ARGS), key="builder_new_type")
        b.number_input("at position", min_value=0, max_value=len(uids), value=len(uids), key=f"builder_new_at{len(uids)}")
        c.button("Add layer", icon=":material/add:", key="builder_add", width="stretch",
                 on_click=lambda: _edit_layers("insert", int(st.session_state[f"builder_new_at{len(uids)}"])))
        if summary is not None:
            st.code(summary.to_text(), language=None)
    with right:
        st.subheader("Training")
        _settings(doc, s["gen"], [e for e in errors if e.layer is None and e.field != "layers"])
        _actions(doc, valid=not errors)
        with st.expander("Edit as JSON"):
            key = f"builder_json_{hash(json.dumps(doc, sort_keys=True))}"
            st.text_area("Spec", json.dumps(doc, indent=2), height=300, key=key)
            st.button("Apply JSON", key="builder_apply", on_click=_apply_json, args=(key,))


render()
