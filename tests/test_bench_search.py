"""scripts/bench_search.py's replay part on a small generated curves file: no training."""

from __future__ import annotations

import itertools
import json


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
