"""Suite files, command-line precedence, strategy variants, run ids and shards (no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ptft_bench.config import bundled_suites, load_suite, suite_from_dict
from ptft_bench.errors import UserError
from ptft_bench.strategy.registry import strategy_class
from ptft_bench.sweep.plan import expand, shard

SUITE_TOML = """
description = "a test suite"
tasks = ["sst2"]
models = ["minilm-l6"]
seeds = [1, 2]

[budget]
epochs = 5
batch_size = 8

[data]
max_train_samples = 50

[[strategies]]
name = "lora"
params = { r = 4 }
lrs = [1e-3]

[[strategies]]
name = "head_only"
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_spec(**changes):
    """The single run of a one-task, one-variant, one-lr, one-seed suite, with `changes` applied."""
    raw = {
        "name": "s",
        "tasks": ["sst2"],
        "models": ["minilm-l6"],
        "seeds": [0],
        "strategies": [{"name": "lora", "params": {"r": 8}, "lrs": [1e-3]}],
        "budget": {"epochs": 1, "batch_size": 16, "max_length": 64},
        "data": {"max_train_samples": 100, "max_eval_samples": 50},
    }
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (raw[section] if section else raw)[name] = value
    specs = expand(suite_from_dict(raw, {}))
    assert len(specs) == 1
    return specs[0]


# --- suite files -------------------------------------------------------------------------------


def test_suite_file_parsed(tmp_path):
    suite = load_suite(str(write(tmp_path, SUITE_TOML)))
    assert suite.name == "suite"  # the file's stem when the file names none
    assert suite.tasks == ["sst2"] and suite.seeds == [1, 2]
    assert suite.budget.epochs == 5 and suite.budget.batch_size == 8
    assert suite.budget.max_length == 128  # default: neither file nor command line set it
    assert suite.data.max_train_samples == 50
    assert [(v.name, v.params, v.lrs) for v in suite.strategies] == [
        ("lora", {"r": 4}, [1e-3]),
        ("head_only", {}, None),
    ]


@pytest.mark.parametrize(
    "text, key",
    [
        ('tasks = ["sst2"]\nbogus_top = 1\n[[strategies]]\nname = "full"\n', "bogus_top"),
        ('tasks = ["sst2"]\n[budget]\nepochz = 1\n[[strategies]]\nname = "full"\n', "epochz"),
        ('tasks = ["sst2"]\n[data]\nmax_train = 1\n[[strategies]]\nname = "full"\n', "max_train"),
        ('tasks = ["sst2"]\n[[strategies]]\nname = "full"\nlr = 1e-3\n', "lr"),
    ],
    ids=["top", "budget", "data", "strategies"],
)
def test_unknown_suite_keys_are_errors(tmp_path, text, key):
    with pytest.raises(UserError) as e:
        load_suite(str(write(tmp_path, text)))
    msg = str(e.value)
    assert key in msg and "unknown" in msg
    assert "\n" not in msg


def test_unknown_strategy_param_in_suite_is_error_when_expanded(tmp_path):
    text = 'tasks = ["sst2"]\n[[strategies]]\nname = "lora"\nparams = { rank = 4 }\n'
    with pytest.raises(UserError, match="rank"):
        expand(load_suite(str(write(tmp_path, text))))


def test_bad_toml_and_unknown_suite(tmp_path):
    with pytest.raises(UserError, match="not valid TOML"):
        load_suite(str(write(tmp_path, "tasks = [\n")))
    with pytest.raises(UserError, match="(?i)did you mean 'quick'"):
        load_suite("quik")
    with pytest.raises(UserError, match="does not exist"):
        load_suite(str(tmp_path / "missing.toml"))


def test_bundled_suites_load_and_expand():
    assert "quick" in bundled_suites()
    for name in bundled_suites():
        specs = expand(load_suite(name))
        assert specs, name


# --- precedence --------------------------------------------------------------------------------


def test_command_line_overrides_win(tmp_path):
    overrides = {
        "seeds": [7],
        "models": ["some/folder"],
        "output_dir": str(tmp_path / "out"),
        "budget.epochs": 1,
        "budget.max_length": 32,
        "data.max_eval_samples": 20,
        "budget.batch_size": None,  # a flag not given: the file's value stays
    }
    suite = load_suite(str(write(tmp_path, SUITE_TOML)), overrides)
    assert suite.seeds == [7] and suite.models == ["some/folder"]
    assert suite.budget.epochs == 1 and suite.budget.max_length == 32
    assert suite.budget.batch_size == 8  # file
    assert suite.data.max_train_samples == 50 and suite.data.max_eval_samples == 20
    assert suite.out == tmp_path / "out"
    assert suite.tasks == ["sst2"]


def test_strategies_override_picks_suite_variants_and_new_ones(tmp_path):
    path = str(write(tmp_path, SUITE_TOML))
    suite = load_suite(path, {"strategies": ["lora"]})
    assert [(v.name, v.params, v.lrs) for v in suite.strategies] == [("lora", {"r": 4}, [1e-3])]
    suite = load_suite(path, {"strategies": ["lora:r=16,alpha=32", "bitfit"]})
    lora, bitfit = expand(suite)[0], [s for s in expand(suite) if s.variant.name == "bitfit"]
    assert lora.variant.name == "lora"
    assert lora.strategy_params["r"] == 16 and lora.strategy_params["alpha"] == 32
    assert lora.variant.label() == "lora(alpha=32,r=16)"
    assert bitfit


def test_command_line_variant_same_id_as_file_variant():
    from_file = one_spec(
        strategies=[{"name": "lora", "params": {"r": 16, "alpha": 32}, "lrs": [1e-3]}]
    )
    raw = {
        "name": "s",
        "tasks": ["sst2"],
        "strategies": ["full"],
        "seeds": [0],
        "budget": {"epochs": 1, "batch_size": 16, "max_length": 64},
        "data": {"max_train_samples": 100, "max_eval_samples": 50},
    }
    suite = suite_from_dict(raw, {"strategies": ["lora:r=16,alpha=32"]})
    suite.strategies[0].lrs = [1e-3]
    (from_cli,) = expand(suite)
    assert from_cli.run_id == from_file.run_id


@pytest.mark.parametrize("bad", ["lora:r=0", "lora:r=-3", "top_k:k=abc", "lora:rank=4", "nosuch"])
def test_bad_command_line_variant(bad):
    suite = suite_from_dict(
        {"name": "s", "tasks": ["sst2"], "strategies": ["full"]}, {"strategies": [bad]}
    )
    with pytest.raises(UserError) as e:
        expand(suite)
    assert "\n" not in str(e.value)


def test_malformed_command_line_variant():
    with pytest.raises(UserError, match="key=value"):
        suite_from_dict(
            {"name": "s", "tasks": ["sst2"], "strategies": ["full"]}, {"strategies": ["lora:r"]}
        )


def test_default_lrs_when_variant_has_none(tmp_path):
    suite = load_suite(str(write(tmp_path, SUITE_TOML)))
    head = [s for s in expand(suite) if s.variant.name == "head_only"]
    default = [float(x) for x in strategy_class("head_only").default_lrs]
    assert default
    assert sorted({s.lr for s in head}) == sorted(default)
    assert len(head) == len(default) * len(suite.seeds)
    lora = [s for s in expand(suite) if s.variant.name == "lora"]
    assert {s.lr for s in lora} == {1e-3}


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"name": "s", "tasks": [], "strategies": ["full"]}, "no tasks"),
        ({"name": "s", "tasks": ["sst2"], "strategies": []}, "no strategies"),
        (
            {"name": "s", "tasks": ["sst2"], "strategies": ["full"], "budget": {"epochs": 0}},
            "epochs",
        ),
        (
            {"name": "s", "tasks": ["sst2"], "strategies": ["full"], "budget": {"epochs": "x"}},
            "epochs",
        ),
        (
            {
                "name": "s",
                "tasks": ["sst2"],
                "strategies": ["full"],
                "data": {"max_train_samples": 0},
            },
            "max_train_samples",
        ),
        ({"name": "s", "tasks": ["sst2"], "strategies": ["full"], "precision": "fp8"}, "precision"),
        ({"name": "s", "tasks": ["sst2"], "strategies": [{"name": "full", "lrs": [-1.0]}]}, "lrs"),
        ({"name": "s", "tasks": ["sst2"], "strategies": [{"params": {}}]}, "no name"),
    ],
)
def test_invalid_values_are_user_errors(raw, match):
    with pytest.raises(UserError, match=match):
        expand(suite_from_dict(raw, {}))


def test_duplicate_variant_is_error():
    raw = {
        "name": "s",
        "tasks": ["sst2"],
        "strategies": [{"name": "lora", "params": {"r": 8}}, "lora"],
    }
    with pytest.raises(UserError, match="same run twice"):
        expand(suite_from_dict(raw, {}))  # r=8 is lora's default: both are the same runs


# --- run ids -----------------------------------------------------------------------------------


def test_run_id_is_stable_for_the_same_config():
    a, b = one_spec(), one_spec()
    assert a.run_id == b.run_id
    assert a.run_id.startswith("sst2-lora-")


@pytest.mark.parametrize(
    "change",
    [
        {"tasks": ["rte"]},
        {"models": ["other-model"]},
        {"strategies": [{"name": "lora", "params": {"r": 4}, "lrs": [1e-3]}]},
        {"strategies": [{"name": "lora", "params": {"r": 8}, "lrs": [2e-3]}]},
        {"strategies": [{"name": "ia3", "lrs": [1e-3]}]},
        {"seeds": [1]},
        {"budget.epochs": 2},
        {"budget.batch_size": 8},
        {"budget.max_length": 32},
        {"data.max_train_samples": 200},
        {"data.max_eval_samples": 60},
        {"precision": "fp32"},
    ],
    ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values())))[:30],
)
def test_run_id_changes_with_anything_that_changes_the_result(change):
    assert one_spec(**change).run_id != one_spec().run_id


@pytest.mark.parametrize(
    "change",
    [
        {"output_dir": "/somewhere/else"},
        {"name": "another-suite"},
        {"description": "words"},
        {"data.data_dir": "/some/glue_data"},
    ],
    ids=["output_dir", "suite_name", "description", "data_dir"],
)
def test_run_id_ignores_where_and_under_which_name(change):
    assert one_spec(**change).run_id == one_spec().run_id


def test_explicit_default_params_give_the_same_id():
    # r=8 is lora's default: spelling it out must not create a different run
    assert one_spec(strategies=[{"name": "lora", "lrs": [1e-3]}]).run_id == one_spec().run_id


# --- shards ------------------------------------------------------------------------------------


def _big_suite():
    raw = {
        "name": "s",
        "tasks": ["sst2", "rte"],
        "seeds": [0, 1],
        "strategies": [
            {"name": "full", "lrs": [1e-5, 2e-5]},
            {"name": "lora", "lrs": [1e-3, 2e-3]},
            {"name": "head_only", "lrs": [1e-3]},
        ],
    }
    return suite_from_dict(raw, {})


@pytest.mark.parametrize("n", [1, 2, 3, 7, 25])
def test_shards_partition_the_runs(n):
    specs = expand(_big_suite())
    assert len(specs) == 2 * 2 * 5
    all_ids = [s.run_id for s in specs]
    parts = [[s.run_id for s in shard(specs, f"{i}/{n}")] for i in range(n)]
    flat = [i for p in parts for i in p]
    assert len(flat) == len(set(flat))  # disjoint
    assert sorted(flat) == sorted(all_ids)  # complete
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    # deterministic, and independent of the order the suite lists things in
    reordered = list(reversed(specs))
    assert [[s.run_id for s in shard(reordered, f"{i}/{n}")] for i in range(n)] == parts


def test_no_shard_is_everything():
    specs = expand(_big_suite())
    assert shard(specs, None) == specs


@pytest.mark.parametrize("bad", ["2/2", "3/2", "0/0", "-1/2", "a/b", "1", "1/2/3", ""])
def test_bad_shard_spec(bad):
    specs = expand(_big_suite())
    if bad == "":
        assert shard(specs, bad) == specs  # empty means no sharding
        return
    with pytest.raises(UserError, match="--shard"):
        shard(specs, bad)


def test_budget_fields_that_change_results_are_in_the_run_id():
    # every Budget field that can change the numbers reaches the id; logging, evaluation batch
    # size and the cache's memory cap change only speed, so they do not force a rerun
    spec = one_spec()
    from ptft_bench.config import Budget

    speed_only = {"log_every", "eval_batch_size", "cache_max_mb"}
    assert set(spec.key["budget"]) == {f.name for f in dataclasses.fields(Budget)} - speed_only


def test_comma_separated_strategy_names_are_split():
    from ptft_bench.config import select_strategies

    got = select_strategies([], ["full,bitfit", "lora:r=4,alpha=8"])
    assert got == ["full", "bitfit", {"name": "lora", "params": {"r": "4", "alpha": "8"}}]
