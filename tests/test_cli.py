"""The command line on bad input: exit 2, one line on stderr, no traceback, nothing written.

Every case runs in-process through ``ptft_bench.cli.main`` (the function ``python -m ptft_bench``
calls), and a representative subset, plus ``list`` and ``--dry-run``, through the real command in
subprocesses started together (each one pays ~5 s of imports, so they run concurrently).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from e2e_fixtures import cli_env, make_csv_task, make_tiny_model_dir

from ptft_bench.cli import _tasks, main
from ptft_bench.config import load_suite
from ptft_bench.sweep.plan import expand


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a tiny model, a good CSV task and a collection of bad inputs."""
    root = tmp_path_factory.mktemp("cli")
    make_tiny_model_dir(root)
    make_csv_task(root)
    rows = [
        {"review": f"film number {i}", "sentiment": "pos" if i % 2 else "neg"} for i in range(40)
    ]
    rows[7]["sentiment"] = "meh"
    pd.DataFrame(rows).to_csv(root / "extra_label.csv", index=False)
    (root / "empty.csv").write_text("review,sentiment\n")
    (root / "blank.csv").write_text("")
    (root / "bad_top.toml").write_text(
        'tasks = ["sst2"]\nbogus_top = 1\n[[strategies]]\nname = "full"\n'
    )
    (root / "bad_budget.toml").write_text(
        'tasks = ["sst2"]\n[budget]\nepochz = 1\n[[strategies]]\nname = "full"\n'
    )
    (root / "no_config_model").mkdir()
    return root


def task(work: Path, name: str = "reviews.csv", opts: str = "text=review&label=sentiment") -> str:
    return f"csv:{work / name}?{opts}"


# (id, run arguments (a function of the work folder), fragment the message must contain)
RUN_CASES = [
    ("unknown-task", lambda w: ["--tasks", "rotten_tomatos"], "did you mean 'rotten_tomatoes'"),
    (
        "unknown-strategy",
        lambda w: ["--tasks", task(w), "--strategies", "lorra"],
        "Did you mean 'lora'",
    ),
    ("lora-r0", lambda w: ["--tasks", task(w), "--strategies", "lora:r=0"], "r must be"),
    ("top_k-abc", lambda w: ["--tasks", task(w), "--strategies", "top_k:k=abc"], "abc"),
    ("unknown-param", lambda w: ["--tasks", task(w), "--strategies", "lora:rank=4"], "rank"),
    ("malformed-variant", lambda w: ["--tasks", task(w), "--strategies", "lora:r"], "key=value"),
    ("suite-unknown-key", lambda w: ["--suite", str(w / "bad_top.toml")], "bogus_top"),
    ("suite-unknown-budget-key", lambda w: ["--suite", str(w / "bad_budget.toml")], "epochz"),
    ("suite-unknown-name", lambda w: ["--suite", "quik"], "quick"),
    ("suite-missing-file", lambda w: ["--suite", str(w / "nope.toml")], "does not exist"),
    ("missing-data-file", lambda w: ["--tasks", "csv:/nope.csv"], "/nope.csv"),
    ("missing-column", lambda w: ["--tasks", task(w, opts="text=body&label=sentiment")], "body"),
    (
        "missing-label-column",
        lambda w: ["--tasks", task(w, opts="text=review&label=stars")],
        "stars",
    ),
    ("unknown-task-option", lambda w: ["--tasks", task(w, opts="txt=review")], "txt"),
    (
        "label-outside-set",
        lambda w: [
            "--tasks",
            task(w, "extra_label.csv", "text=review&label=sentiment&labels=neg,pos"),
        ],
        "meh",
    ),
    ("empty-file", lambda w: ["--tasks", task(w, "empty.csv")], "no rows"),
    ("blank-file", lambda w: ["--tasks", task(w, "blank.csv")], "blank.csv"),
    (
        "empty-test-split",
        lambda w: ["--tasks", task(w, opts=f"text=review&label=sentiment&test={w / 'empty.csv'}")],
        "empty.csv",
    ),
    (
        "model-folder-missing",
        lambda w: ["--tasks", task(w), "--model", str(w / "no-such-model")],
        "does not exist",
    ),
    (
        "model-folder-no-config",
        lambda w: ["--tasks", task(w), "--model", str(w / "no_config_model")],
        "config.json",
    ),
    ("bad-shard", lambda w: ["--tasks", task(w), "--shard", "2/2"], "--shard"),
    ("bad-shard-syntax", lambda w: ["--tasks", task(w), "--shard", "one/two"], "--shard"),
    (
        "max-train-zero",
        lambda w: ["--tasks", task(w), "--max-train-samples", "0"],
        "max_train_samples",
    ),
    ("epochs-zero", lambda w: ["--tasks", task(w), "--epochs", "0"], "epochs"),
]
# Needs a process whose hub library was imported after the offline switch: subprocess only.
HUB_CASE = (
    "hub-id-offline",
    lambda w: ["--tasks", task(w), "--model", "bert-base-uncased"],
    "PTFT_ONLINE=1",
)
# The subset that also runs through the real command.
REAL_CLI = {"unknown-task", "lora-r0", "missing-data-file", "label-outside-set", "bad-shard"}


def run_args(work: Path, case, out: Path) -> list[str]:
    _, args, _ = case
    full = ["run", *args(work), "--out", str(out), "--quiet", "--no-report", "--jobs", "0"]
    if "--strategies" not in full:
        full += ["--strategies", "head_only"]
    if "--model" not in full:
        full += ["--model", str(work / "tiny-bert")]
    return full


def assert_clean_failure(rc: int, stderr: str, fragment: str, out: Path | None) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ptft-bench: error: "), stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    if out is not None:
        assert not (out / "records").exists() and not (out / "plan.json").exists()
        assert not out.exists() or not any(out.rglob("*"))


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_input_in_process(case, work, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(run_args(work, case, out))
    captured = capsys.readouterr()
    assert_clean_failure(rc, captured.err, case[2], out)


def test_report_without_records_in_process(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for d in (tmp_path / "empty", tmp_path / "missing"):
        rc = main(["report", str(d)])
        assert_clean_failure(rc, capsys.readouterr().err, "records", None)
    assert not (tmp_path / "empty" / "report").exists()


# Runs several commands in ONE fresh interpreter, each exactly as `python -m ptft_bench ARGS` would
# (runpy of the package's __main__, stdout/stderr captured at the file-descriptor level, an
# uncaught exception printed as a traceback with status 1): the imports (~6 s of CPU) are paid
# once instead of once per command.
DRIVER = r"""
import json, os, runpy, sys, traceback
jobs_path, res_path = sys.argv[1], sys.argv[2]
jobs = json.load(open(jobs_path))
results = {}
for name, args in jobs:
    out_path, err_path = res_path + "." + name + ".out", res_path + "." + name + ".err"
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(out_path, "w") as o, open(err_path, "w") as e:
        os.dup2(o.fileno(), 1); os.dup2(e.fileno(), 2)
        sys.argv = ["ptft-bench", *args]
        try:
            runpy.run_module("ptft_bench", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as ex:
            code = ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    results[name] = [code, open(out_path).read(), open(err_path).read()]
json.dump(results, open(res_path, "w"))
"""


@pytest.fixture(scope="module")
def real_cli(work, tmp_path_factory):
    """{name: (returncode, stdout, stderr, out folder)} from fresh interpreters running the CLI.

    The offline-hub case runs alone as a plain `python -m ptft_bench` (the most environment-
    sensitive check); every other command runs through DRIVER in a second process at the same time.
    """
    root = tmp_path_factory.mktemp("real")
    jobs: dict[str, tuple[list[str], Path | None]] = {}
    for case in [c for c in RUN_CASES if c[0] in REAL_CLI]:
        out = root / case[0]
        jobs[case[0]] = (run_args(work, case, out), out)
    (root / "no-records").mkdir()
    jobs["report-no-records"] = (["report", str(root / "no-records")], None)
    jobs["list"] = (["list"], None)
    jobs["dry-run"] = (
        [
            "run",
            "--tasks",
            task(work),
            "--model",
            str(work / "tiny-bert"),
            "--strategies",
            "full",
            "lora:r=4",
            "--lrs",
            "1e-3,2e-3",
            "--seeds",
            "0,1",
            "--epochs",
            "1",
            "--out",
            str(root / "dry"),
            "--dry-run",
        ],
        root / "dry",
    )
    (root / "driver.py").write_text(DRIVER)
    (root / "jobs.json").write_text(json.dumps([[k, a] for k, (a, _) in jobs.items()]))
    hub_out = root / HUB_CASE[0]
    hub = subprocess.Popen(
        [sys.executable, "-m", "ptft_bench", *run_args(work, HUB_CASE, hub_out)],
        cwd=root,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    batch = subprocess.run(
        [
            sys.executable,
            str(root / "driver.py"),
            str(root / "jobs.json"),
            str(root / "results.json"),
        ],
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    hub_stdout, hub_stderr = hub.communicate(timeout=300)
    assert batch.returncode == 0, batch.stderr
    raw = json.loads((root / "results.json").read_text())
    results = {name: (*raw[name], jobs[name][1]) for name in jobs}
    results[HUB_CASE[0]] = (hub.returncode, hub_stdout, hub_stderr, hub_out)
    return results


@pytest.mark.parametrize("name", sorted(REAL_CLI | {HUB_CASE[0]}))
def test_bad_input_real_command(name, real_cli):
    fragment = dict((c[0], c[2]) for c in [*RUN_CASES, HUB_CASE])[name]
    rc, _, stderr, out = real_cli[name]
    assert_clean_failure(rc, stderr, fragment, out)


def test_report_without_records_real_command(real_cli):
    rc, _, stderr, _ = real_cli["report-no-records"]
    assert_clean_failure(rc, stderr, "records", None)


def test_list_shows_strategies_with_parameters_tasks_and_suites(real_cli):
    from ptft_bench.config import bundled_suites
    from ptft_bench.strategy.registry import list_strategies
    from ptft_bench.tasks import list_tasks

    rc, stdout, stderr, _ = real_cli["list"]
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    lines = stdout.splitlines()
    words = stdout.split()
    strategies = list_strategies()
    assert len(strategies) >= 10
    for info in strategies:
        assert info.name in words, info.name
        for p in info.params:
            assert any(line.strip().startswith(f"{p.name} ") for line in lines), (info.name, p.name)
    for spec in list_tasks():
        if spec.family != "custom":
            assert spec.name in words, spec.name
    for suite in bundled_suites():
        assert suite in words, suite
    # the parameters are listed under their strategy
    lora = next(i for i, line in enumerate(lines) if line.split()[:1] == ["lora"])
    nxt = next(i for i in range(lora + 1, len(lines)) if not lines[i].startswith("      "))
    block = "\n".join(lines[lora + 1 : nxt])
    for p in next(i for i in strategies if i.name == "lora").params:
        assert f"{p.name} (" in block


def test_run_ids_stable_across_processes(real_cli, work):
    """The same config gives the same ids in another process (here: the real command's dry run)."""
    rc, stdout, stderr, out = real_cli["dry-run"]
    assert rc == 0, stderr
    listed = [
        line.split()[1] for line in stdout.splitlines() if line.startswith(("todo ", "done "))
    ]
    assert len(listed) == 2 * 2 * 2
    assert all(line.startswith("todo") for line in stdout.splitlines()[:-1])
    suite = load_suite(
        "quick",
        {
            "tasks": [task(work)],
            "models": [str(work / "tiny-bert")],
            "strategies": ["full", "lora:r=4"],
            "seeds": [0, 1],
            "budget.epochs": 1,
            "output_dir": "elsewhere",
        },
    )
    for v in suite.strategies:
        v.lrs = [1e-3, 2e-3]
    assert listed == [s.run_id for s in expand(suite)]
    assert not out.exists()  # a dry run writes nothing


def test_tasks_flag_keeps_commas_inside_file_task_options():
    assert _tasks("sst2,rte") == ["sst2", "rte"]
    assert _tasks("csv:a.csv?text=t1,t2&labels=x,y,rte, csv:b.csv,cola") == [
        "csv:a.csv?text=t1,t2&labels=x,y",
        "rte",
        "csv:b.csv",
        "cola",
    ]
