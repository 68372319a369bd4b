"""Every page of the app, driven headless with AppTest on small generated data and a real store."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pagetools import PAGES, TINY, _finished_run
from pagetools import open_page as _open
from pagetools import rerun as _run
from pagetools import texts as _texts

from cifar_core.lab import Lab
from cifar_core.jobs import queue
from cifar_core.spec.presets import get_preset
from cifar_core.spec.summary import summarize
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.procs import cli


# ------------------------------------------------------------------ every page


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_store(app_env, page):
    at = _open(page)
    assert not at.exception
    assert at.title[0].value == PAGES[page]


def test_every_page_file_is_routed_and_listed_here():
    root = Path(__file__).resolve().parent.parent
    files = sorted(f"pages/{p.name}" for p in (root / "pages").glob("*.py") if p.name not in ("common.py", "__init__.py"))
    assert files == sorted(PAGES)
    routed = (root / "app.py").read_text()
    assert all(f'st.Page("{page}", title="{title}"' in routed for page, title in PAGES.items())


# ------------------------------------------------------------------ gallery


def test_gallery_shows_counts_shapes_and_a_chart(app_env):
    at = _open("pages/gallery.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Train images": "400", "Test images": "100"}
    shapes = at.dataframe[0].value
    assert shapes.loc["train", "shape"] == "(400, 32, 32, 3)" and shapes.loc["test", "images"] == 100
    assert list(at.dataframe[1].value.index) == ["red", "green", "blue"]
    assert at.get("plotly_chart")[0].key == "gallery_counts"
    assert len(at.image) >= 2  # the grid and the enlarged image
    assert len(at.selectbox(key="gallery_cell").options) == 100


def test_gallery_same_seed_same_grid_and_reshuffle(app_env):
    at = _open("pages/gallery.py")
    first = list(at.selectbox(key="gallery_cell").options)
    at = _run(at.number_input(key="gallery_seed").set_value(7))
    seven = list(at.selectbox(key="gallery_cell").options)
    at = _run(at.number_input(key="gallery_seed").set_value(8))
    assert list(at.selectbox(key="gallery_cell").options) != seven
    at = _run(at.number_input(key="gallery_seed").set_value(7))
    assert list(at.selectbox(key="gallery_cell").options) == seven
    at = _run(at.button(key="gallery_reshuffle").click())
    assert at.number_input(key="gallery_seed").value != 7
    assert first  # the default seed gives a grid too


def test_gallery_class_filter_split_and_enlarged_label(app_env):
    at = _open("pages/gallery.py")
    at = _run(at.selectbox(key="gallery_class").set_value("cat"))
    captions = at.selectbox(key="gallery_cell").options
    assert len(captions) == 40 and all(": cat (train #" in c for c in captions)
    at = _run(at.segmented_control(key="gallery_split").set_value("test"))
    captions = at.selectbox(key="gallery_cell").options
    assert len(captions) == 10 and all(": cat (test #" in c for c in captions)
    at = _run(at.selectbox(key="gallery_cell").set_value(3))
    assert any(c.startswith("cat · test image #") for img in at.image for c in img.captions)


@pytest.mark.parametrize("bad", ["nowhere", "broken.tar.gz"])
def test_gallery_with_unreadable_data_shows_the_error_and_the_fix(app_env, tmp_path, monkeypatch, bad):
    path = tmp_path / bad
    if bad.endswith(".gz"):
        path.write_bytes(b"this is not an archive" * 10)
    monkeypatch.setenv("CIFAR_LAB_DATA", str(path))
    at = _open("pages/gallery.py")
    text = _texts(at.error)
    assert "The dataset could not be loaded" in text and bad in text
    assert "CIFAR_LAB_DATA" in _texts(at.info)
    # The builder still works against CIFAR-10's shape and says why.
    at = _open("pages/builder.py")
    assert "the dataset is not readable" in _texts(at.warning)


# ------------------------------------------------------------------ builder


def _layers(at: AppTest) -> list[dict]:
    return at.session_state.builder["doc"]["layers"]


def test_builder_starts_from_a_preset_with_its_summary(app_env):
    at = _open("pages/builder.py")
    assert "30,840 parameters" in _texts(at.subheader)  # exp1
    at.selectbox(key="builder_start").set_value("preset:exp4")
    at = _run(at.button(key="builder_load").click())
    assert "122,570 parameters" in _texts(at.subheader)
    assert "Total params: 122,570" in _texts(at.code)
    assert "`l00_conv2d` → `(None, 32, 32, 32)` · **896** params" in _texts(at.markdown)
    assert at.text_input(key=f"bs{at.session_state.builder['gen']}_name").value == "exp4"


def test_builder_shows_each_error_beside_its_layer_and_blocks_submit(app_env):
    at = _open("pages/builder.py")  # exp1: Flatten, Dense 10 relu, Dense 10 softmax
    uid = at.session_state.builder["uids"][1]
    at = _run(at.number_input(key=f"b{uid}_Dense_units").set_value(0))
    assert "layer 1 (Dense): units=0 is out of range 1..4096; use a positive width" in _texts(at.error)
    assert at.button(key="builder_submit").disabled and at.button(key="builder_save").disabled
    at = _run(at.number_input(key=f"b{uid}_Dense_units").set_value(48))
    assert not at.error and not at.button(key="builder_submit").disabled
    assert _layers(at)[1] == {"type": "Dense", "units": 48, "activation": "relu"}


def test_builder_adds_moves_retypes_and_removes_layers(app_env):
    at = _open("pages/builder.py")
    at.selectbox(key="builder_new_type").set_value("Dropout")
    at = _run(at.button(key="builder_add").click())
    assert [l["type"] for l in _layers(at)] == ["Flatten", "Dense", "Dense", "Dropout"]
    assert "the last layer must be Dense(units=10, activation='softmax')" in _texts(at.error)
    dropout = at.session_state.builder["uids"][3]
    at = _run(at.button(key=f"bu{dropout}").click())
    assert [l["type"] for l in _layers(at)] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert not at.error
    at = _run(at.selectbox(key=f"bt{dropout}").set_value("BatchNormalization"))
    assert _layers(at)[2] == {"type": "BatchNormalization"}
    assert "**40** params" in _texts(at.markdown)  # 4 x 10 units
    at = _run(at.button(key=f"bx{dropout}").click())
    assert [l["type"] for l in _layers(at)] == ["Flatten", "Dense", "Dense"]


def test_builder_settings_change_the_spec(app_env):
    at = _open("pages/builder.py")
    gen = at.session_state.builder["gen"]
    assert at.number_input(key=f"bs{gen}_momentum").disabled  # exp1 uses adam
    at = _run(at.selectbox(key=f"bs{gen}_optimizer").set_value("sgd"))
    at = _run(at.number_input(key=f"bs{gen}_momentum").set_value(0.9))
    at = _run(at.radio(key=f"bs{gen}_validation").set_value("holdout"))
    doc = at.session_state.builder["doc"]
    assert (doc["optimizer"], doc["momentum"], doc["validation"]) == ("sgd", 0.9, "holdout")
    at = _run(at.selectbox(key=f"bs{gen}_optimizer").set_value("adam"))
    assert "momentum" not in at.session_state.builder["doc"] and not at.error  # adam reads no momentum
    momentum = at.number_input(key=f"bs{gen}_momentum")
    assert momentum.value == 0.0 and momentum.disabled  # the widget shows the spec, not its old state
    at = _run(at.text_input(key=f"bs{gen}_name").set_value("bad/name"))
    assert "name 'bad/name' must be 1..64 letters" in _texts(at.error)


def _setting(at: AppTest, name: str) -> str:
    """The key of a settings widget: "schedule_every" is the spec's schedule.every."""
    return f"bs{at.session_state.builder['gen']}_{name}"


def _between(at: AppTest, text: str, title: str) -> bool:
    """Whether an error holding `text` is drawn in the settings block titled `title` (before the next block)."""
    def walk(node):
        children = getattr(node, "children", None)
        yield from (x for k in sorted(children) for x in walk(children[k])) if children is not None else [node]

    seq = [(n.type, str(getattr(n, "value", ""))) for n in walk(at.main)]
    start = seq.index(("markdown", f"**{title}**"))
    end = next((i for i in range(start + 1, len(seq)) if seq[i][0] == "markdown" and seq[i][1].startswith("**")), len(seq))
    return any(kind == "error" and text in value.replace("\\", "") for kind, value in seq[start:end])


def test_builder_training_options_reach_the_submitted_spec(app_env, conn):
    at = _open("pages/builder.py")  # exp1: adam at 0.01 for 20 epochs
    at = _run(at.selectbox(key=_setting(at, "optimizer")).set_value("sgd"))
    assert not at.number_input(key=_setting(at, "weight_decay")).disabled
    for kind, name, value in [
        ("number_input", "momentum", 0.9), ("checkbox", "nesterov", True), ("number_input", "weight_decay", 0.0005),
        ("selectbox", "schedule_type", "step"), ("number_input", "schedule_every", 5), ("number_input", "schedule_factor", 0.5),
        ("number_input", "label_smoothing", 0.1), ("checkbox", "augment_flip", True), ("number_input", "augment_translate", 4),
        ("number_input", "augment_cutout", 8), ("checkbox", "tta_flip", True), ("checkbox", "early_stopping", True),
        ("number_input", "early_stopping_patience", 3), ("selectbox", "early_stopping_monitor", "val_loss"),
    ]:
        at = _run(getattr(at, kind)(key=_setting(at, name)).set_value(value))
    assert not at.error
    [chart] = at.get("plotly_chart")  # the schedule preview follows the widgets: halved every 5 of 20 epochs
    y = json.loads(chart.proto.spec)["data"][0]["y"]  # numpy arrays travel as {"dtype", "bdata"}
    rates = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else y
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.01 * 0.5**4)
    at = _run(at.button(key="builder_submit").click())
    spec = queue.get_job(conn, 1).spec
    assert spec["schedule"] == {"type": "step", "every": 5, "factor": 0.5}
    assert spec["augment"] == {"flip": True, "translate": 4, "cutout": 8}
    assert spec["early_stopping"] == {"patience": 3, "monitor": "val_loss", "min_delta": 0.0}
    assert [spec[k] for k in ("optimizer", "momentum", "nesterov", "weight_decay", "label_smoothing", "tta_flip")] == [
        "sgd", 0.9, True, 0.0005, 0.1, True]


def test_builder_invalid_training_options_show_their_errors_beside_them(app_env):
    at = _open("pages/builder.py")
    at = _run(at.selectbox(key=_setting(at, "schedule_type")).set_value("one_cycle"))
    assert at.get("plotly_chart")
    at = _run(at.number_input(key=_setting(at, "schedule_warmup")).set_value(0.95))
    assert _between(at, "schedule warmup=0.95 is out of range: use 0.0..0.9", "Learning-rate schedule")
    assert not at.get("plotly_chart")  # no preview of an invalid schedule
    assert at.button(key="builder_submit").disabled and at.button(key="builder_sweep").disabled
    at = _run(at.number_input(key=_setting(at, "augment_cutout")).set_value(20))
    assert _between(at, "augment cutout=20 must be a whole number of pixels in 0..16", "Regularisation and augmentation")
    at = _run(at.checkbox(key=_setting(at, "early_stopping")).check())
    at = _run(at.number_input(key=_setting(at, "early_stopping_patience")).set_value(0))
    assert _between(at, "early_stopping: patience=0 is out of range 1..1000", "Early stopping")
    assert not _between(at, "patience=0", "Learning-rate schedule")
    at = _run(at.number_input(key=_setting(at, "early_stopping_patience")).set_value(4))
    at = _run(at.number_input(key=_setting(at, "augment_cutout")).set_value(0))
    at = _run(at.number_input(key=_setting(at, "schedule_warmup")).set_value(0.1))
    assert not at.error and not at.button(key="builder_submit").disabled
    assert at.session_state.builder["doc"]["augment"] == {}


def test_builder_sweep_button_hands_the_working_doc_to_the_sweeps_page(app_env):
    at = _open("pages/builder.py")
    at = _run(at.text_input(key=_setting(at, "name")).set_value("to sweep"))
    at = _run(at.number_input(key=_setting(at, "label_smoothing")).set_value(0.2))
    doc = at.session_state.builder["doc"]
    at = _run(at.button(key="builder_sweep").click())
    assert at.title[0].value == "Sweeps"
    assert at.session_state["sweeps_base_doc"] == doc and at.session_state["sweeps_base_doc"]["label_smoothing"] == 0.2
    assert at.session_state["sweeps_base"] == "builder:"  # offered first, and chosen
    assert at.selectbox(key="sweeps_base").options[0] == "Builder · to sweep"
    assert "to_sweeps" not in at.session_state.builder  # coming back to the Builder stays there


def test_builder_upload_validates_and_loads(app_env):
    at = _open("pages/builder.py")
    upload = at.file_uploader(key="builder_upload")
    at = _run(upload.set_value(("tiny.json", json.dumps(TINY).encode(), "application/json")))
    assert [l["type"] for l in _layers(at)] == ["Conv2D", "MaxPool2D", "Flatten", "Dense"]
    assert "Loaded tiny.json." in _texts(at.success)

    bad_layer = dict(TINY, layers=[*TINY["layers"][:3], {"type": "Dense", "units": 10, "activation": "softmax", "kernel_regularizer": "l2"}])
    at = _run(at.file_uploader(key="builder_upload").set_value(("bad.json", json.dumps(bad_layer).encode(), "application/json")))
    assert "1 problem(s)" in _texts(at.warning)
    assert "layer 3 (Dense) takes no 'kernel_regularizer'" in _texts(at.error)

    at = _run(at.file_uploader(key="builder_upload").set_value(("broken.json", b'{"name": "x",', "application/json")))
    assert "broken.json was not loaded: spec is not valid JSON" in _texts(at.error)
    at = _run(at.file_uploader(key="builder_upload").set_value(("huge.json", b" " * 1_300_000 + b"{}", "application/json")))
    assert "huge.json was not loaded: spec is 1.2 MB, over the 1 MB limit" in _texts(at.error)
    assert [l["type"] for l in _layers(at)][-1] == "Dense"  # a rejected upload leaves the spec alone


def test_builder_saves_downloads_and_reloads_an_experiment(app_env, conn):
    at = _open("pages/builder.py")
    gen = at.session_state.builder["gen"]
    at = _run(at.text_input(key=f"bs{gen}_name").set_value("my net"))
    assert at.download_button(key="builder_download").label == "Download"
    at = _run(at.button(key="builder_save").click())
    assert "Saved 'my net'" in _texts(at.success)
    assert Lab().experiment("my net")["layers"][1]["units"] == 10
    assert "saved · my net" in at.selectbox(key="builder_start").options
    at = _run(at.selectbox(key="builder_start").set_value("empty:"))
    at = _run(at.button(key="builder_load").click())
    assert [l["type"] for l in _layers(at)] == ["Flatten", "Dense"]
    at.selectbox(key="builder_start").set_value("saved:my net")
    at = _run(at.button(key="builder_load").click())
    assert at.session_state.builder["doc"]["name"] == "my net" and len(_layers(at)) == 3


def test_builder_json_editor_applies_a_spec(app_env):
    at = _open("pages/builder.py")
    area = next(t for t in at.text_area if t.key.startswith("builder_json_"))
    at = _run(area.set_value(json.dumps(TINY)))
    at = _run(at.button(key="builder_apply").click())
    assert at.session_state.builder["doc"]["name"] == "tiny" and len(_layers(at)) == 4
    area = next(t for t in at.text_area if t.key.startswith("builder_json_"))
    at = _run(area.set_value('{"name": "x", "layers": 5}'))
    at = _run(at.button(key="builder_apply").click())
    assert 'The JSON was not applied: "layers" must be a list of objects' in _texts(at.error)
    assert at.session_state.builder["doc"]["name"] == "tiny"


# ------------------------------------------------------------------ submit, queue, cancel


def test_submitted_job_appears_in_the_queue_and_cancel_marks_it_cancelled(app_env, conn):
    at = _open("pages/builder.py")
    at.number_input(key="builder_repeats").set_value(2)
    at = _run(at.button(key="builder_submit").click())
    assert "Queued jobs #1, #2." in _texts(at.success)
    assert [link.value for link in at.get("page_link")] == ["Watch them on the Training page"]
    assert [j.spec["seed"] for j in sorted(queue.list_jobs(conn), key=lambda j: j.id)] == [0, 1]

    at = _open("pages/training.py")
    shown = _texts(at.markdown)
    assert "**#1 exp1** :gray-badge[queued]" in shown and "**#2 exp1**" in shown
    assert {m.label: m.value for m in at.metric}["Queued"] == "2"
    assert "No worker is running" in _texts(at.warning)
    at = _run(at.button(key="cancel_1").click())
    assert queue.get_job(conn, 1).state == queue.CANCELLED
    assert {m.label: m.value for m in at.metric}["Cancelled"] == "1"
    assert ":orange-badge[cancelled]" in _texts(at.markdown)
    assert "Open run" in [link.value for link in at.get("page_link")]


def test_training_page_shows_progress_eta_and_live_curves(app_env, conn):
    [job_id] = queue.submit(conn, dict(TINY, epochs=4), "test-data").job_ids
    lease = queue.claim(conn, "w").lease
    queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4, "seconds": 3.0})
    queue.heartbeat(conn, lease, 30.0, batch=5, batches=10)
    at = _open("pages/training.py")
    [bar] = at.get("progress")
    assert "epoch 2/4 · batch 5/10" in bar.proto.text
    assert bar.proto.value == int(100 * 1.5 / 4)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Running"] == "1" and metrics["ETA"] != "–" and metrics["Trained"] != "–"
    assert [c.key for c in at.get("plotly_chart")] == [f"live_{job_id}"]
    at = _run(at.button(key=f"cancel_{job_id}").click())
    assert queue.get_job(conn, job_id).cancel_requested
    assert at.button(key=f"cancel_{job_id}").disabled
    assert "cancelling" in at.get("progress")[0].proto.text


def test_training_page_marks_a_first_epoch_eta_rough_and_keeps_the_bar_going_while_validating(app_env, conn, clock):
    from cifar_core.train.phases import TRAINING, VALIDATING, Phase

    [job_id] = queue.submit(conn, dict(TINY, epochs=2), "test-data").job_ids
    lease = queue.claim(conn, "w").lease
    clock.advance(60.0)  # loading the data and building the model
    queue.heartbeat(conn, lease, 30.0, 0, 10, phase=Phase(TRAINING, since=clock.t))
    clock.advance(10.0)
    queue.heartbeat(conn, lease, 30.0, 5, 10)
    at = _open("pages/training.py")
    eta = {m.label: m for m in at.metric}["ETA"]
    assert eta.value == "~37s" and "Rough" in eta.proto.help  # 1.5 epochs of 20 s and 7 s of end phases
    trained = at.get("progress")[0].proto.value
    queue.heartbeat(conn, lease, 30.0, 0, 10, phase=Phase(VALIDATING, 1, 4, since=clock.t))
    at = _open("pages/training.py")
    assert at.get("progress")[0].proto.value >= trained and at.get("progress")[0].proto.value == 50


def test_training_page_names_the_phase_and_draws_the_running_points(app_env, conn):
    from cifar_core.charts.curves import RUNNING_NAME
    from cifar_core.jobs import store
    from cifar_core.train.phases import SCORING, VALIDATING, Phase

    [job_id] = queue.submit(conn, dict(TINY, epochs=4, tta_flip=True), "test-data").job_ids
    lease = queue.claim(conn, "w").lease
    queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4,
                                     "seconds": 30.0, "val_seconds": 10.0})
    for x in (1.25, 1.5):
        queue.heartbeat(conn, lease, 30.0, 10, 10, point=queue.RunningPoint(x, 0.9, 0.55))
    queue.heartbeat(conn, lease, 30.0, 10, 10, phase=Phase(VALIDATING, 3, 8, since=store.now()))
    at = _open("pages/training.py")
    [bar] = at.get("progress")
    assert bar.proto.text == "validating (3/8) · epoch 2/4"
    running = [t for t in _traces(at, f"live_{job_id}") if t["name"] == RUNNING_NAME]
    xs = [np.frombuffer(base64.b64decode(t["x"]["bdata"]), dtype=t["x"]["dtype"]).tolist() for t in running]
    assert xs == [[1.25, 1.5]] * 2 and running[0]["line"]["dash"] == "dot"  # numpy arrays travel as bdata

    queue.heartbeat(conn, lease, 30.0, 10, 10, phase=Phase(SCORING, 0, 2, since=store.now()))
    at = _open("pages/training.py")
    assert at.get("progress")[0].proto.text == "scoring the test set with 2 views"
    assert {m.label: m.value for m in at.metric}["ETA"] not in ("0s", "–")  # the end phases' estimate, not 0


def test_a_retried_run_shows_one_train_time_on_every_page_and_the_cli(app_env, conn, clock):
    """Cancelled while scoring after its last epoch (265 s), retried after 5 minutes in the queue,
    finished 2.35 s into the retry: 267 s of training everywhere, the wait apart."""
    doc = parse_spec({**TINY, "epochs": 1}).to_dict()
    [job_id] = queue.submit(conn, doc, "test-data", params=summarize(doc).total_params).job_ids
    lease = queue.claim(conn, "w1").lease
    queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.2, "val_accuracy": 0.4,
                                     "seconds": 265.0})
    clock.advance(265.0)
    queue.cancel(conn, job_id)
    queue.finish(conn, lease, queue.CANCELLED, error="cancelled after epoch 1")
    clock.advance(300.0)
    queue.retry(conn, job_id)
    at = _open("pages/training.py")
    assert {m.label: m.value for m in at.metric}["Trained"] == "4m 25s"  # queued again: not 9m 25s since it began
    lease = queue.claim(conn, "w2").lease
    clock.advance(2.35)
    queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.4, "test_loss": 1.5})

    at = _open("pages/run.py", run=str(job_id))
    assert {m.label: m.value for m in at.metric}["Train time"] == "4m 27s"
    at = _open("pages/training.py")
    assert "4m 27s training" in _texts(at.markdown) and "+ 5m 00s queued" in _texts(at.caption)
    assert json.loads(cli("show", str(job_id), "--json").stdout)["train_seconds"] == pytest.approx(267.35)


def test_a_real_worker_runs_a_submitted_job_to_its_run_page(app_env, conn, tmp_path):
    at = _open("pages/builder.py")
    at = _run(at.file_uploader(key="builder_upload").set_value(("tiny.json", json.dumps(TINY).encode(), "application/json")))
    at = _run(at.button(key="builder_submit").click())
    assert "Queued job #1." in _texts(at.success)
    cli("worker", "--exit-when-idle", timeout=300)
    assert queue.get_job(conn, 1).state == queue.SUCCEEDED, queue.get_job(conn, 1).error

    at = _open("pages/training.py")
    assert "**#1 tiny** :green-badge[succeeded] · 1/1 epochs" in _texts(at.markdown)
    at = _open("pages/run.py", run="1")
    assert "### #1 tiny · succeeded" in _texts(at.markdown)
    files = at.dataframe[-1].value
    assert {"model.keras", "history.json", "spec.json"} <= set(files["file"])
    assert {b.label for b in at.download_button} == {"Spec (JSON)", "History (CSV)"}


# ------------------------------------------------------------------ leaderboard and run


def test_leaderboard_filters_groups_and_compares_runs(app_env, conn):
    a = _finished_run(conn, "tiny", seed=0)
    b = _finished_run(conn, "tiny", seed=1)
    c = _finished_run(conn, "tiny fast", seed=0, lr=0.01)
    d = _finished_run(conn, "tiny", seed=2, epochs=1, state=queue.FAILED)
    at = _open("pages/leaderboard.py")
    table = at.dataframe[0].value
    assert table["run"].tolist() == [d, c, b, a]
    row = table.set_index("run").loc[a]
    assert (row["status"], row["epochs"], row["best_epoch"]) == ("succeeded", 3, 3)
    assert row["best_val_accuracy"] == pytest.approx(0.45) and row["test_accuracy"] == pytest.approx(0.4)
    assert row["diagnosis"] == "Underfitting: still improving"  # the diagnosis of a low, rising curve
    assert at.download_button(key="lb_csv").label == "Export CSV"

    at = _run(at.text_input(key="lb_name").set_value("FAST"))
    assert at.dataframe[0].value["run"].tolist() == [c]
    at = _run(at.text_input(key="lb_name").set_value(""))
    at = _run(at.multiselect(key="lb_status").set_value(["failed"]))
    assert at.dataframe[0].value["run"].tolist() == [d]
    at = _run(at.multiselect(key="lb_status").set_value([]))
    at = _run(at.toggle(key="lb_group").set_value(True))
    groups = at.dataframe[0].value.set_index("name")
    assert groups.loc["tiny", "runs"] == 2 and groups.loc["tiny fast", "runs"] == 1

    at = _run(at.multiselect(key="lb_runs").set_value([a, c]))
    settings = at.dataframe[1].value
    assert f"#{a} tiny" in settings.columns and f"#{c} tiny fast" in settings.columns
    assert set(settings.index[settings["differs"]]) == {"name", "learning_rate"}
    assert at.get("plotly_chart")[0].key == "lb_overlay"
    assert {link.value for link in at.get("page_link")} == {f"Open #{a} tiny", f"Open #{c} tiny fast"}
    at = _run(at.toggle(key="lb_only_diff").set_value(True))
    assert at.dataframe[1].value["differs"].all()
    at = _run(at.selectbox(key="lb_metric").set_value("loss"))
    at = _run(at.toggle(key="lb_log").set_value(True))
    at = _run(at.slider(key="lb_smooth").set_value(0.6))


def _traces(at: AppTest, key: str) -> list[dict]:
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)["data"]


def test_leaderboard_overlays_the_notebooks_recorded_curves(app_env, conn):
    a = _finished_run(conn, "tiny", seed=0)
    at = _open("pages/leaderboard.py")
    assert at.multiselect(key="lb_notebook").options == ["notebook, exp1", "notebook, exp2", "notebook, exp3",
                                                         "notebook, exp4", "notebook, exp5"]
    at = _run(at.multiselect(key="lb_notebook").set_value(["exp4"]))  # the notebook alone, no run picked
    assert [t["name"] for t in _traces(at, "lb_overlay")] == ["notebook, exp4 train", "notebook, exp4 val"]
    assert "recorded in the notebook, not trained here" in _texts(at.caption)
    assert len(at.dataframe) == 1  # no settings table without runs
    at = _run(at.multiselect(key="lb_runs").set_value([a]))
    traces = _traces(at, "lb_overlay")
    assert [t["name"] for t in traces] == [f"#{a} tiny train", f"#{a} tiny val", "notebook, exp4 train", "notebook, exp4 val"]
    at = _run(at.selectbox(key="lb_metric").set_value("loss"))  # the notebook printed no losses
    assert [t["name"] for t in _traces(at, "lb_overlay")] == [f"#{a} tiny train", f"#{a} tiny val"]
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1  # never stored as runs


def test_run_page_follows_the_query_param_and_shows_errors(app_env, conn):
    ok = _finished_run(conn, "tiny", seed=0)
    failed = _finished_run(conn, "tiny", seed=1, epochs=1, state=queue.FAILED)
    at = _open("pages/run.py", run=str(ok))
    assert at.selectbox(key="run_pick").value == ok
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"] == "40.00%" and metrics["Best val accuracy (epoch 3)"] == "45.00%" and metrics["Epochs"] == "3/3"
    assert at.dataframe[0].value["epoch"].tolist() == [1, 2, 3]
    assert "Total params" in _texts(at.code)
    assert "Underfitting: still improving" in _texts(at.warning)  # the diagnosis, with its numbers
    assert any(link.label == "Error analysis of this run" for link in at.get("page_link"))
    at = _run(at.selectbox(key="run_pick").set_value(failed))
    assert at.query_params["run"] == str(failed)
    assert "DataError: the data vanished" in _texts(at.error)
    at = _open("pages/run.py", run="999")
    assert "There is no run '999'" in _texts(at.warning)


def test_run_page_overlays_the_notebook_curve_of_its_preset(app_env, conn):
    tiny = _finished_run(conn, "tiny", seed=0)
    [exp4] = Lab().submit({**get_preset("exp4"), "name": "my exp4"}, str(app_env), epochs=3).job_ids
    lease = queue.claim(conn, "test-worker").lease
    assert lease.job_id == tiny + 1 == exp4
    for e in (1, 2, 3):
        queue.record_epoch(conn, lease, {"epoch": e, "loss": 1.5 / e, "accuracy": 0.4 + 0.1 * e, "val_loss": 1.6 / e,
                                        "val_accuracy": 0.45 + 0.08 * e, "seconds": 2.0, "learning_rate": 0.001})
    at = _open("pages/run.py", run=str(exp4))
    assert at.selectbox(key=f"run_notebook_{exp4}").value == "exp4"  # offered by default: the same network
    names = [t["name"] for t in _traces(at, "run_curves")]
    assert names[-2:] == ["notebook, exp4 train", "notebook, exp4 validation"]
    assert ("notebook, exp4, recorded in the notebook, not trained here; this run trains the same network, optimizer, "
            "learning rate and batch size, but 3 epochs against the notebook's 20.") in _texts(at.caption)
    at = _run(at.selectbox(key=f"run_notebook_{exp4}").set_value(""))
    assert not any("notebook" in t["name"] for t in _traces(at, "run_curves"))
    at = _run(at.selectbox(key="run_pick").set_value(tiny))  # another network: none by default, any on request
    assert at.selectbox(key=f"run_notebook_{tiny}").value == ""
    at = _run(at.selectbox(key=f"run_notebook_{tiny}").set_value("exp5"))
    assert [t["name"] for t in _traces(at, "run_curves")][-2:] == ["notebook, exp5 train", "notebook, exp5 validation"]


# ------------------------------------------------------------------ the app starts its worker


def test_the_app_starts_one_detached_worker(app_env, conn, monkeypatch):
    import os
    import signal

    from cifar_core.testing.procs import wait_for

    from cifar_core.jobs.worker import list_workers

    monkeypatch.delenv("CIFAR_LAB_NO_WORKER")
    at = _open("pages/training.py")
    at.run()  # a second script run finds the worker starting (or alive) and starts no other
    # The app never waits for the worker it starts: it registers when its imports are done, which a
    # busy host makes take seconds.
    wait_for(lambda: any(w.alive for w in list_workers(conn)), timeout=120, what="the app's worker to register")
    at.run()
    workers = [w for w in list_workers(conn) if w.alive]
    assert len(workers) == 1, list_workers(conn)
    pid = workers[0].pid
    assert os.getsid(pid) == pid  # its own session: stopping the app does not stop it
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:  # already reaped
            return True

    wait_for(gone, timeout=60, what=f"worker {pid} to stop")
    assert not [w for w in list_workers(conn) if w.alive]


# ------------------------------------------------------------------ issue 14: rough edges and trust


def test_gallery_enlarge_box_shows_the_new_grids_label_after_reshuffle(app_env):
    at = _open("pages/gallery.py")
    at = _run(at.selectbox(key="gallery_cell").set_value(4))
    at = _run(at.button(key="gallery_reshuffle").click())
    box = at.selectbox(key="gallery_cell")
    # Streamlit sends the box's value again, with the new grid's caption (else the browser keeps the old one).
    assert box.proto.set_value and box.proto.raw_value == box.options[4]
    at = _run(at.selectbox(key="gallery_class").set_value("cat"))
    box = at.selectbox(key="gallery_cell")
    assert box.proto.set_value and ": cat (train #" in box.proto.raw_value


def test_builder_shows_the_summary_up_to_the_layer_at_fault(app_env):
    at = _open("pages/builder.py")
    at.selectbox(key="builder_start").set_value("preset:exp4")
    at = _run(at.button(key="builder_load").click())
    uids = at.session_state.builder["uids"]
    dense = next(u for u, l in zip(uids, _layers(at)) if l["type"] == "Dense")
    at = _run(at.number_input(key=f"b{dense}_Dense_units").set_value(0))
    assert "units=0 is out of range" in _texts(at.error)
    summary = _texts(at.code)
    assert "l00_conv2d (Conv2D)" in summary and "l06_flatten (Flatten)" in summary and "l07_dense" not in summary
    assert "The summary stops after layer 6: layer 7 has an error" in _texts(at.caption)
    assert "`l00_conv2d` → `(None, 32, 32, 32)` · **896** params" in _texts(at.markdown)
    assert "Layers" in _texts(at.subheader) and "parameters" not in _texts(at.subheader)


def test_builder_disables_moving_the_first_layer_up_and_the_last_down(app_env):
    at = _open("pages/builder.py")
    first, middle, last = at.session_state.builder["uids"]
    assert at.button(key=f"bu{first}").disabled and not at.button(key=f"bd{first}").disabled
    assert not at.button(key=f"bu{middle}").disabled and not at.button(key=f"bd{middle}").disabled
    assert at.button(key=f"bd{last}").disabled and not at.button(key=f"bu{last}").disabled


def test_each_upload_box_states_the_labs_own_limit(app_env, conn):
    """The box's own line ("Limit 1MB per file") and the lab's label say one number: the Builder's
    spec box 1 MB (jsonread.MAX_BYTES), the Predict page's image box 5 MB (uploads.MAX_IMAGE_BYTES)."""
    from cifar_core.data.uploads import MAX_IMAGE_BYTES
    from cifar_core.spec.jsonread import MAX_BYTES

    assert MAX_BYTES == 2**20 and 4 * 2**20 < MAX_IMAGE_BYTES <= 5 * 2**20  # whole megabytes as Streamlit counts
    upload = _open("pages/builder.py").get("file_uploader")[0]
    assert upload.proto.max_upload_size_mb == 1  # Streamlit's smallest limit, not the server's 5 MB
    assert "(JSON, up to 1 MB)" in upload.proto.label and "up to 1 MB" in upload.proto.help
    _finished_run(conn)
    upload = _open("pages/predict.py").get("file_uploader")[0]
    assert upload.proto.max_upload_size_mb == 5
    assert "(up to 5 MB)" in upload.proto.label


@pytest.mark.parametrize("page, submit", [("pages/sweeps.py", "sweeps_submit"), ("pages/builder.py", "builder_submit")])
def test_unreadable_data_is_said_once_escaped_even_after_submit(app_env, tmp_path, monkeypatch, page, submit):
    monkeypatch.setenv("CIFAR_LAB_DATA", str(tmp_path / "nowhere_here"))
    at = _open(page)
    [warning] = at.warning
    assert "the dataset is not readable" in warning.value
    assert r"train/\<class\>/\*.png" in warning.value and r"nowhere\_here" in warning.value  # escaped markdown
    at = _run(at.button(key=submit).click())
    shown = [str(e.value) for e in (*at.warning, *at.error, *at.info)]
    assert sum("does not exist" in text for text in shown) == 1  # not three times
    assert "Nothing was submitted: the dataset could not be loaded (see above)." in shown


def test_a_web_address_in_an_error_is_a_code_span():
    from pages import common

    text = common.md("could not be reached (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: down); train/<class>")
    assert "`https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz`: down" in text and r"train/\<class\>" in text
    assert "\\~" not in text


def test_leaderboard_groups_configurations_and_filters_by_data_source(app_env, conn):
    doc = parse_spec({**TINY, "name": "exp2-s01", "epochs": 1}).to_dict()

    def finished(spec, source, acc):
        [job_id] = queue.submit(conn, spec, source, params=1).job_ids
        lease = queue.claim(conn, "w").lease
        queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": acc, "val_loss": 1.0, "val_accuracy": acc,
                                          "seconds": 1.0, "learning_rate": 0.001})
        queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": acc, "test_loss": 1.0})
        return job_id

    a = finished(doc, "/data/one/cifar.tar.gz", 0.3)
    b = finished({**doc, "learning_rate": 0.01}, "/data/one/cifar.tar.gz", 0.4)  # same name, other settings
    c = finished({**doc, "seed": 1}, "/data/two/jpeg.tar.gz", 0.5)  # same settings, other data
    at = _open("pages/leaderboard.py")
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[a, "data_source"] == "cifar.tar.gz" and table.loc[c, "data_source"] == "jpeg.tar.gz"
    at = _run(at.toggle(key="lb_group").set_value(True))
    groups = at.dataframe[0].value
    assert len(groups) == 3 and set(groups["runs"]) == {1}  # one name, three configurations
    assert groups["best_val_accuracy_std"].isna().all()  # one run has no spread: the cell shows "–", not "None"
    assert at.dataframe[0].proto.placeholder == "–"
    assert "pooled into 3 configurations" in _texts(at.caption)
    at = _run(at.multiselect(key="lb_source").set_value(["cifar.tar.gz"]))
    assert sorted(at.dataframe[0].value["run_ids"]) == [f"#{a}", f"#{b}"]
    at = _run(at.toggle(key="lb_group").set_value(False))
    assert sorted(at.dataframe[0].value["run"]) == [a, b]
    assert "/data/" not in at.download_button(key="lb_csv").proto.label + str(at.dataframe[0].value["data_source"].tolist())


def test_pages_write_percentages_the_same_way(app_env, conn):
    run_id = _finished_run(conn)
    at = _open("pages/training.py")
    assert "best val 45.00% · final val 45.00% · test 40.00%" in _texts(at.markdown)
    at = _open("pages/run.py", run=str(run_id))
    assert {m.value for m in at.metric} >= {"40.00%", "45.00%"}
    at = _open("pages/leaderboard.py")
    column = json.loads(at.dataframe[0].proto.columns)["best_val_accuracy"]["type_config"]
    assert column == {"type": "number", "format": "percent", "step": 0.0001}  # two decimals in the table too


def _as_streamlit_shows(fraction: float) -> str:
    """A percent column's cell as Streamlit's table draws it: the value cut (not rounded) to the
    column's step of 0.0001 (its frontend's truncateDecimals, nudged by a few ulps), then formatted."""
    import math

    scaled = fraction * 1e4
    return f"{math.trunc(scaled + math.copysign(2 ** -52 * abs(scaled) * 10, scaled)) / 100:.2f}%"


def test_percentages_are_rounded_not_cut_in_text_and_tables_alike(app_env, conn):
    """Issue 31: 0.637099 read 63.71% on the Training page and 63.70% in the Leaderboard's table."""
    doc = parse_spec({**TINY, "epochs": 1}).to_dict()
    ids = queue.submit(conn, doc, "test-data", repeats=2, params=summarize(doc).total_params).job_ids
    for job_id in ids:
        lease = queue.claim(conn, "w").lease
        queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.7, "val_loss": 1.1,
                                         "val_accuracy": 0.637099, "seconds": 1.0})
        queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.637104, "test_loss": 1.0})
    at = _open("pages/training.py")
    assert "best val 63.71% · final val 63.71% · test 63.71%" in _texts(at.markdown)
    at = _open("pages/leaderboard.py")
    board = at.dataframe[0].value
    assert {_as_streamlit_shows(v) for v in (*board["best_val_accuracy"], *board["test_accuracy"])} == {"63.71%"}
    at = _run(at.toggle(key="lb_group").set_value(True))
    [row] = at.dataframe[0].value.to_dict("records")
    assert _as_streamlit_shows(row["best_val_accuracy_mean"]) == _as_streamlit_shows(row["test_accuracy_mean"]) == "63.71%"


def test_streamlit_deploy_button_is_hidden():
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"


def test_builder_recipe_options_show_their_help_and_reach_the_submitted_spec(app_env, conn):
    at = _open("pages/builder.py")
    count = len(at.session_state.builder["uids"])
    at.selectbox(key="builder_new_type").set_value("Whitening")
    at.number_input(key=f"builder_new_at{count}").set_value(0)
    at = _run(at.button(key="builder_add").click())
    whitening = at.session_state.builder["uids"][0]
    assert at.session_state.builder["doc"]["layers"][0] == {"type": "Whitening"} and not at.error
    bias_epochs = at.number_input(key=f"b{whitening}_Whitening_bias_epochs")
    assert bias_epochs.value == 3 and "frozen" in bias_epochs.help
    for kind, name, value in [("number_input", "logit_scale", 0.25), ("number_input", "ema_momentum", 0.99),
                              ("number_input", "bn_bias_lr_multiplier", 64.0), ("checkbox", "augment_alternate_flip", True)]:
        widget = getattr(at, kind)(key=_setting(at, name))
        assert widget.help, name
        at = _run(widget.set_value(value))
    assert not at.error
    at = _run(at.button(key="builder_submit").click())
    spec = queue.get_job(conn, 1).spec
    assert spec["layers"][0]["type"] == "Whitening" and spec["augment"]["alternate_flip"] is True
    assert [spec[k] for k in ("logit_scale", "ema_momentum", "bn_bias_lr_multiplier")] == [0.25, 0.99, 64.0]


def test_cancelling_a_running_job_says_when_it_stops_and_what_it_keeps(app_env, conn):
    [job_id] = queue.submit(conn, TINY, "test-data").job_ids
    queue.claim(conn, "test-worker")
    at = _open("pages/training.py")
    at = _run(at.button(key=f"cancel_{job_id}").click())
    assert _texts(at.toast) == f"Job #{job_id} stops within 5 s; its finished epochs are kept."
    assert queue.get_job(conn, job_id).cancel_requested


def test_run_page_opens_the_newest_started_run_not_one_waiting_in_the_queue(app_env, conn):
    done = _finished_run(conn, "tiny", seed=0)
    [waiting] = Lab().submit({**TINY, "name": "later"}, str(app_env)).job_ids
    at = _open("pages/run.py")
    assert at.selectbox(key="run_pick").value == done and at.query_params["run"] == str(done)
    assert at.selectbox(key="run_pick").options[0] == f"#{waiting} later (queued)"  # still listed first
    at = _open("pages/run.py", run="999")
    assert at.selectbox(key="run_pick").value == done and "showing the newest started run" in _texts(at.warning)
