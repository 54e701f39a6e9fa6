"""The results store writes whole records (and their predictions) or nothing, and lists them."""

import json

import numpy as np
import pytest

from ptft_bench import atomic
from ptft_bench.records import store as S
from ptft_bench.records.record import SCHEMA_VERSION, RunRecord


def test_write_read_roundtrip(tmp_path):
    st = S.RunStore(tmp_path)
    rec = RunRecord("a", status="ok", train_seconds=float("nan"), extra={"y": [1.5, float("inf")]})
    st.write(rec)
    raw = json.loads(st.path("a").read_text())
    assert raw["train_seconds"] is None and raw["y"] == [1.5, None]  # JSON has no NaN / inf
    back = st.read("a")
    assert back.run_id == "a" and back.status == "ok" and back.extra == {"y": [1.5, None]}
    assert back.schema_version == SCHEMA_VERSION
    assert st.status("a") == "ok" and st.status("b") is None
    assert [r.run_id for r in st.records()] == ["a"]


def test_predictions_written_with_the_record_and_loaded_back(tmp_path):
    st = S.RunStore(tmp_path)
    preds = {
        "validation": {"pred": np.array([0, 1, 1]), "label": np.array([0, 1, 0])},
        "test": {"pred": np.array([0.5, 2.25]), "label": np.array([1.0, 2.0])},
    }
    st.write(RunRecord("a", status="ok"), preds)
    rec = st.read("a")
    assert rec.predictions == {
        "file": "predictions/a.npz",
        "splits": {"validation": 3, "test": 2},
    }
    back = S.load_predictions(tmp_path, rec)
    assert back["validation"]["pred"].dtype == np.int8  # class ids stored small
    np.testing.assert_array_equal(back["validation"]["pred"], [0, 1, 1])
    np.testing.assert_array_equal(back["validation"]["label"], [0, 1, 0])
    np.testing.assert_allclose(back["test"]["pred"], [0.5, 2.25])
    assert S.load_predictions(tmp_path, RunRecord("b")) is None  # an old record: no evidence


def test_crash_during_write_leaves_nothing(tmp_path, monkeypatch):
    st = S.RunStore(tmp_path)
    st.write(RunRecord("a", status="ok", steps=1))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        st.write(RunRecord("a", status="ok", steps=2))
    with pytest.raises(OSError):
        st.write(RunRecord("b", status="ok"))
    monkeypatch.undo()
    # the old record is intact, the new one absent, no temporary left behind
    assert st.read("a").steps == 1
    assert st.read("b") is None
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["a.json"]


def test_clean_temporaries_keeps_records(tmp_path):
    st = S.RunStore(tmp_path)
    st.write(RunRecord("a", status="ok"))
    (tmp_path / "records" / ".b.json.123.tmp").write_text("{half")
    assert st.clean_temporaries() == 1
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["a.json"]


def test_plan_merges_without_duplicates(tmp_path):
    st = S.RunStore(tmp_path)
    st.write_plan("s", [{"run_id": "a"}, {"run_id": "b"}])
    st.write_plan("s", [{"run_id": "b"}, {"run_id": "c"}])
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [r["run_id"] for r in plan["runs"]] == ["a", "b", "c"]


def test_schema_1_records_load_and_unknown_keys_are_kept():
    old = {"run_id": "x", "status": "ok", "metrics": {"test": {"accuracy": 0.5}}, "future": 1}
    rec = RunRecord.from_dict(old)
    assert rec.schema_version == 1 and rec.predictions is None and rec.extra == {"future": 1}
    assert rec.to_dict()["future"] == 1
