"""Two objectives (issue 30, item 6): a sweep searches validation accuracy (up) against latency or
multiply-adds (down) with Optuna's NSGA-II, never pruned; its Pareto front is drawn on the Sweeps
page and read by the Model choice page. Store-level tests drive the real queue, store and attempt
protocol with chosen curves and costs (tests/searchtools.py); the last runs a real NSGA-II sweep
through a worker."""

from __future__ import annotations

import json

import pytest
from pagetools import open_page
from pagetools import rerun as _run
from pagetools import texts as _texts
from searchtools import train

from cifar_core.analysis import sweeps
from cifar_core.errors import SpecError
from cifar_core.jobs import queue, store, sweeping
from cifar_core.lab import Lab
from cifar_core.search import pareto, samplers
from cifar_core.search.config import COMPLETE, RUNNING, PrunerConfig, SearchConfig, TrialCurve
from cifar_core.spec.space import load_space
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli
from cifar_core.testing.sweepstore import fill_sweep

RATES = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
SPACE = {"method": "random", "params": {"learning_rate": {"values": RATES}}}


# ------------------------------------------------------------------ the settings


def test_nsga2_needs_a_second_objective_and_refuses_a_pruner_naming_the_fix():
    with pytest.raises(SpecError, match=r"sampler nsga2 searches validation accuracy and a second objective, got "
                                        r"objective2=None: set objective2 to one of latency, macs"):
        SearchConfig("nsga2")
    with pytest.raises(SpecError, match=r"pruner 'median' cannot judge a two-objective sweep .*: use pruner none "
                                        r"with sampler nsga2, or sampler tpe to prune"):
        SearchConfig("nsga2", PrunerConfig("median"), objective2="latency")
    with pytest.raises(SpecError, match=r"objective2='macs' needs sampler nsga2 .*: set sampler nsga2, or leave "
                                        r"objective2 out"):
        SearchConfig("tpe", objective2="macs")
    with pytest.raises(SpecError, match=r"population=1 is out of range: use a whole number 2\.\."):
        SearchConfig("nsga2", objective2="macs", population=1)
    kept = SearchConfig("nsga2", objective2="macs", population=4, seed=3)
    assert SearchConfig.from_dict(kept.to_dict()) == kept and kept.objectives == 2
    older = {k: v for k, v in SearchConfig("tpe").to_dict().items() if k not in ("objective2", "population")}
    assert SearchConfig.from_dict(older) == SearchConfig("tpe")  # a sweep stored before this reads back


def test_nsga2_proposals_are_seeded_and_later_generations_are_bred_from_the_earlier_ones():
    space = load_space({"method": "random", "params": {"a": {"values": list(range(10))},
                                                       "b": {"values": list(range(10))}}})
    first = samplers.next_params(space, "nsga2", 5, [], 2, population=2)
    assert first == samplers.next_params(space, "nsga2", 5, [], 2, population=2)
    known = [TrialCurve(i, p, {1: 0.5 + i / 10}, COMPLETE, value2=1.0 + i) for i, p in enumerate(first)]
    bred = samplers.next_params(space, "nsga2", 5, known, 2, population=2)
    assert bred == samplers.next_params(space, "nsga2", 5, known, 2, population=2)
    parents = {(p["a"], p["b"]) for p in first}
    # Uniform crossover takes each value from a parent; a mutation may redraw one of the two.
    assert all(p["a"] in {a for a, _ in parents} or p["b"] in {b for _, b in parents} for p in bred), (first, bred)
    unmeasured = [TrialCurve(i, p, {1: 0.5}, COMPLETE) for i, p in enumerate(first)]  # no cost recorded
    assert len(samplers.next_params(space, "nsga2", 5, unmeasured, 1, population=2)) == 1


def test_the_front_keeps_the_trials_no_other_beats_on_both_objectives():
    def trial(i, acc, cost, state=COMPLETE):
        return TrialCurve(i, {}, {1: acc}, state, value2=cost)

    trials = [trial(1, 0.50, 1.0), trial(2, 0.60, 2.0), trial(3, 0.55, 2.5), trial(4, 0.60, 2.0),
              trial(5, 0.70, 3.0), trial(6, 0.90, 0.5, RUNNING), trial(7, 0.40, 1.0), trial(8, 0.80, None)]
    # 3 is beaten by 2 (more accurate and cheaper), 7 by 1 (as cheap, more accurate); 2 and 4 tie,
    # both stay; 6 is still running and 8 has no cost: neither is scored.
    assert pareto.front(trials) == [1, 2, 4, 5]
    assert pareto.front([]) == [] and pareto.front([trial(9, 0.3, 4.0)]) == [9]


# ------------------------------------------------------------------ a sweep through the store

COSTS = {0.001: 4.0, 0.002: 1.0, 0.003: 2.0, 0.004: 3.0, 0.005: 5.0, 0.006: 2.5}  # latency in ms by rate
ACCS = {0.001: 0.70, 0.002: 0.50, 0.003: 0.45, 0.004: 0.65, 0.005: 0.60, 0.006: 0.66}


def _nsga2_sweep(source, trials: int = 4) -> int:
    search = SearchConfig("nsga2", objective2="latency", population=2, max_trials=trials, seed=1)
    return Lab().submit_sweep(tiny_spec(epochs=2, name="moo", learning_rate=0.001), SPACE, str(source), search).group_id


def _run_all(conn, group_id) -> list[queue.Job]:
    """Train every trial the sweep queues (one more as each ends) with its rate's accuracy and cost."""
    done = []
    while (job := next((j for j in store.group_trials(conn, group_id)[0] if j["state"] == queue.QUEUED), None)):
        rate = json.loads(job["spec_json"])["learning_rate"]
        done.append(train(conn, [ACCS[rate] - 0.1, ACCS[rate]], cost={"latency_p50_ms": COSTS[rate], "macs": 1000})[0])
    return done


def test_an_nsga2_sweep_tops_up_as_trials_end_and_its_front_comes_from_the_store(conn, app_env):
    group_id = _nsga2_sweep(app_env)
    assert len(store.group_trials(conn, group_id)[0]) == 2  # two now, the next as each ends
    done = _run_all(conn, group_id)
    assert len(done) == 4 and all(j.state == queue.SUCCEEDED for j in done)
    known = sweeping.trials(conn, group_id, "latency")
    assert [t.value2 for t in known] == [COSTS[j.spec["learning_rate"]] for j in done]
    front = sweeps.sweep_front(conn, group_id)
    expected = pareto.front(known)
    assert front.objective2 == "latency" and front.runs == expected and expected
    assert list(front.table["cost"]) == sorted(COSTS[j.spec["learning_rate"]] for j in done)
    status = sweeps.search_status(conn, group_id)
    assert status.settings.startswith("NSGA-II (two objectives; learns from the ended trials, two at a time), seed 1: "
                                      "validation accuracy (higher) against batch-1 p50 latency (ms) (lower), "
                                      "generations of 2 trials; no pruner")
    assert sweeps.front_sweeps(conn) == [(group_id, "sweep #1 moo: accuracy against batch-1 p50 latency (ms)")]


def test_the_sweeps_page_draws_the_front_joined_and_lists_its_runs(conn, app_env):
    group_id = _nsga2_sweep(app_env)
    done = _run_all(conn, group_id)
    front = sweeps.sweep_front(conn, group_id)
    at = open_page("pages/sweeps.py", via_app=False, timeout=60, sweep=str(group_id))
    assert (f"**Pareto front**: validation accuracy against batch-1 p50 latency (ms); {len(front.runs)} of "
            f"{len(done)} complete trials are on it") in _texts(at.markdown)
    [figure] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if any(t.get("meta") == "front" for t in json.loads(c.proto.spec)["data"])]
    on = next(t for t in figure["data"] if t["meta"] == "front")
    off = next(t for t in figure["data"] if t["meta"] == "dominated")
    assert on["mode"] == "lines+markers" and on["x"] == sorted(on["x"])  # joined, cheapest first
    assert len(on["x"]) == len(front.runs) and len(off["x"]) == len(done) - len(front.runs)
    table = next(d.value for d in at.dataframe if "latency" in d.value.columns)
    assert list(table["run"]) == front.runs and "latency" in table.columns
    assert f"(choice?front={group_id})" in _texts(at.markdown)


def test_the_page_refuses_a_pruner_with_two_objectives_and_submits_nsga2_without(conn, app_env):
    at = open_page("pages/sweeps.py", via_app=False, timeout=60)
    at.selectbox(key="sweeps_sampler").set_value("nsga2")
    at = _run(at.selectbox(key="sweeps_pruner").set_value("median"))
    assert "cannot judge a two-objective sweep" in _texts(at.error) and "use pruner none with sampler nsga2" in \
        _texts(at.error)
    at = _run(at.selectbox(key="sweeps_pruner").set_value("none"))
    at = _run(at.selectbox(key="sweeps_objective2").set_value("macs"))
    assert not at.error
    _run(at.button(key="sweeps_submit").click())
    [row] = store.group_rows(conn, queue.GROUP_SWEEP)
    search = json.loads(row["detail_json"])["search"]
    assert (search["sampler"], search["objective2"], search["pruner"]["kind"]) == ("nsga2", "macs", "none")


def test_the_cli_refuses_a_pruner_with_nsga2_and_names_the_fix(app_env):
    space = json.dumps(SPACE)
    refused = cli("sweep", "exp1", "--space", space, "--sampler", "nsga2", "--objective2", "macs", "--pruner", "median",
                  "--data", str(app_env), check=False)
    assert refused.returncode == 2 and "use pruner none with sampler nsga2, or sampler tpe to prune" in refused.stderr
    assert not store.group_rows(store.connect(), queue.GROUP_SWEEP)  # nothing queued


# ------------------------------------------------------------------ a real sweep through a worker


def test_a_real_nsga2_sweep_through_a_worker_and_its_front_on_the_model_choice_page(tmp_path, app_env, conn):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(tiny_spec(epochs=1, name="moo")))
    space = json.dumps({"method": "random", "params": {"layers.0.filters": {"values": [2, 4, 8, 16]}}})
    queued = cli("sweep", str(spec), "--space", space, "--data", str(app_env), "--sampler", "nsga2",
                 "--objective2", "macs", "--population", "2", "--max-trials", "3", "--seed", "2").stdout
    assert len(queued.split(":")[1].split()) == 2  # two now, the third once one ends
    cli("worker", "--exit-when-idle", timeout=900)
    [row] = store.group_rows(conn, queue.GROUP_SWEEP)
    jobs = store.group_trials(conn, row["id"])[0]
    assert len(jobs) == 3 and {j["state"] for j in jobs} == {queue.SUCCEEDED}, [dict(j) for j in jobs]
    assert all(j["macs"] and j["latency_p50_ms"] for j in jobs)  # the worker measured both
    front = sweeps.sweep_front(conn, row["id"])
    assert front.runs and set(front.runs) <= {j["id"] for j in jobs}

    at = open_page("pages/choice.py", via_app=False, timeout=120, front=str(row["id"]))
    assert at.selectbox(key="choice_front").value == row["id"]
    assert f"{len(front.runs)} finished run(s) on the sweep's Pareto front" in _texts(at.caption)
    candidates = next(d.value for d in at.dataframe if "eligible" in d.value.columns)
    assert set(candidates["run"]) == set(front.runs)
    at = _run(at.selectbox(key="choice_front").set_value(0))  # every finished run again
    assert "3 finished run(s) on" in _texts(at.caption)


# ------------------------------------------------------------------ the performance scripts run (not timed here)


def test_the_decision_benchmark_judges_a_trial_through_the_store(script, lab_home, capsys):
    script("bench_search_decision").through_store(trials=12, epochs=4, repeats=2)
    said = capsys.readouterr().out
    assert "through the store (jobs/sweeping.after_epoch, SQLite in " in said
    for kind in ("median", "percentile", "successive_halving", "hyperband"):
        assert any(line.startswith(kind) for line in said.splitlines()), said


def test_a_filled_sweep_holds_its_trials_and_leaves_the_last_running(conn):
    search = SearchConfig("random", PrunerConfig("hyperband", max_epochs=10), max_trials=9)
    group_id, lease = fill_sweep(conn, search, epochs=10)
    known = sweeping.trials(conn, group_id)
    assert len(known) == 9 and known[-1].state == RUNNING and known[-1].last_epoch == 3
    assert {t.state for t in known[:-1]} <= {COMPLETE, "pruned", "paused"} and known[1].last_epoch == 10
    assert sweeping.after_epoch(conn, lease, 3) in (queue.KEEP_GOING, queue.STOP_PAUSED)
