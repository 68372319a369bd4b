"""Choosing the model: the ranking rule, Pareto front and recommendation text on hand-made
scorecards, then the scorecard, diagnosis wrappers, `measure` and `export` on tiny real runs
trained by a real worker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trainedlab import home, lab  # noqa: F401  (the shared trained lab; home overrides conftest's)

from cifar_core.analysis import choice, deploy, diagnosis, recommend
from cifar_core.analysis.diagnosis import diagnose
from cifar_core.charts import choice as choice_charts
from cifar_core.lab import Lab
from cifar_core.errors import LabError
from cifar_core.testing.procs import cli


# ---------------------------------------------------------------- hand-made candidates


def cands(rows: list[tuple]) -> pd.DataFrame:
    """(label, accuracy, p50 ms, model bytes, significantly worse than the most accurate)."""
    return pd.DataFrame([
        {"key": label, "label": label, "name": label, "run": i + 1, "runs": 1, "test_accuracy": acc,
         "test_accuracy_std": np.nan, "test_accuracy_min": acc, "test_accuracy_max": acc, "params": 1000 * (i + 1),
         "model_bytes": size, "latency_p50_ms": lat, "latency_p95_ms": lat * 1.5, "throughput_ips": 1000 / lat,
         "measured_while_busy": False, "train_seconds": 60.0, "gap": 0.05, "validation": "holdout",
         "verdict": "healthy", "diagnosis": "Healthy", "significantly_worse": worse,
         "p_value": np.nan if worse is None else (0.001 if worse else 0.4)}
        for i, (label, acc, lat, size, worse) in enumerate(rows)
    ])


def test_pareto_front_by_hand():
    acc = [0.80, 0.79, 0.75, 0.70, 0.79, 0.60]
    lat = [4.0, 1.0, 2.0, 0.5, 1.0, np.nan]
    # 0.75@2ms is dominated by 0.79@1ms; the two 0.79@1ms tie and both stay; NaN latency counts as slowest.
    assert pareto_list(acc, lat) == [True, True, False, True, True, False]
    assert pareto_list([0.6], [np.nan]) == [True]
    with pytest.raises(LabError, match="accuracy has 2 values but latency 1"):
        choice.pareto_front([0.1, 0.2], [1.0])


def pareto_list(acc, lat) -> list[bool]:
    return [bool(v) for v in choice.pareto_front(acc, lat)]


def test_faster_candidate_not_significantly_worse_is_recommended():
    ranked = choice.rank(cands([("big", 0.80, 4.0, 4e6, None), ("small", 0.795, 1.0, 1e6, False),
                                ("tiny", 0.70, 0.3, 2e5, False)]))
    assert ranked["label"].tolist() == ["small", "big", "tiny"]
    assert ranked["rank"].tolist() == [1, 2, 3]
    by = ranked.set_index("label")
    assert by.loc["big", "reference"] and by.loc["big", "why"] == "most accurate"
    assert by.loc["small", "eligible"] and by.loc["big", "eligible"]
    # A small test set may not separate tiny from big, but 10 points is beyond the tolerance.
    assert not by.loc["tiny", "eligible"] and by.loc["tiny", "pareto"]
    assert by.loc["tiny", "why"] == "more than 1 point below the most accurate"


def test_significantly_worse_candidate_is_not_recommended():
    ranked = choice.rank(cands([("big", 0.80, 4.0, 4e6, None), ("small", 0.795, 1.0, 1e6, True)]))
    assert ranked["label"].tolist() == ["big", "small"]
    assert ranked.iloc[1]["why"] == "significantly worse than the most accurate (McNemar)"


def test_dominated_candidate_is_not_recommended_and_names_its_dominator():
    ranked = choice.rank(cands([("big", 0.80, 4.0, 4e6, None), ("b", 0.795, 1.0, 1e6, False),
                                ("c", 0.797, 0.9, 1e6, False)]))
    assert ranked.iloc[0]["label"] == "c"
    b = ranked.set_index("label").loc["b"]
    assert not b["pareto"] and not b["eligible"]
    assert b["why"] == "dominated by c (#3): at least as accurate and as fast"


def test_tolerance_is_a_parameter_and_ties_go_to_the_smaller_file():
    rows = [("big", 0.80, 4.0, 4e6, None), ("mid", 0.78, 1.0, 2e6, False), ("twin", 0.78, 1.0, 1e6, False)]
    assert choice.rank(cands(rows)).iloc[0]["label"] == "big"  # 2 points off: outside the default 1 point
    wide = choice.rank(cands(rows), tolerance=0.03)
    assert wide["label"].tolist()[:2] == ["twin", "mid"]  # same accuracy and latency: the smaller file first


def test_latency_ties_within_ten_percent_or_the_measured_spread():
    assert choice.latency_ties(1.0, np.nan, 1.09, np.nan)  # 9% apart: inside the 10% floor
    assert not choice.latency_ties(1.0, np.nan, 1.12, np.nan)
    assert choice.latency_ties(1.0, 20.0, 1.18, 3.0)  # one was measured 20% noisy
    assert choice.latency_ties(1.18, 3.0, 1.0, 20.0)  # symmetric
    assert not choice.latency_ties(1.0, 5.0, np.nan, np.nan)  # unmeasured ties with nothing


def test_tied_latencies_are_decided_by_macs_then_file_then_accuracy():
    # All three eligible (within a point, not significantly worse); "lean" is 5% slower than "fast"
    # but does a tenth of the multiply-adds: inside the noise, so the cheaper architecture wins.
    rows = [("ref", 0.80, 2.0, 4e6, None), ("fast", 0.797, 1.0, 1e6, False), ("lean", 0.798, 1.05, 1e6, False)]
    ranked = choice.rank(cands(rows).assign(macs=[9e6, 5e6, 5e5], latency_spread_pct=[3.0, 4.0, 4.0]))
    assert ranked["label"].tolist() == ["lean", "fast", "ref"]
    assert ranked.iloc[0]["tied_with"] == "fast (run #2)"
    # Without the tie rule's noise allowance (a spread-free 1% world) the faster one would win;
    # measured 25% noisy, "ref" at 2.0 ms would still be 2x slower than the tie margin allows.
    assert choice.rank(cands(rows).assign(macs=[9e6, 5e6, 5e5], latency_spread_pct=[25.0, 1.0, 1.0]))[
        "label"].tolist()[0] == "lean"
    apart = choice.rank(cands([("ref", 0.80, 2.0, 4e6, None), ("fast", 0.797, 1.0, 1e6, False),
                               ("lean", 0.798, 1.5, 1e6, False)]).assign(macs=[9e6, 5e6, 5e5]))
    assert apart["label"].tolist()[0] == "fast" and apart.iloc[0]["tied_with"] == ""  # 50% apart: no tie
    # Same MACs and file: the more accurate of the tied ones.
    same = choice.rank(cands([("ref", 0.80, 2.0, 4e6, None), ("a", 0.792, 1.0, 1e6, False),
                              ("b", 0.795, 1.08, 1e6, False)]).assign(macs=5e5))
    assert same["label"].tolist()[:2] == ["b", "a"]


def test_recommendation_says_when_latencies_tie():
    rows = [("ref", 0.80, 1.05, 4e6, None), ("lean", 0.797, 1.0, 1e6, False)]
    ranked = choice.rank(cands(rows).assign(macs=[9e6, 5e5], latency_spread_pct=[4.0, 4.0]))
    assert ranked.iloc[0]["label"] == "lean"  # tied with ref: far fewer multiply-adds decide
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert "while it answers as fast within the noise (1.00 ms vs 1.05 ms p50)" in text
    assert "Its batch-1 latency ties with ref (run #1)'s" in text and "fewer multiply-adds per image" in text
    assert "0.5 M multiply-adds per image" in text
    # The most accurate wins a tie against a slightly faster one: the text says why that one lost.
    ranked = choice.rank(cands(rows).assign(macs=[5e5, 9e6], latency_spread_pct=[4.0, 4.0]))
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert ranked.iloc[0]["label"] == "ref"
    assert "ruled out (lean (run #2): its latency ties within the noise)" in text


def test_most_accurate_with_unmeasured_latency_is_still_recommended_over_nothing():
    ranked = choice.rank(cands([("big", 0.80, np.nan, 4e6, None), ("weak", 0.60, 1.0, 1e6, True)]))
    assert ranked.iloc[0]["label"] == "big"
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert "latency not measured p50" in text and "python -m cifar_core measure 1" in text


def test_rank_needs_significance():
    with pytest.raises(LabError, match="no significantly_worse column; run add_significance"):
        choice.rank(cands([("a", 0.5, 1.0, 1e6, None)]).drop(columns="significantly_worse"))
    assert choice.rank(choice.candidates(pd.DataFrame(columns=choice.SCORECARD_COLUMNS))).empty


def test_candidates_pool_seeds_mean_spread_and_best_seed():
    card = pd.DataFrame([
        {"run": r, "key": k, "label": k, "name": k, "data_source": "/d", "validation": "holdout", "test_accuracy": a,
         "params": 10, "model_bytes": 100, "latency_p50_ms": lat, "latency_p95_ms": lat * 2, "throughput_ips": 5.0,
         "measured_while_busy": busy, "train_seconds": 10.0 * r, "gap": 0.1, "verdict": "healthy",
         "diagnosis": "Healthy"}
        for r, k, a, lat, busy in [(1, "x", 0.70, 1.0, False), (2, "x", 0.74, 3.0, True), (3, "x", 0.72, 2.0, False),
                                   (4, "y", 0.60, 0.5, False)]
    ])
    c = choice.candidates(card).set_index("key")
    x = c.loc["x"]
    assert x["runs"] == 3 and x["run"] == 2 and x["run_ids"] == "#1, #2, #3"  # representative: the best seed
    assert x["test_accuracy"] == pytest.approx(0.72)
    assert x["test_accuracy_std"] == pytest.approx(0.02)
    assert (x["test_accuracy_min"], x["test_accuracy_max"]) == (0.70, 0.74)
    assert x["latency_p50_ms"] == 2.0 and x["measured_while_busy"]  # median cost; any busy measurement flags it
    assert np.isnan(c.loc["y", "test_accuracy_std"])


def test_recommendation_text_why_gives_up_and_not_different():
    ranked = choice.rank(cands([("big", 0.80, 4.0, 4e6, None), ("small", 0.795, 1.0, 1e6, False),
                                ("tiny", 0.70, 0.3, 2e5, False)]))
    vs = pd.DataFrame([
        {"run": 1, "accuracy": 0.80, "only_it_right": 40, "only_base_right": 35, "p_value": 0.64, "significant": False,
         "direction": "not significantly different", "statement": ""},
        {"run": 3, "accuracy": 0.70, "only_it_right": 20, "only_base_right": 115, "p_value": 1e-9, "significant": True,
         "direction": "worse", "statement": ""},
    ])
    text = recommend.recommendation_text(ranked, vs, {1: "big", 2: "small", 3: "tiny"}, test_images=10_000,
                                        alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert text.startswith("**Recommended for production: small (run #2).** Test accuracy 79.50%")
    assert "0.50 points below the most accurate candidate, big (run #1) at 80.00%" in text
    assert "does not find significant (p = 0.400" in text and "4.0x faster (1.00 ms vs 4.00 ms p50)" in text
    assert "**What it gives up:** 0.50 points of mean test accuracy against big (run #1)." in text
    assert "The fastest candidate, tiny (run #3), answers in 0.30 ms but is 9.50 points less accurate" in text
    assert "McNemar on the same 10,000 test images" in text
    assert "not significantly different: #1 big (80.00%, p = 0.640). Significantly worse: #3 tiny (70.00%, p < 0.001)." in text
    assert "*Rule:*" in text and "Caveats" not in text


def test_recommendation_text_keeps_a_small_gap_names_pooled_runs_and_says_how_short_they_trained():
    """Issue 31: "scores -0.0 points (38.8% vs 38.8%)" for a 0.02-point gap; "the smallest, exp2
    (run #1), is 1.36 MB at 36.5%" where 36.5% was the mean of three seeds; no word that every
    candidate trained 1-7 epochs."""
    ranked = choice.rank(cands([("exp4", 0.3886, 4.0, 4e6, None), ("exp3", 0.3884, 1.0, 2e6, False),
                                ("exp2", 0.365, 2.0, 1.36e6, True)]))
    ranked.loc[ranked["label"] == "exp2", ["runs", "run_ids"]] = [3, "#1, #4, #7"]
    ranked["epochs"] = [7, 1, 3]
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert "it is 0.02 points below the most accurate candidate, exp4 (run #1) at 38.86%" in text
    assert "The smallest, exp2 (mean of runs #1, #4, #7), is 1.36 MB at 36.50%." in text
    assert "Every candidate trained only 1-7 epochs: the accuracies are those of short runs" in text
    ranked["epochs"] = [10, 40, 20]
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert "The candidates trained 10-40 epochs, not alike" in text


def test_latency_axis_labels_whole_values_and_neighbouring_labels_take_turns():
    """Issue 31: the log axis read "2 3 4 ... 9 1" for 0.2-1 ms, and close points' labels overlapped."""
    ranked = choice.rank(cands([("a", 0.80, 0.9, 4e6, None), ("b", 0.79, 0.31, 1e6, False),
                                ("c", 0.70, 0.3, 2e5, False), ("d", 0.69, 0.29, 2e5, True)]))
    fig = choice_charts.pareto_figure(ranked)
    axis = fig.layout.xaxis
    assert axis.type == "log" and axis.tickmode == "array"
    assert list(axis.ticktext) == ["0.2", "0.5", "1", "2"] and list(axis.tickvals) == pytest.approx([0.2, 0.5, 1, 2])
    positions = {label: pos for t in fig.data if t.text is not None for label, pos in zip(t.text, t.textposition)}
    by_latency = [positions[k] for k in ("d", "c", "b", "a")]
    assert all(p != q for p, q in zip(by_latency, by_latency[1:])), by_latency


def test_recommendation_caveats():
    ranked = choice.rank(cands([("only", 0.80, 4.0, 4e6, None)]).assign(measured_while_busy=True, validation="test"))
    text = recommend.recommendation_text(ranked, choice.versus_empty(), alpha=choice.ALPHA, rule=choice.RANKING_RULE)
    assert "it is the only finished candidate" in text
    assert "validated on the test set" in text and "`python -m cifar_core measure 1`" in text
    assert "there is no other finished run" in text


def test_export_name_and_next_version(tmp_path):
    assert deploy.export_name("Conv + Dropout", 12) == "Conv-Dropout-run12"
    assert deploy.export_name("...", 3) == "model-run3"
    assert deploy.next_version(tmp_path, "m") == 1
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "7").mkdir()
    (tmp_path / "m" / "notes").mkdir()
    assert deploy.next_version(tmp_path, "m") == 8


# ---------------------------------------------------------------- on real runs


def test_scorecard_of_real_runs(lab, conn):
    card = choice.scorecard(conn)
    assert card["run"].tolist() == [1, 2, 3]  # the cancelled run 4 is no candidate
    assert list(card.columns) == choice.SCORECARD_COLUMNS
    for row in card.itertuples():
        assert row.model_bytes == (lab / "runs" / str(row.run) / "model.keras").stat().st_size
        assert 0 < row.latency_p50_ms <= row.latency_p95_ms and row.throughput_ips > 0
        assert 0 <= row.test_accuracy <= 1 and row.train_seconds > 0 and row.epochs == 3
        assert row.gap == pytest.approx(row.final_accuracy - row.final_val_accuracy)
    assert card.loc[card["run"] == 1, "key"].item() == card.loc[card["run"] == 2, "key"].item()  # seeds pooled
    assert card["label"].tolist() == ["tiny", "tiny", "dense"]
    c = choice.candidates(card).set_index("label")
    assert c.loc["tiny", "runs"] == 2 and c.loc["dense", "runs"] == 1
    assert choice.scorecard(conn, source="/elsewhere").empty


def test_choose_on_real_runs(lab, conn, small_data):
    made = choice.choose(conn)
    assert made.source == str(small_data) and made.test_images == 100
    rec = made.recommendation
    assert rec.run == int(made.candidates.iloc[0]["run"])
    assert set(rec.not_different + rec.worse + rec.better) == {1, 2, 3} - {rec.run}
    assert f"(run #{rec.run})" in rec.text and "McNemar on the same 100 test images" in rec.text
    assert set(made.versus["run"]) == {1, 2, 3} - {rec.run}
    assert made.candidates["rank"].tolist() == [1, 2]
    fig = choice_charts.pareto_figure(made.candidates)
    assert {t.name for t in fig.data} >= {"Pareto front", "recommended"}


def test_diagnosis_wrappers_match_diagnose(conn):
    from cifar_core.jobs.results import run_history

    for run in (1, 3):
        expected = diagnose(run_history(conn, run).to_dict(orient="records"))
        assert Lab().run(run).diagnosis == expected
    table = diagnosis.verdicts(conn)
    assert table["run"].tolist() == [1, 2, 3]
    assert table.loc[table["run"] == 3, "title"].item() == Lab().run(3).diagnosis.title
    assert diagnosis.verdicts(conn, []).empty
    with pytest.raises(LabError, match="no job 99"):
        Lab().run(99)


def test_diagnosis_of_a_diverged_run_reads_nan_losses(conn):
    """SQLite stores a NaN loss as NULL; the wrapper hands it to diagnose() as NaN again."""
    frame = pd.DataFrame({"epoch": [1, 2, 3], "loss": [2.3, None, None], "accuracy": [0.1] * 3,
                          "val_loss": [2.3, None, None], "val_accuracy": [0.1] * 3})
    assert diagnose(diagnosis._history_records(frame)).title == "Did not learn: diverged at epoch 2"


def test_worker_stored_a_measured_load_and_macs(conn):
    row = conn.execute("SELECT * FROM runs WHERE id = 3").fetchone()
    assert row["macs"] == 32 * 32 * 3 * 10  # dense: the flattened pixels into 10 units
    assert row["latency_spread_pct"] >= 0 and row["latency_session"] is None
    assert row["measured_load"] is None or row["measured_while_busy"] == int(row["measured_load"] > 0.25)


def test_measure_cli_measures_runs_together_and_stores_a_session(conn):
    before = conn.execute("SELECT latency_p50_ms FROM runs WHERE id = 3").fetchone()[0]
    out = json.loads(cli("measure", "3", "1", "--rounds", "3", "--repeats", "10", "--json").stdout)
    m = choice.Measurement.from_dict(out)
    assert [r.run for r in m.runs] == [3, 1] and m.orders == ((3, 1), (1, 3), (3, 1))
    assert m.rounds == 3 and m.batch1_repeats == 10 and all(len(r.round_p50_ms) == 3 for r in m.runs)
    assert m.busy == (m.other_load is None or m.other_load > 0.25)
    for r in m.runs:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (r.run,)).fetchone()
        assert (row["latency_p50_ms"], row["latency_spread_pct"], row["latency_session"]) == (r.p50_ms, r.spread_pct,
                                                                                            m.session)
        assert row["macs"] == r.macs and row["measured_while_busy"] == int(m.busy)
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"] and row["throughput_ips"] > 0
    assert before != m.runs[0].p50_ms
    assert [r.macs for r in m.runs] == [30720, 30 * 30 * 9 * 3 * 4 + 900 * 10]
    stored = conn.execute("SELECT run_id, session, rounds FROM latency_measurements WHERE session = ?",
                          (m.session,)).fetchall()
    assert sorted(tuple(r) for r in stored) == [(1, m.session, 3), (3, m.session, 3)]
    card = choice.scorecard(conn).set_index("run")
    assert card.loc[3, "macs"] == 30720 and card.loc[3, "latency_session"] == m.session
    text = cli("measure", "3", "--rounds", "2", "--repeats", "5").stdout
    assert "run 3: p50" in text and "(spread of 2 rounds)" in text and "30,720 multiply-adds" in text
    assert "stored as latency session" in text
    bad = cli("measure", "3", "--rounds", "0", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: rounds=0 must be at least 1"
    failed = cli("measure", "4", check=False)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1] == (
        "error: run 4 is cancelled, not succeeded; only a run that finished training has a model")


def test_lab_measure_runs_the_cli_in_a_child_process_and_passes_its_error_on(lab):
    with pytest.raises(LabError, match=r"^run 4 is cancelled, not succeeded; only a run that finished training"):
        Lab().measure([3, 4], rounds=1, repeats=2)
    with pytest.raises(LabError, match="no runs to measure; give at least one run id"):
        Lab().measure([])


def test_export_cli_round_trip(lab, conn, tmp_path, small_data):
    import keras

    from cifar_core.data.sources import load_dataset
    from cifar_core.analysis.deploy import _predict_tflite

    out = tmp_path / "exports"
    done = cli("export", "3", "--out", str(out), "--name", "dense", "--json")
    result = json.loads(done.stdout)
    assert result["name"] == "dense" and result["version"] == 1
    assert (out / "dense" / "1" / "saved_model.pb").is_file()
    assert [f["format"] for f in result["formats"]] == ["keras", "saved_model", "tflite"]
    assert all(f["agreement"] == 1.0 for f in result["formats"])
    # Loaded back here too: the exported files give the stored test predictions' classes.
    x = load_dataset(str(small_data)).x_test[:20]
    stored = np.load(lab / "runs" / "3" / "predictions.npz")["probs"][:20].astype(np.float32)
    v1 = out / "dense" / "1"
    assert (keras.saving.load_model(v1 / "model.keras").predict(x, verbose=0).argmax(1) == stored.argmax(1)).all()
    assert (_predict_tflite(v1 / "model.tflite", x.astype(np.float32)).argmax(1) == stored.argmax(1)).all()
    before = {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    # The next export picks the next version and leaves version 1 byte-identical; an existing one
    # is refused before TensorFlow starts.
    again = cli("export", "3", "--out", str(out), "--name", "dense")
    assert "as dense version 2" in again.stdout and "--model_base_path=" + str(out / "dense") in again.stdout
    assert str(out / "dense" / "2" / "model.keras") in again.stdout
    assert {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()} == before
    clash = cli("export", "3", "--out", str(out), "--name", "dense", "--version", "1", check=False)
    assert clash.returncode == 2 and "dense/1 already exists; export with version=3" in clash.stderr
    bad = cli("export", "3", "--out", str(out), "--name", "no spaces", check=False)
    assert bad.returncode == 2 and "export name 'no spaces' must be" in bad.stderr


def test_export_cli_refuses_a_file_as_out_in_one_line(lab, tmp_path):
    mine = tmp_path / "notes.txt"
    mine.write_text("keep me")
    done = cli("export", "3", "--out", str(mine), check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {mine} is a file, not a folder; give a folder to export into (it is created if missing)"]
    assert mine.read_text() == "keep me"


def _lab_copy(lab: Path, home: Path) -> Path:
    """A copy of the shared lab (its store and run folders) at `home`, so a test may damage it."""
    import sqlite3

    shutil.copytree(lab / "runs", home / "runs")
    src, dst = sqlite3.connect(lab / "lab.sqlite3"), sqlite3.connect(home / "lab.sqlite3")
    src.backup(dst)
    dst.execute("UPDATE runs SET artifacts_dir = replace(artifacts_dir, ?, ?)", (str(lab), str(home)))
    dst.commit()
    src.close(), dst.close()
    return home


def test_export_cli_of_a_corrupt_model_is_one_line(lab, tmp_path, monkeypatch):
    """On a copy of the lab whose run 3 has a damaged model.keras (the shared lab stays intact)."""
    home = _lab_copy(lab, tmp_path / "home")
    model = home / "runs" / "3" / "model.keras"
    model.write_bytes(model.read_bytes()[:2000])
    monkeypatch.setenv("CIFAR_LAB_HOME", str(home))
    done = cli("export", "3", "--out", str(tmp_path / "out"), check=False)
    assert done.returncode == 2, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: {model} cannot be loaded (") and line.endswith("train the run again")
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "out").rglob("*.keras"))


@pytest.mark.parametrize("command", [["measure", "3", "--rounds", "1", "--repeats", "1"], ["export", "3"]])
def test_a_planted_lambda_model_is_refused_in_one_line(lab, tmp_path, monkeypatch, command):
    """Issue 31: a .keras with a Lambda layer in place of run 3's model gave a clean exit 2 but
    Keras's own message of several lines; every other refusal is one line naming the file and the fix."""
    import keras

    home = _lab_copy(lab, tmp_path / "home")
    model = home / "runs" / "3" / "model.keras"
    planted = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x * 2.0),
                                keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    planted.save(model)
    monkeypatch.setenv("CIFAR_LAB_HOME", str(home))
    done = cli(*command, *(["--out", str(tmp_path / "out")] if command[0] == "export" else []), check=False)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not _tf_noise(ln)]
    assert lines == [lines[0]] and lines[0].startswith("error: ") and str(model) in lines[0], done.stderr
    assert "Lambda layer" in lines[0] and lines[0].endswith("train the run again")
    assert "safe_mode" not in done.stderr and "Traceback" not in done.stderr


def _tf_noise(line: str) -> bool:
    """TensorFlow's and absl's own start-up lines on stderr (not the lab's)."""
    return line.startswith(("WARNING: All log messages before absl", "E0000", "I0000", "W0000")) or " cuda" in line.lower()


def test_choose_cli(lab):
    done = cli("choose")
    assert "**Recommended for production:" in done.stdout and "most accurate" in done.stdout
    data = json.loads(cli("choose", "--json").stdout)
    assert data["recommendation"]["run"] == data["candidates"][0]["run"]
