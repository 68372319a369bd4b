"""scripts/bench_search.py's replay part on a small generated curves file: no training."""

from __future__ import annotations

import itertools
import json

import pytest


def test_the_replay_part_reports_pruners_and_samplers_over_generated_curves(script, tmp_path, capsys):
    bench = script("bench_search")
    params = bench.SPACE["params"]
    combos = list(itertools.product(*(p["values"] for p in params.values())))
    assert len(combos) >= 16  # the exhaustive sweep: at least 16 configurations
    trials = []
    for i, values in enumerate(combos):
        final = 0.80 + 0.01 * i  # the last configuration is the best
        trials.append({"id": i + 1, "params": dict(zip(params, values)), "state": "complete",
                       "curve": {str(e): round(final * e / 7, 4) for e in range(1, 8)}})
    curves = tmp_path / "curves.json"
    curves.write_text(json.dumps({"preset": "fast", "epochs": 7, "space": bench.SPACE, "trials": trials}))

    report = bench.main(["--replay-only", "--curves", str(curves), "--shuffles", "3", "--budget", "4", "--seeds", "2"])
    assert report["trials"] == 16 and report["exhaustive_epochs"] == 16 * 7
    for r in report["pruners"].values():
        assert r["orders"] == 3 and r["median_epochs"] < 16 * 7 and 0 <= r["found_near_best"] <= 3
    assert len(report["pruners"]) == 12  # successive halving and Hyperband, min_epochs 1-2, eta 2-4
    assert report["pruners"]["successive_halving min_epochs=1 eta=3"]["found_near_best"] == 3  # curves never cross
    assert set(report["samplers"]) == {"random", "tpe"}
    assert all(r["budget"] == 4 and r["seeds"] == 2 for r in report["samplers"].values())
    said = capsys.readouterr().out
    assert said.startswith("16 configurations, best 95.00%, exhaustive sweep 112 epochs\nsuccessive_halving min_epochs=1 eta=2: median ")


def test_the_live_comparison_replays_the_exhaustive_curves_in_the_live_order(script):
    """--live: the replay in the live sweep's order predicts where each trial stops; a live trial
    whose curve matches its exhaustive twin stops there, one that trained differently is said."""
    from cifar_core.search.config import COMPLETE, PAUSED, PrunerConfig, TrialCurve

    bench = script("bench_search")
    finals = [0.50, 0.80, 0.60, 0.90]  # the second and the last are the ones that should go on
    recorded = [TrialCurve(10 + i, {"lr": i}, {e: round(f * e / 4, 4) for e in range(1, 5)}, COMPLETE)
                for i, f in enumerate(finals)]
    pruner = PrunerConfig(kind="successive_halving", min_epochs=1, eta=2, max_epochs=4)
    order = [3, 0, 1, 2]  # the live sweep submitted them in another order than the exhaustive one
    predicted = bench.replay(pruner, [TrialCurve(i + 1, recorded[k].params, recorded[k].curve, COMPLETE)
                                      for i, k in enumerate(order)]).runs[0]
    live = []
    for i, k in enumerate(order):
        stop = predicted.stopped.get(i + 1)
        curve = {e: v for e, v in recorded[k].curve.items() if not stop or e <= stop[1]}
        live.append(TrialCurve(i + 1, dict(recorded[k].params), curve, PAUSED if stop else COMPLETE))
    live[2] = TrialCurve(3, live[2].params, {e: v + 0.01 for e, v in live[2].curve.items()}, live[2].state)

    report = bench.live_report(recorded, live, pruner)
    assert report["epochs"] == report["predicted_epochs"] == predicted.epochs_run < 16
    assert report["same_stops"] == 4 and report["best"] == report["predicted_best"] == report["exhaustive_best"] == 0.9
    gaps = [round(p["max_curve_gap"], 6) for p in report["per_trial"]]
    assert gaps == [0, 0, 0.01, 0]
    said = bench.say_live(report)
    assert said.startswith(f"live sweep, 4 trials: {predicted.epochs_run} epochs trained") and "4 of 4 trials stopped" in said
    stranger = [TrialCurve(99, {"lr": 7}, {1: 0.1}, PAUSED)]
    with pytest.raises(SystemExit, match=r"live trials \[99\] have settings the exhaustive sweep did not run"):
        bench.live_report(recorded, stranger, pruner)
