"""Error analysis page: for one finished run, per-class accuracy, the confusion matrix (counts and
row percentages) and its misclassified test images filterable by true and predicted class; and
against a second run, the per-class and confusion differences, the images only one gets right,
and whether the accuracy difference is significant, in words (set against the seed spread when
the two are seeds of one configuration). All from the test predictions each run stored when it
finished. Both pickers sit at the top; with a second run chosen, the comparison is the first tab
and the run alone the second, so neither is thousands of pixels down the page."""

from __future__ import annotations

import streamlit as st

from cifar_core.data import gallery
from cifar_core.analysis import prediction
from cifar_core.charts import prediction as prediction_charts
from cifar_core.errors import DataError, LabError
from pages import common

ANY = "any"
SCALE = 4  # test images are shown 128x128, nearest-neighbour
NONE = 0


def _runs() -> tuple[list[int], dict[int, str], dict[int, str]]:
    """The scored runs, newest first: archived ones when the toggle shows them or a link names them
    (?run=ID, ?compare=ID), as the Run page opens an archived run from a link."""
    linked = [int(v) for v in (st.query_params.get("run"), st.query_params.get("compare")) if v and v.isdigit()]
    card = common.lab().scorecard(archived=common.show_archived("analysis_archived"), spare=linked)
    card = card.sort_values("run", ascending=False)
    labels = {int(r.run): f"#{int(r.run)} {r.label} ({common.percent(r.test_accuracy)})" for r in card.itertuples()}
    return list(labels), labels, dict(zip(card["run"].astype(int), card["data_source"]))


def _query_run(key: str, options: list[int]) -> int | None:
    value = st.query_params.get(key)
    return int(value) if value and value.isdigit() and int(value) in options else None


def _gallery(x, indices, captions) -> None:
    if len(indices) == 0:
        st.caption("No images.")
        return
    st.image([gallery.upscale(x[int(i)], SCALE) for i in indices], caption=list(captions), width=32 * SCALE,
             output_format="PNG")


def _single(ea: prediction.ErrorAnalysis, stored, ds) -> None:
    names = ea.class_names
    a, b, c = st.columns(3)
    a.metric("Test accuracy", common.percent(ea.accuracy))
    b.metric("Test images", f"{len(stored.y_true):,}")
    c.metric("Misclassified", f"{int((~stored.correct).sum()):,}")
    per_class, confusion, wrong = st.tabs(["Per-class accuracy", "Confusion matrix", "Misclassified images"])
    with per_class:
        st.plotly_chart(prediction_charts.per_class_figure(ea.per_class), key="analysis_per_class")
        common.table(ea.per_class, hide_index=True, key="analysis_per_class_table",
                     column_config={"accuracy": common.PERCENT})
    with confusion:
        st.plotly_chart(prediction_charts.confusion_figure(ea.confusion, names, ea.row_percent), key="analysis_confusion")
        st.caption("Rows are the true class, columns the prediction; each cell shows the count and its share of the row.")
    with wrong:
        f1, f2, f3 = st.columns([2, 2, 1])
        true = f1.selectbox("True class", [ANY, *names], key="analysis_true")
        pred = f2.selectbox("Predicted class", [ANY, *names], key="analysis_pred")
        limit = f3.number_input("Show", min_value=6, max_value=200, value=36, step=6, key="analysis_limit")
        frame = prediction.misclassified(stored, names, None if true == ANY else names.index(true),
                                         None if pred == ANY else names.index(pred), int(limit))
        st.caption(f"{len(frame)} shown, most confident mistakes first.")
        _gallery(ds.x_test, frame["index"],
                 [f"{t} → {p} ({common.percent(c)})" for t, p, c in zip(frame["true_name"], frame["pred_name"], frame["confidence"])])


def _compare(stored_a, stored_b, ds) -> None:
    names = ds.class_names
    a_id, b_id = stored_a.run, stored_b.run
    cmp = prediction.compare_runs(stored_a, stored_b, names, seeds=common.lab().seed_pair(a_id, b_id))
    (st.success if cmp.decisive else st.info)(cmp.verdict, icon=":material/balance:")
    x, y = st.columns(2)
    x.metric(f"Run #{a_id} (A)", common.percent(cmp.accuracy_a))
    y.metric(f"Run #{b_id} (B)", common.percent(cmp.accuracy_b), delta=f"{(cmp.accuracy_b - cmp.accuracy_a) * 100:+.1f} points")
    st.plotly_chart(prediction_charts.per_class_figure(cmp.per_class, "difference", title="Per-class accuracy, B - A (points)"),
                    key="analysis_diff_per_class")
    st.plotly_chart(prediction_charts.confusion_figure(cmp.confusion_diff, names, title="Confusion matrix, B - A (counts)"),
                    key="analysis_diff_confusion")
    st.caption("Blue is in B's favour everywhere: on the diagonal B gets more of that class right, off it B makes "
               "that mistake less often. Red is in A's favour. Cells show B's count minus A's.")
    left, right = st.columns(2)
    for col, right_run, wrong_run, which in ((left, a_id, b_id, "a"), (right, b_id, a_id, "b")):
        with col:
            frame = prediction.disagreements(stored_a, stored_b, names, which)
            total = len(cmp.a_right_b_wrong if which == "a" else cmp.b_right_a_wrong)
            st.markdown(f"**#{right_run} right, #{wrong_run} wrong** ({total:,} images; {len(frame)} shown)")
            wrong_col = "pred_b_name" if which == "a" else "pred_a_name"
            _gallery(ds.x_test, frame["index"],
                     [f"{t}; #{wrong_run} said {w}" for t, w in zip(frame["true_name"], frame[wrong_col])])


def render() -> None:
    st.title("Error analysis")
    runs, labels, sources = _runs()
    if not runs:
        st.info("No run has finished yet: error analysis reads the test predictions a run stores when it finishes.")
        return
    first = _query_run("run", runs)
    run = st.selectbox("Run", runs, index=runs.index(first) if first else 0, format_func=labels.get, key="analysis_run")
    same = [r for r in runs if r != run and sources[r] == sources[run]]
    other = _query_run("compare", same)
    compare = st.selectbox("Compare with", [NONE, *same], index=same.index(other) + 1 if other else 0,
                           format_func=lambda r: "nothing" if r == NONE else labels[r], key="analysis_compare",
                           help="Runs scored on the same test images.")
    try:
        ds = common.dataset(sources[run])
    except DataError as exc:
        common.data_error(exc)
        return
    try:
        stored = common.lab().stored_predictions(run)
        prediction.check_test_set(stored, ds.y_test)
        stored_b = common.lab().stored_predictions(compare) if compare != NONE else None
        ea = prediction.error_analysis(stored, ds.class_names)
    except LabError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if stored_b is None:
        _single(ea, stored, ds)
        return
    against, alone = st.tabs([f"Run #{run} (A) against run #{compare} (B)", f"Run #{run} alone"])
    with against:
        try:
            _compare(stored, stored_b, ds)
        except LabError as exc:
            st.error(str(exc), icon=":material/error:")
    with alone:
        _single(ea, stored, ds)


common.page(render)
