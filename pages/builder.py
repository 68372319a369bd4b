"""Architecture builder: edit an experiment layer by layer beside its Keras-style summary, set its
training options, see every error beside the setting at fault; then save, download, submit it or
hand it to the Sweeps page. The rules live in cifar_core.views.builder; the spec being edited lives in
st.session_state (a UI selection until saved). Widgets write into the spec from on_change callbacks,
and each run writes the spec's values into the widgets' state before drawing them: the spec is the
truth, so a change made elsewhere (a new optimizer clearing momentum) shows at once."""

from __future__ import annotations

import copy
import json

import streamlit as st

from cifar_core.charts import curves as charts
from cifar_core.data.uploads import box_megabytes
from cifar_core.views import builder as core
from cifar_core.spec import jsonread
from cifar_core.spec.presets import get_preset, preset_names
from cifar_core.spec.layers import LAYER_ARGS
from cifar_core.spec.validate import check_spec
from pages import common

HANDOFF = "sweeps_base_doc"  # read by the Sweeps page
SPEC_LIMIT = jsonread.size_text(jsonread.MAX_BYTES)  # the lab's limit: the box below states the same one
UPLOAD_HELP = f"A spec file of up to {SPEC_LIMIT}, as the lab's JSON editor and command line read it."
WIDE = ("text", "textarea", "radio")  # widgets drawn across the panel, after the two-column grid


def _edit(change, *args) -> None:
    """A callback applying one cifar_core.views.builder change; callbacks run before the rerun draws."""
    st.session_state.builder = change(st.session_state.builder, *args)


def _stored(change, *args) -> None:
    """A callback applying a change that reads or writes the store."""
    _edit(change, common.lab(), *args)


def _on_upload() -> None:
    if (upload := st.session_state.builder_upload) is not None:
        _edit(core.load_json, upload.getvalue(), upload.name)


def _changed(f: core.Field, key: str, uid: int | None) -> None:
    _edit(core.apply_widget, f, st.session_state[key], uid)


def _sweep() -> None:
    """Hand the spec to the Sweeps page; render switches (a callback cannot; common.page may rerun first)."""
    st.session_state[HANDOFF] = copy.deepcopy(st.session_state.builder["doc"])
    st.session_state.builder["to_sweeps"] = True


def _field(f: core.Field, key: str, uid: int | None = None, width="stretch") -> None:
    """The widget of a setting (or of layer `uid`'s argument), showing the spec's value."""
    st.session_state[key] = f.shown  # the spec is the truth (see the module docstring)
    kw = dict(key=key, on_change=_changed, args=(f, key, uid), disabled=not f.enabled, width=width, help=f.help or None)
    if f.widget == "checkbox":
        st.checkbox(f.label, **kw)
    elif f.widget == "select":
        st.selectbox(f.label, f.options, **kw)
    elif f.widget == "radio":
        st.radio(f.label, f.options, format_func=lambda o: f.labels.get(o, o), horizontal=True, **kw)
    elif f.widget in ("int", "float"):
        st.number_input(f.label, step=f.step, format="%g" if f.widget == "float" else None, placeholder="default", **kw)
    elif f.widget == "textarea":
        st.text_area(f.label, height=90, **kw)
    else:  # text, or JSON for a value of another kind
        st.text_input(f.label, **kw)


def _say(message: tuple[str, str] | None, problem: str | None = None) -> None:
    """Show a (kind, text) outcome: st.success/warning/error, or "data" for the dataset's own panel
    (one line when the page already shows that `problem`)."""
    if message and message[0] == "data":
        common.data_refused(message[1], problem)
    elif message:
        getattr(st, message[0])(common.md(message[1]))


def _errors(messages) -> None:
    for m in messages:
        st.error(common.md(m), icon=":material/error:")


def _layer(row: core.LayerRow, last: bool) -> None:
    """One layer: its type, shape and parameters, move/remove buttons, its arguments, its errors."""
    uid = row.uid
    with st.container(border=True):
        head, info, tail = st.columns([2.4, 5, 1.4], vertical_alignment="bottom")
        st.session_state[f"bt{uid}"] = row.kind
        head.selectbox(f"Layer {row.index}", row.kinds, key=f"bt{uid}",
                       on_change=lambda: _edit(core.retype_layer, uid, st.session_state[f"bt{uid}"]))
        info.markdown(row.info or "")
        b1, b2, b3 = tail.columns(3)
        b1.button("", icon=":material/arrow_upward:", key=f"bu{uid}", help="Move up", on_click=_edit,
                  args=(core.move_layer, uid, -1), disabled=row.index == 0)
        b2.button("", icon=":material/arrow_downward:", key=f"bd{uid}", help="Move down", on_click=_edit,
                  args=(core.move_layer, uid, 1), disabled=last)
        b3.button("", icon=":material/delete:", key=f"bx{uid}", help="Remove", on_click=_edit, args=(core.remove_layer, uid))
        with st.container(horizontal=True, wrap=True):
            for f in row.fields:
                _field(f, f"b{uid}_{row.kind}_{f.key}", uid, width=150)
        _errors(row.errors)


def _group(g: core.Group, gen: int) -> None:
    """A block of settings: a two-column grid, the wide widgets, the errors, then a schedule's chart."""
    st.markdown(f"**{g.title}**")
    grid = [f for f in g.fields if f.widget not in WIDE]
    cols = st.columns(2) if grid else []
    for k, f in enumerate(grid):
        with cols[k % 2]:
            _field(f, f"bs{gen}_{f.key}")
    for f in (f for f in g.fields if f.widget in WIDE):
        _field(f, f"bs{gen}_{f.key}")
    _errors(g.errors)
    if g.preview is not None:
        st.plotly_chart(charts.schedule(g.preview), key="builder_schedule_chart")


def _actions(doc: dict, valid: bool, problem: str | None) -> None:
    """Save, download, sweep and submit; save and submit report what they did once, below them."""
    r, t = st.columns([1, 3], vertical_alignment="bottom")
    r.number_input("repeats", min_value=1, max_value=100, step=1, key="builder_repeats", width=160,
                   help="Runs with seeds seed, seed+1, ...; the leaderboard groups them to mean and spread")
    t.text_input("tags", key="builder_tags", placeholder="muon lr-sweep", help=common.TAGS_HELP)
    no_save, no_submit = common.lab().may("save"), common.lab().may("submit")
    with st.container(horizontal=True, wrap=True):
        st.button("Save", icon=":material/save:", key="builder_save", disabled=not valid or bool(no_save),
                  on_click=_stored, args=(core.save,), help=no_save)
        st.download_button("Download", json.dumps(doc, indent=2), file_name=f"{doc.get('name') or 'experiment'}.json",
                           mime="application/json", icon=":material/download:", key="builder_download")
        st.button("Sweep…", icon=":material/tune:", key="builder_sweep", disabled=not valid, on_click=_sweep,
                  help="Search settings around this experiment on the Sweeps page")
        st.button("Submit", type="primary", icon=":material/play_arrow:", key="builder_submit",
                  disabled=not valid or bool(no_submit), help=no_submit,
                  on_click=lambda: _stored(core.submit, common.source(), st.session_state.builder_repeats,
                                           common.words(st.session_state.builder_tags)))
    _say(result := st.session_state.builder.pop("result", None), problem)
    if result and st.session_state.builder.get("queued"):
        st.page_link("pages/training.py", label="Watch them on the Training page", icon=":material/model_training:")


def render() -> None:
    if "builder" not in st.session_state:
        st.session_state.builder = core.new_editor(get_preset(preset_names()[0]))
    s = st.session_state.builder
    if s.pop("to_sweeps", False):
        st.switch_page("pages/sweeps.py")
    doc, count = s["doc"], len(s["uids"])
    st.title("Builder")
    shape, classes, problem = common.data_dims(common.source())
    if problem:
        common.data_warning(problem)
    saved = common.lab().experiment_names()
    top = st.columns([3, 1, 3], vertical_alignment="bottom")
    top[0].selectbox("Start from", core.start_options(saved), format_func=core.start_label, key="builder_start")
    top[1].button("Load", icon=":material/upload_file:", key="builder_load", width="stretch",
                  on_click=lambda: _stored(core.load_start, st.session_state.builder_start))
    top[2].file_uploader(f"…or upload a spec (JSON, up to {SPEC_LIMIT})", type=["json"], key="builder_upload",
                         on_change=_on_upload, max_upload_size=box_megabytes(jsonread.MAX_BYTES), help=UPLOAD_HELP)
    _say(s.pop("notice", None))
    errors = check_spec(doc, shape, classes)
    summary = core.summary_of(doc, shape, classes)
    complete = core.summary_complete(doc, summary)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader(f"Layers · {summary.total_params:,} parameters" if complete else "Layers")
        _errors(core.place_errors(errors).get("layers", []))
        for row in core.layer_rows(s, summary, errors):
            _layer(row, last=row.index == count - 1)
        a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
        a.selectbox("New layer", list(LAYER_ARGS), key="builder_new_type")
        b.number_input("at position", min_value=0, max_value=count, value=count, key=f"builder_new_at{count}")
        c.button("Add layer", icon=":material/add:", key="builder_add", width="stretch", on_click=lambda: _edit(
            core.add_layer, st.session_state[f"builder_new_at{count}"], st.session_state.builder_new_type))
        if summary is not None:
            if not complete:
                st.caption(f"The summary stops after layer {len(summary.layers) - 1}: layer {len(summary.layers)} has "
                           "an error (shown beside it), so the shapes after it cannot be worked out; its totals count the layers above only.")
            st.code(summary.to_text(), language=None)
    with right:
        st.subheader("Training")
        for group in core.settings_groups(doc, errors):
            _group(group, s["gen"])
        _actions(doc, valid=not errors, problem=problem)
        with st.expander("Edit as JSON"):
            key = f"builder_json_{hash(json.dumps(doc, sort_keys=True))}"
            st.text_area("Spec", json.dumps(doc, indent=2), height=300, key=key)
            st.button("Apply JSON", key="builder_apply", on_click=lambda: _edit(core.load_json, st.session_state[key].encode()))


common.page(render)
