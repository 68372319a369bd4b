"""The next trials of a sweep: grid, random and TPE, all Optuna's own samplers, seeded.

`next_params(space, sampler, seed, known, n)` rebuilds an in-memory study from the trials already
known (their params, curves and final values; running ones too) and asks Optuna for `n` more
(ask-and-tell, no objective function): the lab's queue runs them. The same arguments always give
the same answer. Each trial number k is drawn by a sampler seeded from (seed, k), so asking for 4
at once gives what 4 calls of 1 would give when each call passes the earlier proposals as running.

How this differs from `cifar_core.spec.space.expand` (which stays, unchanged, for its callers):
- grid: the same set of combinations, each once (a grid already covered returns fewer than `n`,
  or none), but in the order of Optuna's GridSampler: its grid shuffled with the seed, not
  `itertools.product` order (expand ignores the seed for a grid).
- random: the same distributions (values: one entry, each equally likely; uniform; log_uniform)
  but other numbers for the same seed: Optuna's RandomSampler draws them, not expand's numpy
  Generator. Whole-number paths (`whole_paths`, as expand decides from the base document) are
  Optuna integers: uniform over [ceil(low), floor(high)], log_uniform drawn log-uniformly by Optuna
  then rounded its way (expand rounds exp(uniform(log low, log high)) and clips). Other numbers are
  rounded to 4 significant digits and kept in [low, high], as expand does.
- tpe: new (a space's "method" still says grid or random; the sweep's SearchConfig.sampler picks).
  TPE draws its first TPE_STARTUP trials at random, then models the completed and pruned trials
  (running ones count as the worst value so far, constant liar, so parallel proposals spread out).
- nsga2: new, two objectives (validation accuracy up, the trial's `value2`, latency or
  multiply-adds, down): Optuna's NSGAIISampler. Its generations are tied to the start order
  (trial k is in generation k // population): Optuna keeps a trial's generation in the study's own
  storage, which is thrown away, so the rule rebuilds it from the store alone. Generation 0 is
  drawn at random; each later one is bred from the best (non-dominated, then crowding distance)
  of the generations before it that completed.
Param dicts hold the lab's values (a `values` entry as written, a whole number or a rounded float)
keyed by the space's paths, the same as expand's "sweep_params". A known trial whose params do not
fit the space (another space, a value no longer listed) is left out of the study.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Collection, Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from cifar_core.errors import SpecError
from cifar_core.search import study as studies
from cifar_core.search.config import SAMPLERS, TrialCurve
from cifar_core.spec.space import SIGNIFICANT_DIGITS, ParamRange, SweepSpace, get_path

TPE_STARTUP = 10  # trials TPE draws at random before it models the results (Optuna's default)


def whole_paths(base_doc: dict, space: SweepSpace) -> frozenset[str]:
    """The space's paths whose value in the base experiment is a whole number (filters, units,
    epochs...): their draws stay whole numbers, as in `expand`."""
    return frozenset(
        p.path for p in space.params if isinstance(v := get_path(base_doc, p.path), int) and not isinstance(v, bool)
    )


def distributions(space: SweepSpace, whole: Collection[str] = ()) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna's distribution of each path. A `values` list becomes a categorical over the entries'
    indexes (entries may be lists or objects, which Optuna cannot hold)."""
    dists = {}
    for p in space.params:
        if p.kind == "values":
            dists[p.path] = CategoricalDistribution(list(range(len(p.values))))
        elif p.path in whole:
            low, high = math.ceil(p.low), math.floor(p.high)
            if low > high:
                raise SpecError(
                    f"{p.path} is a whole number in the base experiment but {p.kind} {[p.low, p.high]} holds none; "
                    "widen the range",
                    field="space",
                )
            dists[p.path] = IntDistribution(low, high, log=p.kind == "log_uniform")
        else:
            dists[p.path] = FloatDistribution(p.low, p.high, log=p.kind == "log_uniform")
    return dists


def next_params(
    space: SweepSpace,
    sampler: str,
    seed: int,
    known: Sequence[TrialCurve],
    n: int,
    whole: Collection[str] = (),
    population: int = 8,
) -> list[dict]:
    """The next `n` param dicts ({path: value}) of a sweep over `space`, given the trials already
    known (in the order they started). Fewer than `n` only when a grid runs out. `population`:
    NSGA-II's trials per generation."""
    if sampler not in SAMPLERS:
        raise SpecError(f"sampler {sampler!r} is unknown: use one of {', '.join(SAMPLERS)}", field="search")
    if sampler == "grid":
        for p in space.params:
            if p.kind != "values":
                raise SpecError(
                    f"grid needs 'values' lists; {p.path} has {p.kind}: list the values to try, or use sampler "
                    "'random' or 'tpe'",
                    field="search",
                )
    dists = distributions(space, whole)
    grid = _grid_sampler(space, seed) if sampler == "grid" else None
    study = studies.new_study(grid, objectives=2 if sampler == "nsga2" else 1)
    seen = set()
    for trial in known:
        internal = to_optuna(space, trial.params, dists)
        if internal is None:
            continue
        attrs = _grid_attrs(grid, space, internal) if grid else None
        if sampler == "nsga2":
            attrs = {StartOrderNSGAII.generation_key(): len(study.trials) // population}
        studies.add(study, trial, internal, {k: dists[k] for k in internal}, attrs)
        seen.add(_key(internal, space))
    if grid is not None:
        return _ask_grid(study, space, dists, seen, n)
    out = []
    for _ in range(n):
        study.sampler = _seeded(sampler, seed, len(study.trials), population)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = study.ask(dists)
        out.append(_to_lab(space, trial.params, whole))
    return out


class StartOrderNSGAII(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, with a trial's generation read from its start order (number // population)
    instead of from the completed trials at the time it was asked, which a study rebuilt from the
    store no longer knows. Sampling, selection and crossover are Optuna's. Trials of a generation
    start while the one before it still runs (a sweep keeps two going), so a generation may have
    fewer complete parents than a crossover takes: it is then drawn at random, as generation 0 is."""

    @classmethod
    def generation_key(cls) -> str:
        return cls._get_generation_key()

    def get_trial_generation(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        generation = trial.number // self.population_size
        study._storage.set_trial_system_attr(trial._trial_id, self.generation_key(), generation)
        return generation

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict) -> dict:
        parents = self.get_parent_population(study, self.get_trial_generation(study, trial))
        if len(parents) < self._child_generation_strategy._crossover.n_parents:
            return {}
        return super().sample_relative(study, trial, search_space)


def _seeded(sampler: str, seed: int, number: int, population: int = 8) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial `number` of a sweep seeded `seed`."""
    derived = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=derived)
    if sampler == "nsga2":
        return StartOrderNSGAII(population_size=population, seed=derived)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=derived, n_startup_trials=TPE_STARTUP, constant_liar=True)


def _grid_sampler(space: SweepSpace, seed: int) -> optuna.samplers.GridSampler:
    return optuna.samplers.GridSampler({p.path: list(range(len(p.values))) for p in space.params}, seed=seed)


def _grid_attrs(grid: optuna.samplers.GridSampler, space: SweepSpace, internal: dict) -> dict:
    """The system attributes GridSampler gives a trial it proposed (its grid point's id in the
    sampler's shuffled grid, and the grid), so a known trial counts as visited. GridSampler keeps
    both privately (Optuna 5.0); tests/test_search.py checks a grid is covered once."""
    point = tuple(internal[name] for name in grid._param_names)
    return {"search_space": grid._search_space, "grid_id": grid._all_grids.index(point)}


def _ask_grid(study: optuna.Study, space: SweepSpace, dists: dict, seen: set, n: int) -> list[dict]:
    """Ask GridSampler for unseen grid points. It hands trial k the k-th point of its shuffled
    grid; one already known (known trials came in another order) is told FAILED and asked again."""
    size = math.prod(len(p.values) for p in space.params)
    out = []
    while len(out) < n and len(seen) < size:
        trial = study.ask(dists)
        key = _key(trial.params, space)
        if key in seen:
            study.tell(trial, state=TrialState.FAIL)
            continue
        seen.add(key)
        out.append(_to_lab(space, trial.params, ()))
    return out


def _key(internal: dict, space: SweepSpace) -> tuple:
    return tuple(internal.get(p.path) for p in space.params)


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def to_optuna(space: SweepSpace, params: dict, dists: dict) -> dict | None:
    """A known trial's params as Optuna holds them, or None if they do not fit the space."""
    internal = {}
    for p in space.params:
        if p.path not in params:
            return None
        value = params[p.path]
        if p.kind == "values":
            index = next((i for i, v in enumerate(p.values) if _same(v, value)), None)
            if index is None:
                return None
            internal[p.path] = index
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        dist = dists[p.path]
        if isinstance(dist, IntDistribution) and value != int(value):
            return None
        value = int(value) if isinstance(dist, IntDistribution) else float(value)
        if not dist.low <= value <= dist.high:
            return None
        internal[p.path] = value
    return internal


def _to_lab(space: SweepSpace, internal: dict, whole: Collection[str]) -> dict:
    """Optuna's proposal as the lab's sweep_params: entries as written, whole numbers, or floats
    rounded to SIGNIFICANT_DIGITS inside [low, high] (as expand rounds)."""
    out = {}
    for p in space.params:
        value = internal[p.path]
        out[p.path] = _lab_value(p, value, p.path in whole)
    return out


def _lab_value(p: ParamRange, value, whole: bool):
    if p.kind == "values":
        return copy.deepcopy(p.values[value])
    if whole:
        return int(value)
    return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), p.low), p.high)
