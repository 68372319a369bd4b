"""The search core (cifar_core/search) on small made-up curves: no training, no store."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from cifar_core.errors import NotFound, SpecError
from cifar_core.search import samplers
from cifar_core.search import study as studies
from cifar_core.search.config import (
    COMPLETE,
    CONTINUE,
    PAUSE,
    PAUSED,
    PRUNE,
    PRUNED,
    RUNNING,
    PrunerConfig,
    SearchConfig,
    TrialCurve,
)
from cifar_core.search.promotion import promotions
from cifar_core.search.pruners import decide, optuna_pruner
from cifar_core.search.replay import replay
from cifar_core.spec.space import expand, parse_space

FLOAT_SPACE = parse_space({"method": "random", "params": {"x": {"uniform": [0.0, 1.0]}}})


def _score(x: float) -> float:
    return 1.0 - (x - 0.8) ** 2


def _known(params: list[dict]) -> list[TrialCurve]:
    return [TrialCurve(i, p, {1: _score(p["x"])}, COMPLETE) for i, p in enumerate(params)]


def _curve(final: float, epochs: int) -> dict[int, float]:
    """A rising curve reaching `final` at the last epoch."""
    return {e: round(final * (0.5 + 0.5 * e / epochs), 4) for e in range(1, epochs + 1)}


# ---------------------------------------------------------------------------------------------
# Samplers


def test_tpe_is_seeded_and_after_its_startup_differs_from_random():
    known = _known(samplers.next_params(FLOAT_SPACE, "random", 3, [], samplers.TPE_STARTUP + 5))
    tpe = samplers.next_params(FLOAT_SPACE, "tpe", 3, known, 4)
    assert tpe == samplers.next_params(FLOAT_SPACE, "tpe", 3, known, 4)
    rand = samplers.next_params(FLOAT_SPACE, "random", 3, known, 4)
    assert tpe != rand
    # TPE learns: its proposals sit nearer the best x (0.8) than random draws do
    assert sum(abs(p["x"] - 0.8) for p in tpe) < sum(abs(p["x"] - 0.8) for p in rand)
    assert samplers.next_params(FLOAT_SPACE, "tpe", 4, known, 4) != tpe  # another seed, other proposals


def test_random_is_reproducible_rounded_and_the_same_in_one_batch_or_many():
    space = parse_space({"method": "random", "params": {
        "lr": {"log_uniform": [1e-4, 1e-2]}, "filters": {"uniform": [8, 64]}, "act": {"values": ["relu", "gelu"]}}})
    batch = samplers.next_params(space, "random", 7, [], 4, whole={"filters"})
    assert batch == samplers.next_params(space, "random", 7, [], 4, whole={"filters"})
    one_by_one = []
    for _ in range(4):
        running = [TrialCurve(i, p, {}, RUNNING) for i, p in enumerate(one_by_one)]
        one_by_one += samplers.next_params(space, "random", 7, running, 1, whole={"filters"})
    assert one_by_one == batch
    for p in batch:
        assert 1e-4 <= p["lr"] <= 1e-2 and p["lr"] == float(f"{p['lr']:.4g}")
        assert isinstance(p["filters"], int) and 8 <= p["filters"] <= 64
        assert p["act"] in ("relu", "gelu")
    assert len({p["lr"] for p in batch}) == 4


def test_whole_paths_follow_the_base_document():
    space = parse_space({"method": "random", "params": {"epochs": {"uniform": [2, 9]}, "lr": {"uniform": [0, 1]}}})
    assert samplers.whole_paths({"epochs": 5, "lr": 0.1}, space) == {"epochs"}


def test_grid_covers_the_grid_once_as_expand_does_in_another_order():
    doc = {"name": "b", "lr": 0.1, "layers": [{"units": 4}], "flip": True}
    space = parse_space({"method": "grid", "params": {
        "lr": {"values": [0.1, 0.01, 0.001]}, "layers.0": {"values": [{"units": 8}, {"units": 16}]},
        "flip": {"values": [True, False]}}})
    expanded = [d["sweep_params"] for d in expand(doc, space)]
    proposed = samplers.next_params(space, "grid", 0, [], 100)
    assert len(proposed) == 12 and sorted(map(repr, proposed)) == sorted(map(repr, expanded))
    assert proposed != expanded  # the seeded shuffle of Optuna's GridSampler, not product order
    # two at a time, the earlier ones known: the same order, each point once, then nothing
    stepwise = []
    while batch := samplers.next_params(space, "grid", 0, _known_any(stepwise), 2):
        stepwise += batch
    assert stepwise == proposed
    # known trials from another order (the lab's expand) are never proposed again
    rest = samplers.next_params(space, "grid", 0, _known_any(expanded[:5]), 100)
    assert sorted(map(repr, rest)) == sorted(map(repr, expanded[5:]))


def _known_any(params: list[dict]) -> list[TrialCurve]:
    return [TrialCurve(i, p, {1: 0.5}, COMPLETE) for i, p in enumerate(params)]


def test_grid_needs_values_lists():
    with pytest.raises(SpecError, match="grid needs 'values' lists; x has uniform: list the values to try"):
        samplers.next_params(FLOAT_SPACE, "grid", 0, [], 1)
    with pytest.raises(SpecError, match="sampler 'bayes' is unknown: use one of grid, random, tpe"):
        samplers.next_params(FLOAT_SPACE, "bayes", 0, [], 1)


# ---------------------------------------------------------------------------------------------
# Pruners


def _finished(n: int, finals: list[float], epochs: int = 4) -> list[TrialCurve]:
    return [TrialCurve(i, {}, _curve(f, epochs), COMPLETE) for i, f in zip(range(n), finals)]


def test_median_prunes_a_clear_loser_and_keeps_a_leader_saying_why():
    done = _finished(5, [0.70, 0.72, 0.74, 0.76, 0.78])  # epoch 2: 0.525, 0.54, 0.555, 0.57, 0.585
    median = PrunerConfig("median", min_epochs=1, startup_trials=5)
    loser = TrialCurve(5, {}, {1: 0.30, 2: 0.40}, RUNNING)
    d = decide(median, [*done, loser], 5, 2)
    assert d.action == PRUNE
    assert d.reason == "pruned after epoch 2: best so far 40.0% < median 55.5% of the 5 completed trials at epoch 2"
    assert (d.value, d.threshold) == (0.40, pytest.approx(0.555))
    leader = TrialCurve(5, {}, {1: 0.60, 2: 0.70}, RUNNING)
    d = decide(median, [*done, leader], 5, 2)
    assert d.action == CONTINUE and d.reason.startswith("epoch 2: best so far 70.0% >= median 55.5%")
    # too few completed trials: no pruning yet
    d = decide(median, [*done[:3], loser], 5, 2)
    assert d.action == CONTINUE and "3 of the 5 startup trials completed" in d.reason


def test_percentile_keeps_only_the_top_share():
    done = _finished(5, [0.70, 0.72, 0.74, 0.76, 0.78])
    keep_top = PrunerConfig("percentile", percentile=25.0, startup_trials=5)
    middling = TrialCurve(5, {}, {1: 0.30, 2: 0.56}, RUNNING)  # above the median, below the 75th percentile
    d = decide(keep_top, [*done, middling], 5, 2)
    assert d.action == PRUNE and "< top-25% line (the 75th percentile) 57.0%" in d.reason
    assert decide(PrunerConfig("median"), [*done, middling], 5, 2).action == CONTINUE


def test_no_pruner_and_the_last_epoch_always_continue():
    loser = TrialCurve(5, {}, {1: 0.1, 2: 0.1}, RUNNING)
    trials = [*_finished(5, [0.7] * 5), loser]
    assert decide(PrunerConfig("none"), trials, 5, 2).action == CONTINUE
    assert decide(PrunerConfig("median", max_epochs=2), trials, 5, 2).reason.startswith("epoch 2 is the last")
    with pytest.raises(NotFound, match="trial 9 is not among the 6 trials given"):
        decide(PrunerConfig("median"), trials, 9, 2)
    with pytest.raises(ValueError, match="trial 5 has no validation accuracy for epoch 3"):
        decide(PrunerConfig("median"), trials, 5, 3)


def test_successive_halving_pauses_below_the_top_third_and_promotion_picks_the_top_third():
    sh = PrunerConfig("successive_halving", min_epochs=1, eta=3, max_epochs=9)
    first = TrialCurve(0, {}, _curve(0.9, 9) | {1: 0.50}, COMPLETE)
    paused = TrialCurve(1, {}, {1: 0.30}, PAUSED)
    third = TrialCurve(2, {}, {1: 0.40}, RUNNING)
    d = decide(sh, [first, paused, third], 2, 1)
    assert d.action == PAUSE and d.rung == 0
    assert d.reason == ("paused after epoch 1: 40.0% ranks 2nd of 3 at rung 0; "
                        "the top 1/3 (1) go on, the 1st best has 50.0%")
    assert promotions(sh, [first, paused, third.upto(1, PAUSED)]) == []
    # three more trials land below them at rung 0: six values, the top 1/3 is two, the 40% trial is 2nd
    late = [TrialCurve(i, {}, {1: v}, PAUSED) for i, v in ((3, 0.10), (4, 0.15), (5, 0.20))]
    found = promotions(sh, [first, paused, third.upto(1, PAUSED), *late])
    assert [(p.trial_id, p.rung, p.epoch, p.to_epoch) for p in found] == [(2, 0, 1, 3)]
    assert found[0].reason == ("trial 2: 40.0% now ranks 2nd of 6 at rung 0 (epoch 1), "
                               "in the top 1/3 (2): resume to epoch 3")
    # a leader goes on, and is told the next rung
    d = decide(sh, [first, TrialCurve(2, {}, {1: 0.6}, RUNNING)], 2, 1)
    assert d.action == CONTINUE and d.reason.endswith("next rung at epoch 3")
    assert decide(sh, [first, TrialCurve(2, {}, {1: 0.6, 2: 0.2}, RUNNING)], 2, 2).reason == (
        "epoch 2: next rung 1 at epoch 3")


@pytest.mark.parametrize("config", [
    PrunerConfig("median", min_epochs=2, startup_trials=3),
    PrunerConfig("percentile", percentile=40.0, startup_trials=2),
    PrunerConfig("successive_halving", min_epochs=1, eta=2, max_epochs=9),
    PrunerConfig("hyperband", min_epochs=1, eta=3, max_epochs=9),
], ids=lambda c: c.kind)
def test_decide_agrees_with_optuna_running_the_same_trials_itself(config):
    """Optuna's own ask/report/should_prune over trials run one after another, against `decide`
    over the same curves rebuilt from records."""
    rng = random.Random(5)
    curves = [_curve(rng.uniform(0.4, 0.9), 9) for _ in range(25)]
    native = optuna.create_study(study_name=studies.STUDY_NAME, direction="maximize", pruner=optuna_pruner(config))
    records: list[TrialCurve] = []
    stops = 0
    for i, curve in enumerate(curves):
        trial = native.ask()
        state = COMPLETE
        for epoch in range(1, 10):
            trial.report(curve[epoch], epoch)
            if epoch == 9:
                break
            mine = decide(config, [*records, TrialCurve(i, {}, {e: curve[e] for e in range(1, epoch + 1)})], i, epoch)
            assert mine.stops == trial.should_prune(), (i, epoch, mine.reason)
            if mine.stops:
                state = PAUSED if mine.action == PAUSE else PRUNED
                break
        stops += state != COMPLETE
        native.tell(trial, curve[epoch] if state == COMPLETE else None,
                    state=optuna.trial.TrialState.COMPLETE if state == COMPLETE else optuna.trial.TrialState.PRUNED)
        records.append(TrialCurve(i, {}, {e: curve[e] for e in range(1, epoch + 1)}, state))
    assert stops > 0


# ---------------------------------------------------------------------------------------------
# Replay


def _sweep() -> list[TrialCurve]:
    finals = [0.80, 0.50, 0.78, 0.45, 0.76, 0.40, 0.82, 0.42]
    return [TrialCurve(i, {}, _curve(f, 6), COMPLETE) for i, f in enumerate(finals)]


def test_replay_stops_the_losers_counts_the_epochs_saved_and_keeps_the_best():
    result = replay(PrunerConfig("median", min_epochs=1, startup_trials=2), _sweep())
    run = result.runs[0]
    assert run.order == tuple(range(8))
    # trial 1 (50%) ran before two trials had completed; the 76% trial lies just below the median
    # after one epoch (44.3% < 45.5%), a cost of judging rising curves that early
    assert run.stopped == {3: (PRUNE, 1), 4: (PRUNE, 1), 5: (PRUNE, 1), 7: (PRUNE, 1)}
    assert run.reasons[3] == "pruned after epoch 1: best so far 26.2% < median 45.5% of the 3 completed trials at epoch 1"
    assert run.epochs_recorded == 48 and run.epochs_saved == 20
    assert run.best_trial == 6 and run.best_survived and run.best_kept == 0.82


def test_replay_over_shuffled_orders_is_seeded():
    sweep = _sweep()
    a = replay(PrunerConfig("median", startup_trials=2), sweep, shuffles=3, seed=1)
    b = replay(PrunerConfig("median", startup_trials=2), sweep, shuffles=3, seed=1)
    assert len(a.runs) == 4 and [r.order for r in a.runs] == [r.order for r in b.runs]
    assert [r.epochs_saved for r in a.runs] == [r.epochs_saved for r in b.runs]
    assert a.best_survived_share == 1.0 and 0 < a.saved_share < 1


def test_replay_with_successive_halving_promotes_paused_trials():
    sweep = _sweep()
    run = replay(PrunerConfig("successive_halving", min_epochs=1, eta=2, max_epochs=6), sweep).runs[0]
    assert run.stopped and all(action == PAUSE for action, _ in run.stopped.values())
    assert run.best_survived and run.epochs_saved > 0
    assert replay(PrunerConfig("none"), sweep).runs[0].epochs_saved == 0


# ---------------------------------------------------------------------------------------------
# Config


def test_a_bad_config_names_the_value_and_the_fix():
    cases = [
        (dict(kind="medain"), "pruner 'medain' is unknown: use one of none, median, percentile, successive_halving, hyperband"),
        (dict(kind="successive_halving", eta=1), r"pruner eta=1 is out of range: use a whole number >= 2"),
        (dict(kind="hyperband"), "pruner hyperband needs max_epochs .*: set max_epochs"),
        (dict(kind="median", min_epochs=5, max_epochs=3), "min_epochs=5 is more than max_epochs=3: lower min_epochs"),
        (dict(kind="percentile", percentile=100), "pruner percentile=100 is out of range: use a number strictly"),
        (dict(kind="median", min_epochs=1.5), r"pruner min_epochs must be a whole number, got 1.5"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SpecError, match=message) as info:
            PrunerConfig(**kwargs)
        assert info.value.field == "search"
    with pytest.raises(SpecError, match="sampler 'bayes' is unknown: use one of grid, random, tpe"):
        SearchConfig(sampler="bayes")
    with pytest.raises(SpecError, match="search takes no 'budget': allowed keys are sampler, pruner, seed"):
        SearchConfig.from_dict({"budget": 3})
    with pytest.raises(SpecError, match="pruner takes no 'rate'"):
        SearchConfig.from_dict({"pruner": {"kind": "median", "rate": 2}})
    with pytest.raises(SpecError, match=r"max_trials=0 is out of range: use a whole number 1..200"):
        SearchConfig(max_trials=0)


def test_eta_defaults_to_optunas_4_for_successive_halving_and_3_for_hyperband_and_a_stored_one_stands():
    assert PrunerConfig("successive_halving").eta == 4 and PrunerConfig("hyperband", max_epochs=9).eta == 3
    assert PrunerConfig("successive_halving", eta=3).eta == 3
    assert PrunerConfig.from_dict({"kind": "successive_halving", "eta": 3}).eta == 3  # a sweep stored before keeps it
    assert PrunerConfig.from_dict({"kind": "successive_halving"}).eta == 4


def test_a_config_round_trips_through_its_dict():
    config = SearchConfig("tpe", PrunerConfig("hyperband", min_epochs=2, eta=3, max_epochs=18), seed=4,
                          max_trials=30, max_epochs=200, max_minutes=90.0)
    doc = config.to_dict()
    assert doc["pruner"] == {"kind": "hyperband", "min_epochs": 2, "startup_trials": 5, "percentile": 25.0,
                             "eta": 3, "max_epochs": 18}
    assert SearchConfig.from_dict(doc) == config
    assert math.isclose(SearchConfig.from_dict({}).pruner.percentile, 25.0)


# ---------------------------------------------------------------------------------------------
# Which setting mattered (fANOVA) and the rungs


def test_fanova_finds_the_setting_that_drives_the_result_and_says_why_when_it_cannot():
    from cifar_core.search.importance import fanova

    space = parse_space({"method": "random", "params": {"learning_rate": {"log_uniform": [1e-4, 1e-2]},
                                                        "batch_size": {"values": [32, 64, 128]},
                                                        "augment.flip": {"values": [True, False]}}})
    rng = random.Random(0)
    trials = []
    for i in range(40):
        lr, batch, flip = math.exp(rng.uniform(math.log(1e-4), math.log(1e-2))), rng.choice([32, 64, 128]), rng.random() < 0.5
        acc = 0.8 - 0.1 * (math.log10(lr) + 3) ** 2 + 0.002 * flip + rng.gauss(0, 0.005)  # peaks near lr=1e-3
        trials.append(TrialCurve(i, {"learning_rate": round(lr, 6), "batch_size": batch, "augment.flip": flip},
                                 {1: acc - 0.1, 2: acc}, COMPLETE))
    found = fanova(space, trials + [TrialCurve(99, {"learning_rate": 1e-3, "batch_size": 32, "augment.flip": True},
                                               {1: 0.99}, PRUNED)])  # a pruned trial does not count
    assert found.trials == 40 and found.why_not is None
    shares = dict(found.ranked)
    assert found.ranked[0][0] == "learning_rate" and shares["learning_rate"] > 0.8
    assert shares["batch_size"] < 0.1 and shares["augment.flip"] < 0.1
    assert sum(shares.values()) == pytest.approx(1.0)
    assert fanova(space, trials[:2]).why_not == "2 trial(s) complete: fANOVA importance (Optuna) needs at least 3"
    same = [TrialCurve(i, trials[0].params, {1: 0.5 + i / 100}, COMPLETE) for i in range(3)]
    assert fanova(space, same).why_not == "the 3 complete trials share every swept value: nothing to compare"


def test_the_rungs_say_who_went_on_who_paused_and_who_was_promoted():
    from cifar_core.search.rungs import rung_entries

    sh = PrunerConfig(kind="successive_halving", min_epochs=1, eta=2, max_epochs=2)
    trials = [TrialCurve(1, {}, {1: 0.50, 2: 0.60}, COMPLETE),
              TrialCurve(2, {}, {1: 0.30, 2: 0.45}, COMPLETE),  # paused at rung 0 (2nd of 2), promoted later
              TrialCurve(3, {}, {1: 0.10}, PAUSED),
              TrialCurve(4, {}, {1: 0.05}, PRUNED),
              TrialCurve(5, {}, {1: 0.70}, RUNNING)]
    times = {1: {1: 1.0, 2: 2.0}, 2: {1: 3.0, 2: 9.0}, 3: {1: 4.0}, 4: {1: 5.0}, 5: {1: 6.0}}
    got = [(e.trial_id, e.rung, e.epoch, e.value, e.outcome) for e in rung_entries(sh, trials, times)]
    assert got == [(1, 0, 1, 0.50, "went on"), (1, 1, 2, 0.60, "completed"), (2, 0, 1, 0.30, "promoted"),
                   (2, 1, 2, 0.45, "completed"), (3, 0, 1, 0.10, "paused"), (4, 0, 1, 0.05, "pruned"),
                   (5, 0, 1, 0.70, "being judged")]
    assert rung_entries(PrunerConfig(kind="median"), trials) == []
