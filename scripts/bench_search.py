"""Benchmark: what searching saves on the real data (issue 30, docs/search.md "Benchmark").

    CIFAR_LAB_DATA=/path/to/cifar10-jpeg.tar.gz .venv/bin/python scripts/bench_search.py
    .venv/bin/python scripts/bench_search.py --replay-only [--curves docs/search-curves.json]
    CIFAR_LAB_HOME=<the same home> ... scripts/bench_search.py --group N   # finish an interrupted collection
    CIFAR_LAB_HOME=<a live sweep's home> .venv/bin/python scripts/bench_search.py --live N

1. Collect (skipped with --replay-only): an exhaustive grid sweep of 16 configurations around the
   `fast` preset (learning rate x Muon's rate x label smoothing), validated on a holdout, queued
   as one sweep and trained by a worker until the queue is idle; every trial's validation accuracy
   by epoch (metrics only) is saved to --curves.
2. Replay, over the saved curves only (no training): successive halving and Hyperband over
   --shuffles shuffled orders (the median epochs they train against the exhaustive sweep's, and in
   how many orders a configuration within 0.3 points of the best finished), for min_epochs 1 and 2
   and eta 2, 3 and 4 (where the rungs fall matters: `fast`'s curves are noisy until its learning
   rate has decayed); then TPE against
   random draws at an equal budget of --budget trials, over --seeds seeds (each trial looked up in
   the recorded grid).
3. With --live N: a pruned sweep N run through the queue on the same space (in $CIFAR_LAB_HOME)
   against what the replay of the saved curves predicts in the order its trials ran: the epochs
   each trial trained and where it stopped, the best it kept, and how far its curves are from the
   exhaustive sweep's for the same configuration (nothing trains).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _bootstrap import ROOT

from cifar_core.search import samplers
from cifar_core.search.config import COMPLETE, PrunerConfig, TrialCurve
from cifar_core.search.replay import replay
from cifar_core.spec.space import load_space

CURVES = ROOT / "docs" / "search-curves.json"
NEAR = 0.003  # "found the best": a configuration within 0.3 points of the best finished
# The pruners replayed: (kind, min_epochs, eta). Rungs fall at min_epochs * eta**k below the 7 epochs,
# so each setting judges the trials at other epochs (eta 3 from 1: epochs 1 and 3).
PRUNERS = [(kind, low, eta) for kind in ("successive_halving", "hyperband") for low in (1, 2) for eta in (2, 3, 4)]
SPACE = {"method": "grid", "params": {"learning_rate": {"values": [1.0, 1.5, 2.25, 3.0]},
                                      "muon_learning_rate": {"values": [0.16, 0.24]},
                                      "label_smoothing": {"values": [0.1, 0.2]}}}


def collect(out: Path, source: str | None, group: int | None = None) -> None:
    """Run the exhaustive sweep through the queue and save its curves (metrics only). With `group`
    (a sweep group this script queued before, in the same $CIFAR_LAB_HOME), queue nothing: train
    what is left of it (a worker stopped by a restart or an update resumes it) and save."""
    from cifar_core.jobs import store, sweeping
    from cifar_core.lab import Lab
    from cifar_core.spec.presets import get_preset

    base = {**get_preset("fast"), "validation": "holdout"}
    if group is None:
        group, ids = Lab().submit_sweep(base, SPACE, source)
        print(f"queued sweep group {group}: {len(ids)} trials of {base['epochs']} epochs; training until idle")
    subprocess.run([sys.executable, "-m", "cifar_core", "worker", "--exit-when-idle"], cwd=ROOT, check=True)
    conn = store.connect()
    try:
        trials = sweeping.trials(conn, group)
    finally:
        conn.close()
    doc = {"preset": "fast", "epochs": base["epochs"], "space": SPACE,
           "trials": [{"id": t.trial_id, "params": t.params, "state": t.state, "curve": {str(e): v for e, v in t.curve.items()}}
                      for t in trials]}
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def load(path: Path) -> tuple[dict, list[TrialCurve]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    trials = [TrialCurve(t["id"], t["params"], {int(e): v for e, v in t["curve"].items()}, t["state"])
              for t in doc["trials"]]
    return doc, trials


def replay_report(doc: dict, trials: list[TrialCurve], shuffles: int = 20, budget: int = 12, seeds: int = 20) -> dict:
    """What the pruners and the samplers would have done over the recorded curves."""
    done = [t for t in trials if t.state == COMPLETE]
    best = max(t.objective for t in done)
    out = {"trials": len(done), "best": best, "exhaustive_epochs": sum(t.last_epoch for t in done), "pruners": {},
           "samplers": {}}
    for kind, low, eta in PRUNERS:
        pruner = PrunerConfig(kind=kind, min_epochs=low, eta=eta, max_epochs=int(doc["epochs"]))
        runs = replay(pruner, done, shuffles=shuffles, seed=0).runs[1:]  # runs[0] is the recorded order
        out["pruners"][f"{kind} min_epochs={low} eta={eta}"] = {
            "median_epochs": statistics.median(r.epochs_run for r in runs),
            "found_near_best": sum(r.best_kept is not None and r.best_kept >= best - NEAR for r in runs),
            "orders": len(runs),
        }
    space = load_space(doc["space"])
    by_params = {json.dumps(t.params, sort_keys=True): t for t in done}
    for sampler in ("random", "tpe"):
        found = []
        for seed in range(seeds):
            known: list[TrialCurve] = []
            for _ in range(budget):
                [params] = samplers.next_params(space, sampler, seed, known, 1)
                rec = by_params[json.dumps(params, sort_keys=True)]
                known.append(TrialCurve(len(known), params, rec.curve, COMPLETE))
            found.append(max(t.objective for t in known))
        out["samplers"][sampler] = {"budget": budget, "seeds": seeds, "median_best": statistics.median(found),
                                    "found_near_best": sum(v >= best - NEAR for v in found)}
    return out


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def live_report(trials: list[TrialCurve], live: list[TrialCurve], pruner: PrunerConfig) -> dict:
    """A live pruned sweep (its trials in the order they were submitted) against the replay of
    the exhaustive curves `trials` in that order under the live sweep's `pruner`."""
    recorded = {_key(t.params): t for t in trials if t.state == COMPLETE}
    missing = [t.trial_id for t in live if _key(t.params) not in recorded]
    if missing:
        raise SystemExit(f"live trials {missing} have settings the exhaustive sweep did not run: compare a sweep of "
                         "the same space")
    twins = [TrialCurve(t.trial_id, recorded[_key(t.params)].params, recorded[_key(t.params)].curve, COMPLETE)
             for t in live]
    predicted = replay(pruner, twins).runs[0]
    per_trial = []
    for t in live:
        rec = recorded[_key(t.params)]
        stop = predicted.stopped.get(t.trial_id)
        per_trial.append({"trial": t.trial_id, "params": t.params, "state": t.state, "epochs": t.last_epoch,
                          "predicted_epochs": stop[1] if stop else rec.last_epoch,
                          "max_curve_gap": max((abs(v - rec.curve[e]) for e, v in t.curve.items() if e in rec.curve),
                                               default=0.0)})
    done = [t.objective for t in live if t.state == COMPLETE]
    return {"pruner": pruner.to_dict(), "trials": len(live), "exhaustive_epochs": predicted.epochs_recorded,
            "epochs": sum(t.last_epoch for t in live), "predicted_epochs": predicted.epochs_run,
            "best": max(done, default=None), "predicted_best": predicted.best_kept,
            "exhaustive_best": max(t.objective for t in recorded.values()),
            "same_stops": sum(p["epochs"] == p["predicted_epochs"] for p in per_trial), "per_trial": per_trial}


def say_live(r: dict) -> str:
    pct = lambda v: "none" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = [f"live sweep, {r['trials']} trials: {r['epochs']} epochs trained ({r['epochs'] / r['exhaustive_epochs']:.0%} of "
             f"the exhaustive {r['exhaustive_epochs']}), best {pct(r['best'])}; the replay in its order predicted "
             f"{r['predicted_epochs']} epochs, best {pct(r['predicted_best'])} (exhaustive best {pct(r['exhaustive_best'])}); "
             f"{r['same_stops']} of {r['trials']} trials stopped where predicted"]
    for p in r["per_trial"]:
        lines.append(f"  #{p['trial']} {p['state']}: {p['epochs']} epochs (predicted {p['predicted_epochs']}); curve within "
                     f"{100 * p['max_curve_gap']:.2f} points of the exhaustive run's")
    return "\n".join(lines)


def _live(group: int) -> tuple[list[TrialCurve], PrunerConfig]:
    from cifar_core.jobs import store, sweeping

    conn = store.connect()
    try:
        search = sweeping.search_of(conn, group)
        if search is None:
            raise SystemExit(f"sweep {group} does not search: give the number of a sweep run with --pruner")
        return sweeping.trials(conn, group), search.pruner
    finally:
        conn.close()


def say(report: dict) -> str:
    lines = [f"{report['trials']} configurations, best {100 * report['best']:.2f}%, exhaustive sweep "
             f"{report['exhaustive_epochs']} epochs"]
    for kind, r in report["pruners"].items():
        lines.append(f"{kind}: median {r['median_epochs']:g} epochs ({r['median_epochs'] / report['exhaustive_epochs']:.0%} "
                     f"of exhaustive); within 0.3 points of the best in {r['found_near_best']} of {r['orders']} orders")
    for sampler, r in report["samplers"].items():
        lines.append(f"{sampler} at {r['budget']} trials: median best {100 * r['median_best']:.2f}%; within 0.3 points "
                     f"of the best in {r['found_near_best']} of {r['seeds']} seeds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curves", type=Path, default=CURVES, help="where the curves are saved / read")
    ap.add_argument("--replay-only", action="store_true", help="replay the saved curves; train nothing")
    ap.add_argument("--group", type=int, help="finish this sweep group (queued by an earlier run of this script "
                    "in the same $CIFAR_LAB_HOME) instead of queuing a new one")
    ap.add_argument("--data", default=None, help="the data source (default: $CIFAR_LAB_DATA)")
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--budget", type=int, default=12, help="trials TPE and random draws each get")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--live", type=int, metavar="N", help="compare pruned sweep N (in $CIFAR_LAB_HOME) with the replay "
                    "of the saved curves in its order; trains nothing")
    args = ap.parse_args(argv)
    if args.live is not None:
        _, trials = load(args.curves)
        live, pruner = _live(args.live)
        report = live_report(trials, live, pruner)
        print(say_live(report))
        return report
    if not args.replay_only:
        collect(args.curves, args.data, args.group)
    doc, trials = load(args.curves)
    report = replay_report(doc, trials, args.shuffles, args.budget, args.seeds)
    print(say(report))
    return report


if __name__ == "__main__":
    main()
