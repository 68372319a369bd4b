"""Filter expressions over the leaderboard: `learning_rate < 0.01 and tag:muon and status:failed`.

The language (FILTER_HELP says it to users):

    expression := clause ("and" clause)*          -- every clause must hold; there is no "or"
    clause     := "tag:" TAG                      -- the run (or its seed group) carries TAG
                | "status:" STATE                 -- queued, running, ..., failed (queue.STATES)
                | "name:" TEXT                    -- the run's name contains TEXT (any case)
                | KEY OP VALUE                    -- OP: < <= > >= = != (== is =)
    KEY        := a leaderboard column (test_accuracy, best_val_accuracy, epochs, params, ...)
                | a spec setting, dotted for nested ones (learning_rate, optimizer, augment.flip)
    VALUE      := a number, true/false, a bare word or a "quoted text"

A number compares as a number; text only with = and !=. A run that lacks the key (a setting its
spec does not have, a metric it has not reached) never matches. Words are case-insensitive
("AND", "Tag:Muon"); settings and columns are compared as written.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from cifar_core.errors import LabError
from cifar_core.jobs.queue import STATES

OPS = {"<=": operator.le, ">=": operator.ge, "!=": operator.ne, "==": operator.eq, "<": operator.lt,
       ">": operator.gt, "=": operator.eq}
PREFIXES = ("tag", "status", "name")
FILTER_HELP = (
    "Clauses joined by `and` (no `or`): `tag:NAME`, `status:STATE`, `name:TEXT`, or `KEY OP VALUE` with OP one of "
    "< <= > >= = != over a leaderboard column (test_accuracy, best_val_accuracy, epochs, params, ...) or a spec "
    "setting, dotted for nested ones (learning_rate, optimizer, augment.flip). "
    "Example: `learning_rate < 0.01 and tag:muon and test_accuracy > 0.8`."
)
_CLAUSE = re.compile(r'^(?:(?P<prefix>[A-Za-z]+):(?P<word>"[^"]*"|\S+)'
                     r'|(?P<key>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|!=|==|<|>|=)\s*(?P<value>"[^"]*"|\S+))$')
_AND = re.compile(r"(?:^|\s+)and(?:\s+|$)", re.IGNORECASE)
_OR = re.compile(r"(^|\s)or(\s|$)", re.IGNORECASE)
_QUOTED = re.compile(r'"[^"]*"')
_HELD = re.compile(r"\x00(\d+)\x00")  # a quoted value held aside while the expression is split
_HALF = re.compile(r"^(?P<key>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|!=|==|<|>|=)\s*$|^(?P<prefix>[A-Za-z]+):$")


class FilterError(LabError):
    """A filter expression that does not parse; the message names the bad part and what is allowed."""


@dataclass(frozen=True)
class Clause:
    key: str  # "tag", "status", "name", or a column or dotted spec setting
    op: str  # ":" for tag/status/name, else one of OPS
    value: object  # str, float or bool

    def __str__(self) -> str:
        return f"{self.key}:{self.value}" if self.op == ":" else f"{self.key} {self.op} {self.value}"


def parse(text: str) -> tuple[Clause, ...]:
    """The clauses of a filter expression (none for an empty one); FilterError naming the bad part."""
    text = (text or "").strip()
    if not text:
        return ()
    if text.count('"') % 2:
        raise FilterError(f"{text!r} has a quote that is not closed; quote text as \"two words\"")
    quoted: list[str] = []

    def hold(m: re.Match) -> str:
        quoted.append(m.group(0))
        return f"\x00{len(quoted) - 1}\x00"

    clauses = []
    for part in _AND.split(_QUOTED.sub(hold, text)):  # `and` and `or` inside quotes are text
        if _OR.search(part):
            raise FilterError(f"{_unhold(part, quoted).strip()!r}: `or` is not supported, only `and`; run one filter "
                              f"per alternative. {FILTER_HELP}")
        clauses.append(_clause(_unhold(part, quoted).strip(), text))
    return tuple(clauses)


def _unhold(part: str, quoted: list[str]) -> str:
    return _HELD.sub(lambda m: quoted[int(m.group(1))], part)


def _clause(part: str, whole: str) -> Clause:
    if not part:
        raise FilterError(f"{whole!r} has an `and` with nothing on one side; put a clause on each side, e.g. `tag:muon and status:failed`")
    m = _CLAUSE.match(part)
    if m is None:
        half = _HALF.match(part)
        if half is not None:
            raise FilterError(f"{part!r} has nothing after {half['op'] or half['prefix'] + ':'}; give a value, e.g. "
                              f"{'learning_rate < 0.01' if half['op'] else half['prefix'] + ':muon'}")
        raise FilterError(f"cannot read {part!r}; {FILTER_HELP}")
    if m["prefix"] is not None:
        prefix, word = m["prefix"].lower(), _unquote(m["word"])
        if prefix not in PREFIXES:
            raise FilterError(f"{part!r}: unknown prefix {prefix + ':'!r}; use tag:, status: or name:, "
                              f"or KEY OP VALUE. {FILTER_HELP}")
        if prefix == "status" and word.lower() not in STATES:
            raise FilterError(f"{part!r}: no status {word!r}; statuses are {', '.join(STATES)}")
        return Clause(prefix, ":", word.lower() if prefix != "name" else word)
    op, value = ("=" if m["op"] == "==" else m["op"]), _value(m["value"])
    if isinstance(value, str) and op not in ("=", "!="):
        raise FilterError(f"{part!r}: {op} needs a number, not {value!r}; text compares with = or != only")
    return Clause(m["key"], op, value)


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def _value(word: str) -> object:
    if word.startswith('"'):
        return _unquote(word)
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    try:
        number = float(word)
    except ValueError:
        return word
    return number if math.isfinite(number) else word


def apply(board: pd.DataFrame, text: str, specs: Mapping[int, dict] | None = None) -> pd.DataFrame:
    """The rows of `board` (leaderboard rows, with `tags`) that match every clause of `text`;
    `specs` (run -> spec doc) answers keys that are not columns. FilterError for a bad expression
    or a key that is neither a column nor a setting of any run."""
    clauses = parse(text)
    keep = pd.Series(True, index=board.index)
    for clause in clauses:
        keep &= _matches(board, clause, specs or {})
    return board.loc[keep]


def needs_specs(text: str) -> bool:
    """Whether the expression names a key the board's columns do not hold (a spec setting)."""
    from cifar_core.jobs.results import LEADERBOARD_COLUMNS

    return any(c.op != ":" and c.key not in LEADERBOARD_COLUMNS for c in parse(text))


def _matches(board: pd.DataFrame, clause: Clause, specs: Mapping[int, dict]) -> pd.Series:
    if clause.key == "tag":
        return board["tags"].map(lambda tags: clause.value in tags)
    if clause.key == "status":
        return board["status"] == clause.value
    if clause.key == "name":
        return board["name"].str.contains(str(clause.value), case=False, regex=False)
    values = board[clause.key] if clause.key in board.columns else _settings(board, clause.key, specs)
    compare = OPS[clause.op]
    return pd.Series([_holds(v, compare, clause.value) for v in values], index=board.index, dtype=bool)


def _settings(board: pd.DataFrame, key: str, specs: Mapping[int, dict]) -> list:
    missing = object()
    values = [_dotted(specs.get(int(run), {}), key, missing) for run in board["run"]]
    if board.empty or any(v is not missing for v in values):
        return [None if v is missing else v for v in values]
    columns = ", ".join(c for c in board.columns if c not in ("tags", "notes", "config"))
    raise FilterError(f"no run has a setting or column {key!r}; use a leaderboard column ({columns}) or a spec "
                      "setting, dotted for nested ones (augment.flip)")


def _dotted(doc: dict, key: str, missing: object) -> object:
    value: object = doc
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


def _holds(value: object, compare, wanted: object) -> bool:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(wanted, bool) or isinstance(value, bool):
        return compare in (operator.eq, operator.ne) and compare(bool(value) if isinstance(value, bool) else value, wanted)
    if isinstance(wanted, float):
        number = _number(value)
        return number is not None and compare(number, wanted)
    return compare(str(value), wanted)


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def tags_in(boards: Iterable[list[str]]) -> list[str]:
    """Every tag used on the board, sorted (for the page's help)."""
    return sorted({t for tags in boards for t in tags})
