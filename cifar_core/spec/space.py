"""Sweeps: a base experiment document plus a search space, expanded into concrete experiments.

Search space format (`budget` and `seed` optional):
  {"method": "random",          # "grid": every combination; "random": `budget` independent draws
   "budget": 8,                 # runs, 1..200; random default 8; a grid needs budget >= its size
   "seed": 0,                   # random draws are reproducible from this
   "params": {
     "learning_rate":    {"log_uniform": [1e-4, 1e-2]},   # exp(uniform(log low, log high))
     "batch_size":       {"values": [32, 64, 128]},       # pick one (grid: each in turn)
     "layers.5.rate":    {"uniform": [0.0, 0.5]},         # uniform in [low, high]
     "augment.flip":     {"values": [true, false]}}}

Paths are dotted keys into the base document, with integer indexes into lists ("layers.0.filters");
every path must already exist in the base document (add the setting there first).
Drawn numbers: where the base value is a whole number (filters, units, epochs...) the draw stays a
whole number: uniform picks an integer in [ceil(low), floor(high)], log_uniform rounds and clips.
Other draws are rounded to 4 significant digits (readable tables), kept inside [low, high].
`values` entries are used as written. Random draws are independent, so a small discrete space
can repeat a combination.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from cifar_core.errors import SpecError
from cifar_core.spec import jsonread

METHODS = ("grid", "random")
RANGE_KINDS = ("values", "uniform", "log_uniform")
SPACE_KEYS = ("method", "budget", "seed", "params")
MAX_RUNS = 200
DEFAULT_BUDGET = 6  # runs of a random search when no budget is given (the CLI and the Sweeps page)
NAME_LIMIT = 64  # longest experiment name the spec accepts
SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class ParamRange:
    """Where one setting lives in the experiment document and what it may take."""

    path: str  # "layers.5.rate"
    kind: str  # values | uniform | log_uniform
    values: tuple = ()  # for kind "values"
    low: float | None = None  # for uniform / log_uniform, inclusive
    high: float | None = None

    def to_dict(self) -> dict:
        if self.kind == "values":
            return {"values": copy.deepcopy(list(self.values))}
        return {self.kind: [self.low, self.high]}


@dataclass(frozen=True)
class SweepSpace:
    """A validated search space. Build it with `parse_space` or `load_space`."""

    method: str  # grid | random
    budget: int  # runs: the grid size for a grid, the number of draws for random
    seed: int
    params: tuple[ParamRange, ...]

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.params]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "budget": self.budget,
            "seed": self.seed,
            "params": {p.path: p.to_dict() for p in self.params},
        }


def _error(message: str) -> SpecError:
    return SpecError(message, field="space")


def parse_space(doc: dict) -> SweepSpace:
    """Validate a search-space document; raise SpecError(field="space") naming the bad part."""
    if not isinstance(doc, dict):
        raise _error(f'a search space must be an object like {{"method": "grid", "params": {{...}}}}, got {doc!r}')
    for key in doc:
        if key not in SPACE_KEYS:
            raise _error(f"search space takes no {key!r}: allowed keys are {', '.join(SPACE_KEYS)}")
    method = doc.get("method")
    if method is None:
        raise _error("search space method is missing: use 'grid' or 'random'")
    if method not in METHODS:
        raise _error(f"search space method {method!r} is unknown: use 'grid' or 'random'")
    params = _parse_params(doc.get("params"))
    seed = _whole(doc.get("seed", 0), "seed", 0, 2**31 - 1)
    budget = doc.get("budget")
    if budget is not None:
        budget = _whole(budget, "budget", 1, MAX_RUNS)
    if method == "random":
        return SweepSpace("random", budget or DEFAULT_BUDGET, seed, params)
    for p in params:
        if p.kind != "values":
            raise _error(
                f"grid needs 'values' lists; {p.path} has {p.kind}: list the values to try, or use method 'random'"
            )
    sizes = [len(p.values) for p in params]
    size = math.prod(sizes)
    if size > MAX_RUNS:
        raise _error(
            f"grid has {size} runs ({' x '.join(map(str, sizes))}), more than {MAX_RUNS}: "
            "drop some values or use method 'random' with a budget"
        )
    if budget is not None and budget < size:
        raise _error(f"grid has {size} runs but budget is {budget}: raise budget to {size} or use method 'random'")
    return SweepSpace("grid", size, seed, params)


def _whole(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(f"search space {name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise _error(f"search space {name}={value} is out of range {low}..{high}")
    return value


def _parse_params(raw) -> tuple[ParamRange, ...]:
    example = '{"learning_rate": {"values": [0.001, 0.01]}}'
    if not isinstance(raw, dict) or not raw:
        raise _error(f"search space params must be a non-empty object like {example}, got {raw!r}")
    params = tuple(_parse_range(path, spec) for path, spec in raw.items())
    for a, b in itertools.permutations(params, 2):
        if b.path.startswith(a.path + "."):
            raise _error(f"params {a.path!r} and {b.path!r} overlap: sweep one or the other")
    return params


def _parse_range(path, spec) -> ParamRange:
    if not isinstance(path, str) or not path or any(part == "" for part in path.split(".")):
        raise _error(f"param path {path!r} has an empty part: write dotted keys like 'layers.5.rate'")
    forms = '{"values": [...]}, {"uniform": [low, high]} or {"log_uniform": [low, high]}'
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in RANGE_KINDS:
        raise _error(f"{path} must be one of {forms}, got {spec!r}")
    kind, arg = next(iter(spec.items()))
    if kind == "values":
        if not isinstance(arg, list) or not arg:
            raise _error(f"{path} values must be a non-empty list, got {arg!r}")
        if len(arg) > MAX_RUNS:
            raise _error(f"{path} has {len(arg)} values, more than {MAX_RUNS}: keep the ones worth a run")
        return ParamRange(path, "values", values=tuple(copy.deepcopy(arg)))
    if (
        not isinstance(arg, list)
        or len(arg) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in arg)
        or arg[0] > arg[1]
    ):
        raise _error(f"{path} {kind} needs [low, high] numbers with low <= high, got {arg!r}")
    low, high = arg
    if kind == "log_uniform" and low <= 0:
        raise _error(f"{path} log_uniform bounds must be > 0, got {arg!r}: use e.g. [0.0001, 0.01]")
    return ParamRange(path, kind, low=low, high=high)


def load_space(path_or_doc) -> SweepSpace:
    """A SweepSpace from a dict, a JSON file path, or JSON text starting with '{'."""
    if isinstance(path_or_doc, dict):
        return parse_space(path_or_doc)
    if isinstance(path_or_doc, str) and path_or_doc.lstrip().startswith("{"):
        try:
            doc = jsonread.loads(path_or_doc, "search space text")
        except SpecError as exc:
            raise _error(str(exc)) from None
        return parse_space(doc)
    if not isinstance(path_or_doc, (str, Path)):
        raise _error(f"load_space takes a dict, a file path or JSON text, got {type(path_or_doc).__name__}")
    path = Path(path_or_doc).expanduser()
    if not path.is_file():
        raise _error(f"search space file {str(path)!r} does not exist; check the path")
    try:
        doc = jsonread.load_file(path, f"search space file {str(path)!r}")
    except SpecError as exc:
        raise _error(str(exc)) from None  # a space's errors carry field="space"
    return parse_space(doc)


# ---------------------------------------------------------------------------------------------
# Paths into the base document


def _parts(path: str) -> list[str]:
    return path.split(".")


def _step(container, part: str, walked: str, path: str):
    """The child `part` of `container`, or SpecError saying why `path` breaks there."""
    where = walked or "the base experiment"
    if isinstance(container, dict):
        if part not in container:
            keys = ", ".join(map(str, container)) or "none"
            raise _error(
                f"sweep path {path!r}: {where} has no {part!r} (keys: {keys}); add it to the base experiment first"
            )
        return container[part]
    if isinstance(container, list):
        last = len(container) - 1
        if not part.isdigit():
            raise _error(f"sweep path {path!r}: {part!r} is not an index into the list {where}; use a number 0..{last}")
        if int(part) > last:
            raise _error(
                f"sweep path {path!r}: {where} has {len(container)} entries (0..{last}), so {part} does not exist"
            )
        return container[int(part)]
    kind = type(container).__name__
    raise _error(f"sweep path {path!r}: {where} is a {kind} ({container!r}), so {part!r} cannot go inside it")


def get_path(doc: dict, path: str):
    """The value at a dotted path ("layers.0.filters"); SpecError if it does not exist."""
    node, walked = doc, ""
    for part in _parts(path):
        node = _step(node, part, walked, path)
        walked = f"{walked}.{part}" if walked else part
    return node


def set_path(doc: dict, path: str, value) -> None:
    """Replace the value at an existing dotted path, in place."""
    *head, last = _parts(path)
    parent = get_path(doc, ".".join(head)) if head else doc
    _step(parent, last, ".".join(head), path)  # raises if `last` is missing
    parent[int(last) if isinstance(parent, list) else last] = value


# ---------------------------------------------------------------------------------------------
# Expansion


def expand(base_doc: dict, space: SweepSpace, first: int = 1) -> list[dict]:
    """The concrete experiment documents: deep copies named "<base>-s01".. (numbered from `first`,
    see `first_free`), each with "sweep_params"."""
    if not isinstance(base_doc, dict):
        raise _error(f"the base experiment must be an object, got {type(base_doc).__name__}")
    whole = {p.path: _is_whole(get_path(base_doc, p.path)) for p in space.params}  # checks every path
    if space.method == "grid":
        combos = [dict(zip(space.paths, combo)) for combo in itertools.product(*(p.values for p in space.params))]
    else:
        combos = _draws(space, whole)
    return documents(base_doc, combos, first)


def documents(base_doc: dict, chosen: list[dict], first: int = 1) -> list[dict]:
    """One experiment document per dict of swept values (path -> value): deep copies of
    `base_doc` named "<base>-s01".. from `first`, each with its "sweep_params"."""
    base_name = str(base_doc.get("name") or "sweep")
    width = max(2, len(str(first + len(chosen) - 1)))
    docs = []
    for i, values in enumerate(chosen, start=first):
        doc = copy.deepcopy(base_doc)
        for path, value in values.items():
            set_path(doc, path, copy.deepcopy(value))
        doc["name"] = run_name(base_name, i, width)
        doc["sweep_params"] = copy.deepcopy(values)
        docs.append(doc)
    return docs


def run_name(base_name: str, index: int, width: int = 2) -> str:
    """The name of a sweep's run: "<base>-s07", the base cut so that the name fits NAME_LIMIT."""
    suffix = f"-s{index:0{width}d}"
    return base_name[: NAME_LIMIT - len(suffix)] + suffix


NAME_PREFIX_KEPT = NAME_LIMIT - 12  # a base name cut to this length is a prefix of every run_name of it


def first_free(base_name: str, taken) -> int:
    """The first run number past every "<base>-sNN" name in `taken`, so that a sweep's run names
    never repeat another sweep's over the same base (1 when there is none)."""
    used = [0]
    for name in taken:
        match = re.fullmatch(r"(.*)-s(\d+)", str(name))
        if match and run_name(base_name, int(match.group(2)), len(match.group(2))) == name:
            used.append(int(match.group(2)))
    return max(used) + 1


def split_sweep_params(doc: dict) -> tuple[dict, dict]:
    """(the experiment document without "sweep_params", the sweep_params) for spec parsing."""
    rest = {k: v for k, v in doc.items() if k != "sweep_params"}
    return rest, dict(doc.get("sweep_params") or {})


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _draws(space: SweepSpace, whole: dict[str, bool]) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(space.seed)
    for p in space.params:
        if p.kind != "values" and whole[p.path] and math.ceil(p.low) > math.floor(p.high):
            raise _error(
                f"{p.path} is a whole number in the base experiment but {p.kind} {[p.low, p.high]} holds none; "
                "widen the range"
            )
    return [{p.path: _draw(p, whole[p.path], rng) for p in space.params} for _ in range(space.budget)]


def _draw(p: ParamRange, whole: bool, rng):
    if p.kind == "values":
        return p.values[int(rng.integers(len(p.values)))]
    if p.kind == "uniform" and whole:
        return int(rng.integers(math.ceil(p.low), math.floor(p.high) + 1))
    if p.kind == "uniform":
        raw = float(rng.uniform(p.low, p.high))
    else:
        raw = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
    if whole:
        return int(min(max(round(raw), math.ceil(p.low)), math.floor(p.high)))
    return min(max(float(f"{raw:.{SIGNIFICANT_DIGITS}g}"), p.low), p.high)
