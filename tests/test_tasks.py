"""Task registry, loaders, splits and bad-input errors (no model needed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ptft_bench.errors import UserError
from ptft_bench.tasks import custom_task, get_spec, list_tasks, load_task
from ptft_bench.tasks.load import _load_cached
from ptft_bench.tasks.splits import validation_size

# rows in ../shared/data/README.md: (train, dev); our test split is GLUE's dev set
GLUE_ROWS = {
    "cola": (8551, 1043),
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "rte": (2490, 277),
    "stsb": (5749, 1500),
    "wnli": (635, 71),
}


@pytest.fixture(scope="module")
def glue(shared_data):
    path = shared_data / "glue"
    if not path.is_dir():
        pytest.skip(f"no GLUE copy at {path}")
    return path


def _assert_disjoint(*frames: pd.DataFrame) -> None:
    seen: set = set()
    for df in frames:
        idx = set(df.index)
        assert len(idx) == len(df), "duplicate rows inside a split"
        assert not (seen & idx), "splits overlap"
        seen |= idx


# --------------------------------------------------------------------------- registry


def test_registry_has_glue_and_movie_tasks():
    names = [s.name for s in list_tasks()]
    glue = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    assert names[:11] == [*glue, "rotten_tomatoes", "imdb"]
    for spec in list_tasks():
        assert spec.primary_metric in spec.metrics and spec.origin and spec.description
    assert get_spec("cola").primary_metric == "mcc"
    assert get_spec("stsb").is_regression and get_spec("stsb").num_labels == 1
    assert get_spec("mrpc").primary_metric == "f1" and get_spec("qqp").primary_metric == "f1"
    assert get_spec("mnli").num_labels == 3
    assert get_spec("SST-2") is get_spec("sst2")


def test_unknown_task_suggests_a_name():
    with pytest.raises(UserError, match="did you mean 'sst2'"):
        get_spec("sst3")
    with pytest.raises(UserError, match="unknown task"):
        load_task("no_such_task")


# --------------------------------------------------------------------------- GLUE, local folder


@pytest.mark.parametrize("task", sorted(GLUE_ROWS))
def test_glue_row_counts_and_splits(glue, task):
    data = load_task(task, data_dir=glue)
    n_train, n_dev = GLUE_ROWS[task]
    assert len(data.train) + len(data.validation) == n_train
    assert len(data.validation) == validation_size(n_train)
    assert len(data.test) == n_dev
    _assert_disjoint(data.train, data.validation)
    assert set(data.train.index) | set(data.validation.index) == set(range(n_train))
    spec = data.spec
    expected_cols = ["text_a", "text_b", "label"] if spec.is_pair else ["text_a", "label"]
    for df in (data.train, data.validation, data.test):
        assert list(df.columns) == expected_cols
        assert (df["text_a"].str.len() > 0).all()
        if spec.is_regression:
            assert df["label"].dtype == np.float64 and df["label"].between(0, 5).all()
        else:
            assert df["label"].dtype == np.int64
            assert set(df["label"]) == set(range(spec.num_labels))
    assert data.source.startswith("glue_dir:")
    assert len(data.fingerprint) == 16


def test_mrpc_bom_header_is_handled(glue):
    data = load_task("mrpc", data_dir=glue)
    # parsing the first header field as "\ufeffQuality" would have failed with a missing column
    assert data.test["label"].mean() == pytest.approx(279 / 408)
    assert not data.test["text_a"].str.startswith("\ufeff").any()


def test_rte_string_labels_map_to_hub_order(glue, tmp_path):
    (tmp_path / "RTE").mkdir()
    rows = "index\tsentence1\tsentence2\tlabel\n"
    rows += "".join(f'{i}\tA "quoted {i}\tB {i}\t{lab}\n' for i, lab in
                    enumerate(["entailment", "not_entailment"] * 10))  # fmt: skip
    (tmp_path / "RTE" / "train.tsv").write_text(rows)
    (tmp_path / "RTE" / "dev.tsv").write_text(rows)
    data = load_task("rte", data_dir=tmp_path)
    assert data.test["label"].tolist()[:2] == [0, 1]  # entailment = 0 as on the hub
    assert data.test["text_a"].iloc[0] == 'A "quoted 0'  # bare quote kept (QUOTE_NONE)


def test_qnli_without_train_says_so(glue):
    with pytest.raises(UserError, match=r"train\.tsv is missing.*dev\.tsv"):
        load_task("qnli", data_dir=glue)


def test_qnli_dev_rows(glue, tmp_path):
    # the shared copy has dev only: reuse dev as train in a scratch glue_data/ to count its rows
    (tmp_path / "glue_data" / "QNLI").mkdir(parents=True)
    dev = glue / "QNLI" / "dev.tsv"
    shutil.copy(dev, tmp_path / "glue_data" / "QNLI" / "dev.tsv")
    shutil.copy(dev, tmp_path / "glue_data" / "QNLI" / "train.tsv")
    data = load_task("qnli", data_dir=tmp_path)  # finds the glue_data/ level itself
    assert len(data.test) == 5463


def test_glue_label_outside_label_set(tmp_path):
    (tmp_path / "RTE").mkdir()
    rows = "index\ts1\ts2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n"
    (tmp_path / "RTE" / "train.tsv").write_text(
        rows.replace("s1", "sentence1").replace("s2", "sentence2")
    )
    (tmp_path / "RTE" / "dev.tsv").write_text(rows)
    with pytest.raises(UserError, match=r"\['maybe'\] are outside the label set"):
        load_task("rte", data_dir=tmp_path)


def test_glue_without_data_dir_offline(monkeypatch):
    monkeypatch.delenv("PTFT_ONLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(UserError, match=r"--data-dir.*PTFT_ONLINE=1"):
        load_task("cola")


def test_missing_glue_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_task("cola", data_dir=tmp_path / "nope")
    with pytest.raises(UserError, match="no CoLA/ folder"):
        load_task("cola", data_dir=tmp_path)


# --------------------------------------------------------------------------- splits


def test_splits_are_deterministic(glue):
    a = load_task("rte", data_dir=glue)
    _load_cached.cache_clear()
    b = load_task("rte", data_dir=glue)
    assert a is not b and a.fingerprint == b.fingerprint
    pd.testing.assert_frame_equal(a.validation, b.validation)
    pd.testing.assert_frame_equal(a.train, b.train)
    c = load_task("rte", data_dir=glue, seed=1)
    assert set(c.validation.index) != set(a.validation.index)
    assert c.fingerprint != a.fingerprint


def test_returned_frames_are_copies(glue):
    a = load_task("wnli", data_dir=glue)
    a.train.drop(a.train.index, inplace=True)
    assert len(load_task("wnli", data_dir=glue).train) == 635 - 100


def test_max_train_samples_is_stratified_and_nested(glue):
    full = load_task("sst2", data_dir=glue)
    small = load_task("sst2", data_dir=glue, max_train_samples=1000)
    big = load_task("sst2", data_dir=glue, max_train_samples=2000)
    assert (len(small.train), len(big.train)) == (1000, 2000)
    assert set(small.train.index) <= set(big.train.index) <= set(full.train.index)
    share = full.train["label"].mean()
    for sub in (small, big):
        assert abs(sub.train["label"].sum() - share * len(sub.train)) <= 1
        pd.testing.assert_frame_equal(sub.validation, full.validation)  # selection set unchanged
        pd.testing.assert_frame_equal(sub.test, full.test)
    assert small.fingerprint != big.fingerprint != full.fingerprint
    # never sorted by label: the first rows mix both classes
    assert small.train["label"].iloc[:20].nunique() == 2


def test_max_eval_samples_caps_validation_and_test(glue):
    data = load_task("cola", data_dir=glue, max_eval_samples=200)
    assert (len(data.validation), len(data.test)) == (200, 200)
    full = load_task("cola", data_dir=glue)
    assert abs(data.test["label"].mean() - full.test["label"].mean()) < 0.01
    assert len(data.train) == len(full.train)


def test_regression_validation_is_stratified_by_score(glue):
    data = load_task("stsb", data_dir=glue)
    whole = pd.concat([data.train, data.validation])["label"]
    assert abs(data.validation["label"].median() - whole.median()) < 0.2


# --------------------------------------------------------------------------- movie reviews


@pytest.mark.parametrize(
    "task, sizes",
    [("rotten_tomatoes", (6777, 753, 1000)), ("imdb", (19000, 1000, 5000))],
)
def test_movie_reviews_splits(task, sizes):
    data = load_task(task)
    assert (len(data.train), len(data.validation), len(data.test)) == sizes
    assert data.source.startswith("package:movie-reviews")
    _assert_disjoint(data.train, data.validation, data.test)
    assert data.test["label"].value_counts().tolist() == [sizes[2] // 2] * 2  # stratified 50/50
    assert abs(data.validation["label"].sum() - sizes[1] / 2) <= 1
    _load_cached.cache_clear()
    again = load_task(task)
    pd.testing.assert_frame_equal(data.test, again.test)
    assert again.fingerprint == data.fingerprint


def test_movie_task_rejects_other_sources():
    with pytest.raises(UserError, match="movie-reviews package"):
        load_task("rotten_tomatoes", source="hub")
    with pytest.raises(UserError, match="unknown data source"):
        load_task("rotten_tomatoes", source="ftp")
    with pytest.raises(UserError, match="positive integer"):
        load_task("rotten_tomatoes", max_train_samples=0)


# --------------------------------------------------------------------------- custom files


def _reviews(n: int = 40) -> pd.DataFrame:
    labels = ["pos", "neg", "meh", "pos"]
    return pd.DataFrame(
        {"review": [f'review "{i}", with a comma' for i in range(n)],
         "stars": [labels[i % 4] for i in range(n)]}
    )  # fmt: skip


def test_custom_csv_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    _reviews().to_csv(path, index=False)
    spec = custom_task(path, text_columns=["review"], label_column="stars", name="t_reviews")
    assert spec.label_names == ("meh", "neg", "pos") and spec.metrics == ("accuracy", "f1_macro")
    data = load_task("t_reviews")
    assert len(data.train) + len(data.validation) + len(data.test) == 40
    _assert_disjoint(data.train, data.validation, data.test)
    row = data.train.loc[0]
    assert row["text_a"] == 'review "0", with a comma' and row["label"] == 2  # "pos"
    assert data.source.startswith("file:")


def test_custom_tsv_pair_with_test_file(tmp_path):
    df = pd.DataFrame({"premise": [f"p{i}" for i in range(30)],
                       "hypothesis": [f"h{i}" for i in range(30)],
                       "label": [i % 2 for i in range(30)]})  # fmt: skip
    df.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    df.iloc[:6].to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    spec = custom_task(tmp_path / "train.tsv", name="t_pairs", test_path=tmp_path / "test.tsv")
    assert spec.is_pair and spec.metrics == ("accuracy", "f1")
    data = load_task("t_pairs")
    assert len(data.test) == 6 and len(data.train) + len(data.validation) == 30
    assert list(data.test.columns) == ["text_a", "text_b", "label"]


def test_custom_jsonl_by_name_string(tmp_path):
    path = tmp_path / "scores.jsonl"
    rows = [{"a": f"x{i}", "score": i / 10} for i in range(50)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_task(f"jsonl:{path}?text=a&label=score&regression=1")
    assert data.spec.is_regression and data.spec.primary_metric == "pearson"
    assert data.train["label"].dtype == np.float64
    assert len(data.train) + len(data.validation) + len(data.test) == 50


def test_custom_test_label_outside_train_labels(tmp_path):
    _reviews().to_csv(tmp_path / "train.csv", index=False)
    test = _reviews(4)
    test.loc[0, "stars"] = "awful"
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(UserError, match=r"\['awful'\] are outside the label set"):
        load_task(
            f"csv:{tmp_path / 'train.csv'}?text=review&label=stars&test={tmp_path / 'test.csv'}"
        )


def test_custom_missing_column_names_the_columns(tmp_path):
    _reviews().to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(UserError, match=r"\['label'\] not found.*\['review', 'stars'\]"):
        custom_task(tmp_path / "r.csv", text_columns=["review"])
    _reviews().rename(columns={"review": "body"}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(UserError, match="cannot tell which column holds the text"):
        load_task(f"csv:{tmp_path / 'b.csv'}?label=stars")


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "does not exist"),
        ("", "cannot read|no rows"),
        ("text,label\n", "no rows"),
        ("text,label\na,1\nb,1\n", "at least 2"),
        ("text,label\na,1\nb,\nc,0\n", "row 2 has no label"),
        ('text,label\n"unterminated,1\n', "cannot read"),
    ],
)
def test_custom_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=match):
        load_task(f"csv:{path}")


def test_custom_bad_json_and_options(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(UserError, match="cannot read"):
        load_task(f"jsonl:{path}")
    with pytest.raises(UserError, match="unknown option"):
        load_task(f"csv:{path}?colour=red")
    with pytest.raises(UserError, match="built-in task"):
        custom_task(path, name="cola")


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "WNLI").mkdir()
    (tmp_path / "WNLI" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n1\tc\td\t0\n"
    )
    (tmp_path / "WNLI" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(UserError, match="the test split has 0 row"):
        load_task("wnli", data_dir=tmp_path)
