"""Generation tasks: specs, the E2E loader, custom generation files, and their bad-input errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from ptft_bench.errors import UserError
from ptft_bench.listing import print_listing
from ptft_bench.tasks import (
    GENERATION_METRICS,
    TaskSpec,
    custom_generation_task,
    custom_task,
    get_spec,
    list_tasks,
    load_task,
)
from ptft_bench.tasks.generation import E2E_INSTRUCTION, e2e_prompt
from ptft_bench.tasks.load import _load_cached

# ../shared/data/README.md: devset.csv 4,672 rows / 547 MRs, testset_w_refs.csv 4,693 / 630
E2E_DEV_MRS, E2E_TEST_MRS = 547, 630
E2E_VALIDATION_MRS = 55  # 10% of 547


@pytest.fixture(scope="module")
def e2e(shared_data):
    path = shared_data / "e2e"
    if not (path / "devset.csv").is_file():
        pytest.skip(f"no E2E copy at {path}: set PTFT_SHARED_DATA to the folder that holds e2e/")
    return path


def _raw(path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return df.apply(lambda col: col.map(lambda s: " ".join(s.split())))


def _mrs(frame: pd.DataFrame) -> set[str]:
    return {p.split("\n", 1)[1] for p in frame["prompt"]}


# --------------------------------------------------------------------------- specs


def test_e2e_spec():
    spec = get_spec("e2e")
    assert spec.kind == "generation" and spec.is_generation and spec.family == "generation"
    assert spec.text_columns == ("prompt",) and spec.label_names is None
    assert (spec.is_regression, spec.num_labels) == (False, 0)
    assert spec.metrics == GENERATION_METRICS == ("bleu", "chrf", "rouge_l", "exact_match")
    assert spec.primary_metric == "bleu" and spec.selection_metric == "neg_loss"
    assert not spec.is_pair
    names = [s.name for s in list_tasks()]
    assert names.index("e2e") == names.index("imdb") + 1


def test_existing_specs_resolve_their_kind():
    assert get_spec("sst2").kind == "classification" and not get_spec("sst2").is_generation
    assert get_spec("stsb").kind == "regression"
    for name in ("cola", "stsb", "mrpc", "rotten_tomatoes"):
        assert get_spec(name).selection_metric == get_spec(name).primary_metric
    # an existing call that names no kind still works, and an explicit kind round-trips
    spec = TaskSpec("t", ("text_a",), None, True, ("pearson",), "pearson", 1)
    assert spec.kind == "regression" and replace(spec).kind == "regression"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"metrics": ("accuracy",), "primary_metric": "accuracy"}, "do not fit"),
        ({"primary_metric": "accuracy"}, "not in metrics"),
        ({"text_columns": ("text_a",)}, "text_columns"),
        ({"num_labels": 2}, "no labels"),
        ({"label_names": ("a", "b")}, "no labels"),
        ({"is_regression": True}, "contradicts"),
        ({"kind": "translation"}, "not one of"),
    ],
)
def test_bad_generation_specs(change, match):
    with pytest.raises(ValueError, match=match):
        replace(get_spec("e2e"), **change)


def test_classification_spec_cannot_use_generation_metrics():
    with pytest.raises(ValueError, match="do not fit"):
        replace(get_spec("sst2"), metrics=("bleu",), primary_metric="bleu")


def test_list_tasks_shows_e2e(capsys):
    print_listing("tasks")
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.split()[:1] == ["e2e"])
    assert "generation" in line and "bleu, chrf, rouge_l, exact_match" in line
    assert "primary bleu" in line and "neg_loss" in line
    assert "e2e-dataset" in out and "gen:PATH" in out


# --------------------------------------------------------------------------- E2E


def test_e2e_splits_by_meaning_representation(e2e):
    data = load_task("e2e", data_dir=e2e.parent)
    assert data.source == f"e2e_dir:{e2e.resolve()}" and len(data.fingerprint) == 16
    assert list(data.train.columns) == ["prompt", "target"]
    for df in (data.validation, data.test):
        assert list(df.columns) == ["prompt", "references", "target"]
        assert df["prompt"].is_unique
        assert all(
            isinstance(r, list) and r and t == r[0] for r, t in zip(df["references"], df["target"])
        )
    assert (len(data.validation), len(data.test)) == (E2E_VALIDATION_MRS, E2E_TEST_MRS)
    assert not _mrs(data.train) & _mrs(data.validation)  # never split by row
    assert len(_mrs(data.train) | _mrs(data.validation)) == E2E_DEV_MRS
    # every dev pair is in exactly one split (exact duplicate rows dropped), references grouped
    dev = _raw(e2e / "devset.csv").drop_duplicates()
    refs = dev.groupby("mr")["ref"].agg(list)
    assert len(data.train) + data.validation["references"].map(len).sum() == len(dev)
    for prompt, r in zip(data.validation["prompt"], data.validation["references"]):
        assert r == refs[prompt.split("\n", 1)[1]]
    test = _raw(e2e / "testset_w_refs.csv").drop_duplicates()
    assert data.test["references"].map(len).sum() == len(test)


def test_e2e_prompt_and_csv_quirks(e2e):
    data = load_task("e2e", data_dir=e2e)
    mr = "name[Blue Spice], eatType[coffee shop], area[city centre]"  # quoted, with commas
    assert e2e_prompt(mr) == f"{E2E_INSTRUCTION}\n{mr}"
    first = data.test.loc[0]
    assert first["prompt"] == e2e_prompt(mr)
    assert first["references"] == [
        "A coffee shop in the city centre area called Blue Spice.",
        "Blue Spice is a coffee shop in city centre.",
    ]
    texts = pd.concat([data.train["target"], data.test["target"], data.train["prompt"]])
    assert not texts.str.contains("  |\r|^ | $", regex=True).any()  # CRLF, spaces stripped
    assert data.test["prompt"].str.contains("£").any()  # UTF-8 read


def test_e2e_data_dir_rules(e2e, monkeypatch, tmp_path):
    base = load_task("e2e", data_dir=e2e.parent)
    # the e2e folder itself, and a sibling folder such as glue/ (the CLI's GLUE --data-dir)
    for folder in (e2e, e2e.parent / "glue"):
        assert load_task("e2e", data_dir=folder).fingerprint == base.fingerprint
    monkeypatch.setenv("PTFT_SHARED_DATA", str(e2e.parent))
    assert load_task("e2e").fingerprint == base.fingerprint
    monkeypatch.setenv("PTFT_SHARED_DATA", str(tmp_path))
    with pytest.raises(UserError, match=rf"no devset.csv.*{tmp_path / 'e2e'}.*--data-dir"):
        load_task("e2e")
    with pytest.raises(UserError, match="PTFT_SHARED_DATA"):
        load_task("e2e", data_dir=tmp_path / "nowhere")


def test_e2e_missing_file_or_columns(e2e, tmp_path):
    (tmp_path / "e2e").mkdir()
    shutil.copy(e2e / "devset.csv", tmp_path / "e2e" / "devset.csv")
    with pytest.raises(UserError, match="lacks testset_w_refs.csv"):
        load_task("e2e", data_dir=tmp_path)
    (tmp_path / "e2e" / "testset_w_refs.csv").write_text("meaning,text\na,b\n")
    with pytest.raises(UserError, match=r"expected the E2E columns mr,ref"):
        load_task("e2e", data_dir=tmp_path)


def test_e2e_is_deterministic_and_seeded_by_the_split_seed(e2e):
    a = load_task("e2e", data_dir=e2e)
    _load_cached.cache_clear()
    b = load_task("e2e", data_dir=e2e)
    assert a.fingerprint == b.fingerprint
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.validation, b.validation)
    c = load_task("e2e", data_dir=e2e, seed=1)
    assert _mrs(c.validation) != _mrs(a.validation) and c.fingerprint != a.fingerprint
    pd.testing.assert_frame_equal(c.test, a.test)  # the test set is the file's, whatever the seed


def test_e2e_max_train_samples_round_robin_and_nested(e2e):
    full = load_task("e2e", data_dir=e2e)
    n_inputs = len(_mrs(full.train))
    small = load_task("e2e", data_dir=e2e, max_train_samples=600)
    big = load_task("e2e", data_dir=e2e, max_train_samples=1200)
    assert (len(small.train), len(big.train)) == (600, 1200)
    assert len(_mrs(small.train)) == n_inputs  # every input keeps some references
    assert small.train.groupby("prompt").size().max() == 2  # 600 = 492 x 1 + 108 x 2
    as_set = lambda d: set(map(tuple, d.train[["prompt", "target"]].to_numpy()))  # noqa: E731
    assert as_set(small) <= as_set(big) <= as_set(full)
    pd.testing.assert_frame_equal(small.validation, full.validation)
    assert len({small.fingerprint, big.fingerprint, full.fingerprint}) == 3
    tiny = load_task("e2e", data_dir=e2e, max_train_samples=100)
    assert len(tiny.train) == 100 and tiny.train["prompt"].is_unique


def test_e2e_max_eval_samples_caps_inputs_with_all_references(e2e):
    full = load_task("e2e", data_dir=e2e)
    small = load_task("e2e", data_dir=e2e, max_eval_samples=20)
    bigger = load_task("e2e", data_dir=e2e, max_eval_samples=40)
    assert (len(small.validation), len(small.test)) == (20, 20)
    assert set(small.test["prompt"]) <= set(bigger.test["prompt"])
    assert set(small.validation["prompt"]) <= set(bigger.validation["prompt"])
    by_prompt = dict(zip(full.test["prompt"], full.test["references"]))
    assert all(by_prompt[p] == r for p, r in zip(small.test["prompt"], small.test["references"]))
    assert len(small.train) == len(full.train) and small.fingerprint != full.fingerprint


def test_e2e_edited_file_changes_the_fingerprint(e2e, tmp_path):
    shutil.copytree(e2e, tmp_path / "e2e")
    before = load_task("e2e", data_dir=tmp_path)
    test = tmp_path / "e2e" / "testset_w_refs.csv"
    test.write_text(
        test.read_text().replace("Blue Spice is a coffee shop", "Blue Spice: a coffee shop")
    )
    after = load_task("e2e", data_dir=tmp_path)
    assert after.fingerprint != before.fingerprint
    assert after.test.loc[0, "references"][1] == "Blue Spice: a coffee shop in city centre."


def test_returned_reference_lists_are_copies(e2e):
    a = load_task("e2e", data_dir=e2e, max_eval_samples=5)
    a.test["references"].iloc[0].append("mutated")
    assert (
        "mutated"
        not in load_task("e2e", data_dir=e2e, max_eval_samples=5).test["references"].iloc[0]
    )


# --------------------------------------------------------------------------- custom files


def _pairs(n_prompts: int = 30, refs: int = 3) -> pd.DataFrame:
    rows = [
        {"question": f'q "{i}", with a comma', "answer": f" answer {i}.{j} ", "extra": i}
        for i in range(n_prompts)
        for j in range(refs)
    ]
    return pd.DataFrame(rows)


def test_custom_generation_csv_by_name_string(tmp_path):
    path = tmp_path / "qa.csv"
    _pairs().to_csv(path, index=False)
    data = load_task(f"gen:{path}?prompt=question&target=answer")
    spec = data.spec
    assert spec.is_generation and spec.family == "custom" and spec.primary_metric == "bleu"
    assert (
        spec.selection_metric == "neg_loss"
        and spec.name == f"gen:{path}?prompt=question&target=answer"
    )
    assert (len(data.validation), len(data.test)) == (3, 3)  # 10% of 30 prompts, held out by prompt
    assert len(data.train) == 24 * 3
    assert not set(data.train["prompt"]) & set(data.validation["prompt"])
    assert not set(data.train["prompt"]) & set(data.test["prompt"])
    assert not set(data.validation["prompt"]) & set(data.test["prompt"])
    row = data.test.iloc[0]
    i = row["prompt"].split('"')[1]
    assert row["references"] == [f"answer {i}.{j}" for j in range(3)]  # grouped, stripped
    assert row["prompt"] == f'q "{i}", with a comma'
    assert data.source.startswith("file:")


def test_custom_generation_tsv_with_test_file_and_primary(tmp_path):
    _pairs(12).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    _pairs(4, refs=2).to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    name = f"gen:{tmp_path / 'train.tsv'}?prompt=question&target=answer&test={tmp_path / 'test.tsv'}&primary=chrf"
    data = load_task(name)
    assert data.spec.primary_metric == "chrf"
    assert len(data.test) == 4 and data.test["references"].map(len).tolist() == [2] * 4
    assert (len(data.validation), len(data.train)) == (1, 11 * 3)
    assert data.source.count("+") == 1


def test_custom_generation_jsonl_guesses_columns(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"input": f"translate {i}", "output": f"out {i}"} for i in range(20)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = custom_generation_task(path, name="t_gen_jsonl")
    assert spec.is_generation and "input -> output" in spec.description
    data = load_task("t_gen_jsonl")
    assert len(data.train) + len(data.validation) + len(data.test) == 20


@pytest.mark.parametrize(
    "content, query, match",
    [
        (None, "", "does not exist"),
        ("question,answer\n", "", "no rows"),
        ("question,answer\na,b\n", "?prompt=q&target=answer", r"prompt column 'q' not found"),
        ("q,a\nx,y\n", "", "cannot tell which column holds the prompt"),
        ("prompt,target\nx,y\n,z\nw,v\n", "", "row 2 has an empty prompt"),
        ("prompt,target\nx,y\nw,  \nv,u\n", "", "row 2 has an empty target"),
        ("prompt,target\nx,y\nx,z\n", "", "2 distinct prompt|3 needed|at least 3"),
        ("prompt,target\nx,y\n", "?colour=red", "unknown option"),
        ("prompt,target\nx,y\n", "?format=xml", "format 'xml'"),
        ("prompt,target\nx,y\n", "?primary=accuracy", "not a generation metric"),
        ("prompt,target\nx,y\n", "?prompt=prompt&target=prompt", "same column"),
    ],
)
def test_custom_generation_bad_files(tmp_path, content, query, match):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=match) as err:
        load_task(f"gen:{path}{query}")
    assert "\n" not in str(err.value)


def test_custom_generation_bad_test_file(tmp_path):
    _pairs(10).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"question": ["a"], "reply": ["b"]}).to_csv(tmp_path / "test.csv", index=False)
    base = f"gen:{tmp_path / 'train.csv'}?prompt=question&target=answer"
    with pytest.raises(UserError, match=r"test.csv: column\(s\) \['answer'\] not found"):
        load_task(f"{base}&test={tmp_path / 'test.csv'}")
    with pytest.raises(UserError, match="does not exist"):
        load_task(f"{base}&test={tmp_path / 'missing.csv'}")
    (tmp_path / "empty.csv").write_text("question,answer\n")
    with pytest.raises(UserError, match="no rows"):
        load_task(f"{base}&test={tmp_path / 'empty.csv'}")


def test_builtin_generation_name_is_refused(tmp_path):
    path = tmp_path / "p.csv"
    _pairs(5).to_csv(path, index=False)
    with pytest.raises(UserError, match="built-in task"):
        custom_generation_task(path, "question", "answer", name="e2e")
    with pytest.raises(UserError, match="built-in task"):
        custom_task(path, ["question"], "answer", name="E2E")
