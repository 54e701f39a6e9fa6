"""The results store writes whole records or nothing, and lists what exists."""

import json

import pytest

from ptft_bench import store as S


def test_write_read_roundtrip(tmp_path):
    st = S.RunStore(tmp_path)
    st.write({"run_id": "a", "status": "ok", "x": float("nan"), "y": [1.5, float("inf")]})
    rec = st.read("a")
    assert rec == {"run_id": "a", "status": "ok", "x": None, "y": [1.5, None]}
    assert st.status("a") == "ok" and st.status("b") is None
    assert [r["run_id"] for r in st.records()] == ["a"]


def test_crash_during_write_leaves_nothing(tmp_path, monkeypatch):
    st = S.RunStore(tmp_path)
    st.write({"run_id": "a", "status": "ok", "v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(S.json, "dump", boom)
    with pytest.raises(OSError):
        st.write({"run_id": "a", "status": "ok", "v": 2})
    with pytest.raises(OSError):
        st.write({"run_id": "b", "status": "ok"})
    monkeypatch.undo()
    # the old record is intact, the new one absent, no temporary left behind
    assert st.read("a")["v"] == 1
    assert st.read("b") is None
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["a.json"]


def test_clean_temporaries_keeps_records(tmp_path):
    st = S.RunStore(tmp_path)
    st.write({"run_id": "a", "status": "ok"})
    (tmp_path / "records" / ".b.json.123.tmp").write_text("{half")
    assert st.clean_temporaries() == 1
    assert [p.name for p in (tmp_path / "records").iterdir()] == ["a.json"]


def test_plan_merges_without_duplicates(tmp_path):
    st = S.RunStore(tmp_path)
    st.write_plan("s", [{"run_id": "a"}, {"run_id": "b"}])
    st.write_plan("s", [{"run_id": "b"}, {"run_id": "c"}])
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [r["run_id"] for r in plan["runs"]] == ["a", "b", "c"]
