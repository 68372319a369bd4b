"""Sweeps: parsing a search space, expanding it over a base experiment (which setting mattered: tests/test_search.py)."""

from __future__ import annotations

import json

import pytest

from cifar_core.errors import SpecError
from cifar_core.spec.space import (
    DEFAULT_BUDGET,
    expand,
    get_path,
    load_space,
    parse_space,
    split_sweep_params,
)

BASE = {
    "name": "exp4 wider",
    "optimizer": "adam",
    "learning_rate": 0.001,
    "batch_size": 32,
    "epochs": 2,
    "augment": {"flip": False, "cutout": 0},
    "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3},
        {"type": "MaxPooling2D"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 64},
        {"type": "Dropout", "rate": 0.2},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
}

RANDOM = {
    "method": "random",
    "budget": 30,
    "seed": 0,
    "params": {
        "learning_rate": {"log_uniform": [1e-4, 1e-2]},
        "batch_size": {"values": [32, 64, 128]},
        "layers.4.rate": {"uniform": [0.0, 0.5]},
        "layers.0.filters": {"uniform": [16, 64]},
        "layers.3.units": {"log_uniform": [16, 256]},
        "augment.flip": {"values": [True, False]},
    },
}


def grid(**params) -> dict:
    return {"method": "grid", "params": {k.replace("__", "."): {"values": v} for k, v in params.items()}}


def test_grid_is_the_full_product_in_order():
    docs = expand(BASE, parse_space(grid(batch_size=[32, 64], layers__0__filters=[16, 32, 64])))
    assert len(docs) == 6
    assert [d["sweep_params"] for d in docs[:3]] == [
        {"batch_size": 32, "layers.0.filters": f} for f in (16, 32, 64)
    ]
    assert [(d["batch_size"], d["layers"][0]["filters"]) for d in docs] == [
        (b, f) for b in (32, 64) for f in (16, 32, 64)
    ]
    assert [d["name"] for d in docs] == [f"exp4 wider-s0{i}" for i in range(1, 7)]


def test_expanded_docs_are_deep_copies():
    docs = expand(BASE, parse_space(grid(layers__4__rate=[0.1, 0.3], augment__flip=[True])))
    docs[0]["layers"][3]["units"] = 999
    assert BASE["layers"][4]["rate"] == 0.2 and BASE["layers"][3]["units"] == 64
    assert docs[1]["layers"][3]["units"] == 64
    assert docs[0]["augment"] == {"flip": True, "cutout": 0}


def test_grid_budget_is_its_size_and_must_cover_it():
    assert parse_space(grid(batch_size=[32, 64, 128])).budget == 3
    assert parse_space({**grid(batch_size=[32, 64]), "budget": 8}).budget == 2
    with pytest.raises(SpecError, match=r"grid has 3 runs but budget is 2: raise budget to 3"):
        parse_space({**grid(batch_size=[32, 64, 128]), "budget": 2})


def test_random_gives_budget_runs_within_ranges():
    docs = expand(BASE, parse_space(RANDOM))
    assert len(docs) == 30
    assert docs[-1]["name"] == "exp4 wider-s30"
    for d in docs:
        p = d["sweep_params"]
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and d["learning_rate"] == p["learning_rate"]
        assert p["batch_size"] in (32, 64, 128)
        assert 0.0 <= p["layers.4.rate"] <= 0.5 and isinstance(p["layers.4.rate"], float)
        assert 16 <= p["layers.0.filters"] <= 64 and type(p["layers.0.filters"]) is int
        assert 16 <= p["layers.3.units"] <= 256 and type(p["layers.3.units"]) is int
        assert p["augment.flip"] in (True, False)
        json.dumps(d)  # plain JSON types only, no numpy scalars
    rates = [d["learning_rate"] for d in docs]
    # log-uniform: about as many draws below the geometric middle (1e-3) as above
    assert 8 <= sum(r < 1e-3 for r in rates) <= 22
    assert len({d["batch_size"] for d in docs}) == 3


def test_default_budget_is_the_one_default_budget():
    space = parse_space({"method": "random", "params": {"learning_rate": {"uniform": [0.001, 0.01]}}})
    assert len(expand(BASE, space)) == DEFAULT_BUDGET == 6  # the CLI's and the Sweeps page's


def test_same_seed_same_draws_other_seed_other_draws():
    first = [d["sweep_params"] for d in expand(BASE, parse_space(RANDOM))]
    again = [d["sweep_params"] for d in expand(BASE, load_space(json.dumps(RANDOM)))]
    other = [d["sweep_params"] for d in expand(BASE, parse_space({**RANDOM, "seed": 1}))]
    assert first == again
    assert first != other


def test_load_space_reads_a_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(RANDOM))
    assert load_space(path) == parse_space(RANDOM)
    assert load_space(str(path)).budget == 30


def test_load_space_errors_name_the_file(tmp_path):
    with pytest.raises(SpecError, match=r"search space file '.*nope.json' does not exist"):
        load_space(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"method": "grid",\n "params": }')
    with pytest.raises(SpecError, match=r"bad.json' is not valid JSON: Expecting value at line 2 column 12"):
        load_space(bad)


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"method": "bayes", "params": {"a": {"values": [1]}}}, r"method 'bayes' is unknown: use 'grid' or 'random'"),
        ({"params": {"a": {"values": [1]}}}, r"method is missing"),
        ({"method": "grid", "params": {"learning_rate": {"log_uniform": [1e-4, 1e-2]}}},
         r"grid needs 'values' lists; learning_rate has log_uniform"),
        ({"method": "random", "budget": 0, "params": {"a": {"values": [1]}}}, r"budget=0 is out of range 1\.\.200"),
        ({"method": "random", "budget": 201, "params": {"a": {"values": [1]}}}, r"budget=201 is out of range 1\.\.200"),
        ({"method": "random", "budget": 2.5, "params": {"a": {"values": [1]}}},
         r"budget must be a whole number, got 2\.5"),
        (grid(a=list(range(10)), b=list(range(10)), c=[1, 2, 3]), r"grid has 300 runs \(10 x 10 x 3\), more than 200"),
        ({"method": "random", "params": {"lr": {"log_uniform": [0, 0.01]}}}, r"lr log_uniform bounds must be > 0"),
        ({"method": "random", "params": {"lr": {"uniform": [0.5, 0.1]}}},
         r"lr uniform needs \[low, high\] numbers with low <= high"),
        ({"method": "random", "params": {"lr": {"normal": [0, 1]}}}, r"lr must be one of \{\"values\""),
        ({"method": "random", "params": {"lr": {"values": []}}}, r"lr values must be a non-empty list"),
        ({"method": "random", "params": {}}, r"params must be a non-empty object"),
        ({"method": "random", "params": {"layers..rate": {"values": [1]}}}, r"'layers\.\.rate' has an empty part"),
        ({"method": "random", "params": {"augment": {"values": [{}]}, "augment.flip": {"values": [True]}}},
         r"params 'augment' and 'augment\.flip' overlap"),
        ({"method": "random", "runs": 3, "params": {"a": {"values": [1]}}}, r"search space takes no 'runs'"),
    ],
)
def test_bad_spaces_are_named(doc, match):
    with pytest.raises(SpecError, match=match) as info:
        parse_space(doc)
    assert info.value.field == "space"


@pytest.mark.parametrize(
    "path, match",
    [
        ("layers.9.rate", r"sweep path 'layers\.9\.rate': layers has 6 entries \(0\.\.5\), so 9 does not exist"),
        ("layers.first.rate", r"'first' is not an index into the list layers; use a number 0\.\.5"),
        ("learning_rat", r"the base experiment has no 'learning_rat' \(keys: name, optimizer, learning_rate"),
        ("layers.3.rate", r"layers\.3 has no 'rate' \(keys: type, units\); add it to the base experiment first"),
        ("optimizer.beta", r"optimizer is a str \('adam'\), so 'beta' cannot go inside it"),
    ],
)
def test_paths_missing_from_the_base_are_named(path, match):
    space = parse_space({"method": "random", "params": {path: {"values": [1]}}})
    with pytest.raises(SpecError, match=match):
        expand(BASE, space)


def test_whole_number_param_needs_a_whole_number_in_range():
    space = parse_space({"method": "random", "params": {"layers.0.filters": {"uniform": [16.2, 16.8]}}})
    with pytest.raises(SpecError, match=r"layers\.0\.filters is a whole number in the base experiment but uniform"):
        expand(BASE, space)


def test_helpers_read_and_strip_sweep_params():
    doc = expand(BASE, parse_space(grid(layers__4__rate=[0.3])))[0]
    assert get_path(doc, "layers.4.rate") == 0.3
    spec_doc, params = split_sweep_params(doc)
    assert "sweep_params" not in spec_doc and params == {"layers.4.rate": 0.3}


def test_long_names_stay_within_64_characters():
    docs = expand({**BASE, "name": "x" * 64}, parse_space(grid(batch_size=[32, 64])))
    assert [len(d["name"]) for d in docs] == [64, 64] and docs[1]["name"].endswith("-s02")


def test_space_round_trips_through_its_dict():
    space = parse_space(RANDOM)
    assert parse_space(space.to_dict()) == space
