"""The Model choice, Predict and Error analysis pages, driven headless with AppTest on tiny real
runs trained by a real worker (the lab of trainedlab.build_lab)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from pagetools import open_page
from pagetools import rerun as _run
from pagetools import texts as _texts
from trainedlab import lab  # noqa: F401  (the shared trained lab)

from cifar_core.analysis import choice
from cifar_core.charts import prediction as prediction_charts
from cifar_core.jobs import store
from cifar_core.testing.procs import ROOT

PAGES = ["pages/choice.py", "pages/predict.py", "pages/analysis.py"]


@pytest.fixture(autouse=True)
def app_env(monkeypatch, small_data):
    monkeypatch.setenv("CIFAR_LAB_NO_WORKER", "1")
    monkeypatch.setenv("CIFAR_LAB_DATA", str(small_data))
    monkeypatch.syspath_prepend(str(ROOT))  # the pages import `pages.common`


def _open(page: str, **query):
    return open_page(page, via_app=False, **query)








def _png(size=(64, 48), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("page", PAGES)
def test_pages_before_any_run_finished(lab_home, page):
    at = _open(page)
    assert "No run has finished yet" in _texts(at.info)
    assert not at.error


def test_choice_page_shows_scorecard_front_and_recommendation(lab):
    at = _open("pages/choice.py")
    conn = store.connect()
    expected = choice.choose(conn).recommendation
    assert [s.value for s in at.subheader] == ["Candidates", "Recommendation", "Measure candidates together",
                                               "Refit on train + holdout", "Export for serving"]
    shown = at.dataframe[0].value
    assert sorted(shown["label"]) == ["dense", "tiny"] and shown["rank"].tolist() == [1, 2]
    assert shown["run"].iloc[0] == expected.run
    assert at.dataframe[1].value["run"].tolist() == [1, 2, 3]
    assert len(at.get("plotly_chart")) == 1
    text = _texts(at.markdown)
    assert f"**Recommended for production: {expected.label} (run #{expected.run}).**" in text
    assert "**Why this one:**" in text and "**What it gives up:**" in text and "McNemar on the same 100 test images" in text
    assert expected.text in _texts(at.code)  # the copyable version
    assert "finished run(s)" in _texts(at.caption)
    assert at.selectbox(key="choice_export_run").value == expected.run


def test_choice_page_measures_candidates_together(lab):
    at = _open("pages/choice.py")
    conn = store.connect()
    made = choice.choose(conn)
    shown = at.multiselect(key="choice_measure_runs")
    assert shown.value == choice.measure_candidates(made.candidates)  # the front's runs, recommended first
    assert "MACs/image" in str(at.dataframe[0].proto)  # the scorecard shows the deterministic cost
    at = _run(shown.set_value([1, 3]))
    at = _run(at.number_input(key="choice_measure_rounds").set_value(2))
    at = _run(at.button(key="choice_measure").click())
    assert not at.error, _texts(at.error)
    (table,) = [d.value for d in at.dataframe if "spread_pct" in d.value]
    assert sorted(table["run"]) == [1, 3] and (table["spread_pct"] >= 0).all()
    session = conn.execute("SELECT MAX(session) FROM latency_measurements").fetchone()[0]
    caption = _texts(at.caption)
    assert f"Session {session}: 2 run(s), 2 rounds" in caption and "slowest / fastest p50" in caption
    rows = conn.execute("SELECT id, latency_session, measured_while_busy FROM runs WHERE id IN (1, 3)").fetchall()
    assert [r["latency_session"] for r in rows] == [session, session]
    assert ("Measured while other processes used the CPU" in _texts(at.warning)) == bool(rows[0]["measured_while_busy"])
    conn.close()


def test_choice_page_exports_the_chosen_run(lab):
    at = _open("pages/choice.py")
    run = at.selectbox(key="choice_export_run").value
    name = at.text_input(key=f"choice_export_name_{run}").value
    version = at.number_input(key=f"choice_export_version_{run}_{name}").value
    at = _run(at.button(key="choice_export").click())
    assert not at.error, _texts(at.error)
    assert f"Exported **{name}** version {version}" in _texts(at.success)
    assert (lab / "exports" / name / str(version) / "saved_model.pb").is_file()
    folder = lab / "exports" / name / str(version)  # every format in the version folder
    assert (folder / "model.tflite").is_file() and (folder / "model.keras").is_file()
    assert at.number_input(key=f"choice_export_version_{run}_{name}").value == version + 1  # never overwrite
    assert {b.label for b in at.get("download_button")} >= {"Download keras", "Download saved_model", "Download tflite"}
    configs = [json.loads(d.proto.columns or "{}") for d in at.dataframe]
    assert [c["agreement"]["type_config"]["format"] for c in configs if "agreement" in c] == ["percent"]  # 100%, not 1
    # A version that exists is refused in words.
    at.number_input(key=f"choice_export_version_{run}_{name}").set_value(version)
    at = _run(at.button(key="choice_export").click())
    assert f"{name}/{version} already exists; export with version={version + 1}" in _texts(at.error)


def test_predict_page_refuses_a_bad_upload(lab):
    at = _open("pages/predict.py")
    at = _run(at.file_uploader(key="predict_upload").set_value(("cat.png", b"GIF89a not really a png", "image/png")))
    assert "**cat.png was not accepted:** not a PNG or JPEG image: it is a GIF image; save it as PNG or JPEG" in _texts(at.error)
    assert not at.get("plotly_chart")
    truncated = _png()[:40]
    at = _run(at.file_uploader(key="predict_upload").set_value(("cut.png", truncated, "image/png")))
    assert "the PNG is truncated or corrupt" in _texts(at.error)


def test_predict_page_upload_with_two_models_side_by_side(lab):
    at = _open("pages/predict.py")
    default = at.multiselect(key="predict_runs").value
    assert len(default) == 1  # the most accurate run
    at = _run(at.file_uploader(key="predict_upload").set_value(("red.png", _png(), "image/png")))
    assert not at.error
    images = at.get("image")
    assert len(images) == 2 and "red.png: PNG, 64x48 pixels" in images[0].proto.imgs[0].caption
    assert "what the model sees: 32x32" in images[1].proto.imgs[0].caption
    assert len(at.get("plotly_chart")) == 1
    [bars] = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert set(bars["marker"]["color"]) == {prediction_charts.NEUTRAL}  # the true class of an upload is unknown
    assert " · right" not in _texts(at.markdown) and " · wrong" not in _texts(at.markdown)
    at = _run(at.multiselect(key="predict_runs").set_value([3, 1]))
    assert len(at.get("plotly_chart")) == 2
    text = _texts(at.markdown)
    assert text.index("**#3 dense") < text.index("**#1 tiny")  # side by side, in the order chosen


def test_predict_page_test_image(lab, small_data):
    from cifar_core.data.sources import load_dataset

    names = load_dataset(str(small_data)).class_names
    at = _open("pages/predict.py")
    at = _run(at.segmented_control(key="predict_from").set_value("Test image"))
    at = _run(at.number_input(key="predict_index").set_value(57))
    assert f"test image #57, true class **{names[5]}**" in at.get("image")[0].proto.imgs[0].caption  # 10 per class
    assert len(at.get("plotly_chart")) == 1 and not at.error
    runs = at.multiselect(key="predict_runs").options
    seen = set()
    for index in range(0, 100, 7):  # test images the chosen models get right and wrong
        at = _run(at.number_input(key="predict_index").set_value(index))
        true = names[index // 10]
        for chart in at.get("plotly_chart"):
            [bars] = json.loads(chart.proto.spec)["data"]
            colours = dict(zip(bars["y"], bars["marker"]["color"]))
            top = bars["y"][-1]  # the most probable is drawn on top
            right = top == true
            seen.add(right)
            assert colours[top] == (prediction_charts.RIGHT if right else prediction_charts.WRONG), (index, top, true)
            assert all(c == prediction_charts.NEUTRAL for k, c in colours.items() if k not in (top, true))
        assert (" · right" if right else f" · wrong (it is {true})") in _texts(at.markdown)
    assert seen == {True, False}, runs


def test_analysis_page_one_run(lab):
    at = _open("pages/analysis.py", run="1")
    assert at.selectbox(key="analysis_run").value == 1
    stored = np.load(lab / "runs" / "1" / "predictions.npz")
    accuracy = float((stored["probs"].argmax(1) == stored["y_true"]).mean())
    # Issue 14: every page writes percentages with two decimals, as the tables do (was f"{accuracy:.1%}")
    assert [m.value for m in at.metric][:3] == [f"{accuracy:.2%}", "100", str(int(round((1 - accuracy) * 100)))]
    assert len(at.get("plotly_chart")) == 2  # per-class bars and the confusion heatmap
    at = _run(at.selectbox(key="analysis_true").set_value("airplane"))
    captions = [i.caption for i in at.get("image")[0].proto.imgs] if at.get("image") else []
    assert all(c.startswith("airplane → ") for c in captions)
    assert not any(c.startswith("airplane → airplane") for c in captions)


def test_analysis_page_compares_two_runs(lab):
    at = _open("pages/analysis.py", run="1", compare="3")
    assert at.selectbox(key="analysis_compare").value == 3
    verdict = _texts(at.success) + _texts(at.info)
    assert "on the same 100 test images" in verdict and "McNemar's test" in verdict and "paired bootstrap" in verdict
    assert len(at.get("plotly_chart")) == 4  # the run's two, and the two differences
    text = _texts(at.markdown)
    assert "**#1 right, #3 wrong**" in text and "**#3 right, #1 wrong**" in text
    at = _run(at.selectbox(key="analysis_compare").set_value(0))
    assert len(at.get("plotly_chart")) == 2


def test_analysis_page_puts_the_comparison_first_and_knows_two_seeds(lab):
    """Issue 14: the comparison sat 4,000 px down, below the run's own galleries, and two seeds of
    one configuration were called "significant ... run #2 is the better model"."""
    at = _open("pages/analysis.py", run="1")
    assert [s.key for s in at.selectbox][:2] == ["analysis_run", "analysis_compare"]  # both pickers on top
    assert not at.tabs[0].label.startswith("Run #1 (A)")  # nothing to compare: the run alone, as before
    at = _run(at.selectbox(key="analysis_compare").set_value(2))  # runs 1 and 2: "tiny" seeds 0 and 1
    against, alone = at.tabs[0], at.tabs[1]
    assert (against.label, alone.label) == ("Run #1 (A) against run #2 (B)", "Run #1 alone")
    verdict = _texts(against.info)
    assert verdict.startswith("Runs #1 and #2 are two seeds (0 and 1) of one configuration: the difference is seed "
                              "noise unless it exceeds the seed spread.")
    assert "Only 2 seeds of this configuration have finished: too few to know its seed spread" in verdict
    assert "McNemar's test, for these two trained models, not the configuration" in verdict
    assert "better model" not in verdict and not against.success  # never shown as a win
    assert [c.key for c in against.get("plotly_chart")] == ["analysis_diff_per_class", "analysis_diff_confusion"]
    assert "Blue is in B's favour everywhere" in _texts(against.caption)
    assert [m.label for m in alone.metric][:1] == ["Test accuracy"]  # the run's own analysis, second
