"""The pipeline on a real SLURM cluster through profiles/slurm (snakemake-executor-plugin-slurm): a single-node
cluster on localhost (tests/slurm/start-cluster.sh: Debian's slurmctld, slurmd, munge, slurmdbd + MariaDB for
sacct; two fake GPUs), stopped by PID at the end, also when a test fails.

What is compared with a local run, and why: iteration 0 (the vLLM default + the maximin design) is a function of the
config and the seed only, so the SLURM run and a local run must propose exactly the same candidates there. Later
iterations are chosen from measured throughput and energy, which differ from run to run (and more so on a shared
machine), so their candidates may legitimately differ between two runs; what must hold is that each of them is
exactly what the search computes from the measurements of its own run (checked by re-planning every iteration with
vllm_mobo.search.plan.plan_iteration), that both runs spend the same budget in the same number of iterations and stop for
the same reason, and that a candidate measured in both runs ran the same engine configuration on the same device.

Needs root and apt-get (or SLURM, munge, slurmdbd and MariaDB installed): skipped otherwise, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_snakemake

# The first test includes installing SLURM (~1.5 min on a fresh machine) and the SLURM run of the search; the
# module takes ~10-20 min on 2 cores (see docs/slurm.md)
pytestmark = [pytest.mark.slurm, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"
FAKE_GPUS = 2
# Fast status checks for a test (the profile's values are for a real cluster)
TEST_ARGS = ["--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "2"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: starts SLURM daemons and installs Debian packages (CI runs as root)"
    have_slurm = all(shutil.which(x) for x in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sinfo"))
    if not have_slurm and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


if _skip_reason():
    pytestmark = [*pytestmark, pytest.mark.skip(reason=_skip_reason())]


def _pids(cluster_dir: Path) -> dict[str, int]:
    pids = {}
    for f in (cluster_dir / "run").glob("*.pid"):
        text = f.read_text().strip()
        if text.isdigit():
            pids[f.stem] = int(text)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster: its directory and the environment pointing at it."""
    cluster_dir = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CONF": str(cluster_dir / "etc" / "slurm.conf"), "PYTHONUNBUFFERED": "1"}
    started = {}

    def stop():
        pids = _pids(cluster_dir)
        out = subprocess.run(["bash", str(SCRIPTS / "stop-cluster.sh"), str(cluster_dir)], capture_output=True,
                             text=True, timeout=300)
        left = {name: pid for name, pid in {**started, **pids}.items() if _alive(pid)}
        assert not left, f"daemons still running after stop-cluster.sh: {left}\n{out.stderr}"

    try:
        t0 = time.time()
        out = subprocess.run(["bash", str(SCRIPTS / "start-cluster.sh"), str(cluster_dir)], capture_output=True,
                             text=True, timeout=1200, env={**env, "FAKE_GPUS": str(FAKE_GPUS)})
        started.update(_pids(cluster_dir))
        assert out.returncode == 0, f"start-cluster.sh failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
        print(f"cluster up in {time.time() - t0:.0f} s: {out.stderr.strip().splitlines()[-3:]}")
        yield cluster_dir, env
    finally:
        stop()


def _snakemake(workdir: Path, env: dict, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    """Snakemake with the cluster's environment; the command and its output kept in ``workdir/snakemake.out``."""
    t0 = time.time()
    proc = run_snakemake(workdir, *args, profile="default", env=env, check=False, timeout=timeout,
                         log=workdir / "snakemake.out")
    print(f"snakemake {' '.join(args)}: exit {proc.returncode} in {time.time() - t0:.0f} s")
    return proc


def _write_config(workdir: Path, name: str, **changes) -> dict:
    config = yaml.safe_load((REPO / "tests" / "configs" / name).read_text())
    for key, value in changes.items():  # "benchmark.device" -> config["benchmark"]["device"]
        *parents, last = key.split(".")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def _slurm_run(workdir: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return _snakemake(workdir, env, "--workflow-profile", str(REPO / "profiles" / "slurm"), *TEST_ARGS, *args)


def _sacct(env: dict, since: float) -> list[dict]:
    """Jobs (allocations, not steps) submitted since ``since``."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 1))
    fields = ["JobID", "JobName", "State", "Comment", "AllocTRES", "ExitCode", "Partition"]
    out = None
    for _ in range(30):  # slurmctld hands finished jobs to slurmdbd asynchronously
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-a", "-S", start, "-o", ",".join(fields)],
                             capture_output=True, text=True, env=env, timeout=60)
        rows = [dict(zip(fields, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]
        if rows and all(r["State"] not in ("PENDING", "RUNNING") for r in rows):
            return rows
        time.sleep(1)
    raise AssertionError(f"sacct did not report finished jobs: {out.stdout} {out.stderr}")


def _proposals(results: Path) -> list[dict]:
    out, i = [], 0
    while (results / f"iter_{i}" / "proposal.json").exists():
        out.append(json.loads((results / f"iter_{i}" / "proposal.json").read_text()))
        i += 1
    return out


def _names(proposal: dict) -> list[str]:
    return [c["name"] for c in proposal["candidates"]]


def _gpus(alloc_tres: str) -> int:
    for item in alloc_tres.split(","):
        if item.startswith("gres/gpu="):
            return int(item.split("=")[1])
    return 0


def _replan(workdir: Path, config: dict, proposals: list[dict]) -> list[list[str]]:
    """Each iteration's candidates as vllm_mobo.search.plan computes them from the run's own earlier results."""
    from vllm_mobo.config import load_schema, validate_config
    from vllm_mobo.search.plan import plan_iteration, platform_for

    config = validate_config(config, load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    results = workdir / "results" / config["run"]
    names = []
    for i in range(len(proposals)):
        records = [json.loads((results / f"iter_{j}" / c / "metrics.json").read_text())
                   for j in range(i) for c in _names(proposals[j])]
        names.append(_names(plan_iteration(config, i, records, proposals[:i], platform_for(config))))
    return names


def _targets(config: dict) -> list[str]:
    """The whole search and its tables (the report and figures add nothing here and take minutes on 2 cores)."""
    return [f"results/{config['run']}/observations.csv", f"results/{config['run']}/skipped.csv"]


@pytest.fixture(scope="module")
def slurm_search(cluster, tmp_path_factory):
    """The search of tests/configs/slurm.yaml run through SLURM with profiles/slurm."""
    _, env = cluster
    workdir = tmp_path_factory.mktemp("slurm-run")
    config = _write_config(workdir, "slurm.yaml")
    t0 = time.time()
    # One benchmark at a time on the 2-CPU test node, as locally (each job asks SLURM for 1 CPU, so 2 would run).
    proc = _slurm_run(workdir, env, *_targets(config), "--resources", "benchmark_slots=1")
    assert proc.returncode == 0, f"SLURM run failed:\n{proc.stderr[-8000:]}"
    return workdir, config, t0, proc


@pytest.fixture(scope="module")
def local_search(tmp_path_factory):
    """The same search run locally (profiles/default), for comparison."""
    workdir = tmp_path_factory.mktemp("local-run")
    config = _write_config(workdir, "slurm.yaml")
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    proc = _snakemake(workdir, {**env, "PYTHONUNBUFFERED": "1"}, "--cores", "2", *_targets(config))
    assert proc.returncode == 0, f"local run failed:\n{proc.stderr[-8000:]}"
    return workdir, config


def test_benchmarks_ran_as_slurm_jobs(cluster, slurm_search):
    _, env = cluster
    workdir, config, t0, proc = slurm_search
    results = workdir / "results" / config["run"]
    measured = sorted(p.relative_to(results) for p in results.glob("iter_*/*/metrics.json"))
    assert len(measured) == config["optimizer"]["budget"], measured
    expected = {f"rule_benchmark_wildcards_{p.parts[0].removeprefix('iter_')}_{p.parts[1]}" for p in measured}

    jobs = _sacct(env, t0)
    # every submitted job is a benchmark (propose, tables and figures are local rules), one per candidate
    assert sorted(j["Comment"] for j in jobs) == sorted(expected), jobs
    for j in jobs:
        assert (j["State"], j["ExitCode"], j["Partition"]) == ("COMPLETED", "0:0", "debug"), j
        assert _gpus(j["AllocTRES"]) == 0, f"a CPU-engine benchmark asked for GPUs: {j}"
        wildcards = j["Comment"].removeprefix("rule_benchmark_wildcards_")
        log = workdir / "logs" / "_slurm" / "rule_benchmark" / wildcards / f"{j['JobID']}.log"
        assert log.exists(), f"no plugin log {log}"
        assert "rule benchmark" in log.read_text()
    for m in measured:
        record = json.loads((results / m).read_text())
        assert record["status"] == "ok", record.get("failure")
    assert "SLURM run ID" in proc.stderr


def test_slurm_search_equals_local_search(slurm_search, local_search):
    s_dir, config, _, _ = slurm_search
    l_dir, _ = local_search
    run = config["run"]
    s_props, l_props = _proposals(s_dir / "results" / run), _proposals(l_dir / "results" / run)

    # iteration 0 depends on the seed only: the same candidates, in the same order
    assert _names(s_props[0]) == _names(l_props[0])
    assert [c["config"] for c in s_props[0]["candidates"]] == [c["config"] for c in l_props[0]["candidates"]]
    # the same budget in the same number of iterations, the same stop
    assert [len(p["candidates"]) for p in s_props] == [len(p["candidates"]) for p in l_props]
    assert s_props[-1]["stop"] and l_props[-1]["stop"] and s_props[-1]["reason"] == l_props[-1]["reason"]
    assert [p["platform"] for p in s_props] == [p["platform"] for p in l_props]
    # later iterations: each run's candidates are what the search computes from that run's measurements
    assert _replan(s_dir, config, s_props) == [_names(p) for p in s_props]
    assert _replan(l_dir, config, l_props) == [_names(p) for p in l_props]
    print("candidates per iteration, SLURM:", [_names(p) for p in s_props])
    print("candidates per iteration, local:", [_names(p) for p in l_props])

    # a candidate measured in both runs ran the same engine configuration on the same device
    keys = ["status", "config", "engine_args", "resolved_engine_args", "device", "devices_used", "workload", "model"]
    for name in _names(s_props[0]):
        s = json.loads((s_dir / "results" / run / "iter_0" / name / "metrics.json").read_text())
        l_ = json.loads((l_dir / "results" / run / "iter_0" / name / "metrics.json").read_text())
        assert {k: s.get(k) for k in keys} == {k: l_.get(k) for k in keys}, name
        assert s["hardware"]["cpu_cores_usable"] == l_["hardware"]["cpu_cores_usable"]
        assert s["metrics"]["output_tokens_per_s"] > 0 and l_["metrics"]["output_tokens_per_s"] > 0

    # the same tables: skipped configurations, and one observation row per candidate with the same columns
    s_skipped = pd.read_csv(s_dir / "results" / run / "skipped.csv")
    pd.testing.assert_frame_equal(s_skipped, pd.read_csv(l_dir / "results" / run / "skipped.csv"))
    s_obs = pd.read_csv(s_dir / "results" / run / "observations.csv")
    l_obs = pd.read_csv(l_dir / "results" / run / "observations.csv")
    assert list(s_obs.columns) == list(l_obs.columns) and len(s_obs) == len(l_obs) == config["optimizer"]["budget"]


def test_gpu_benchmarks_request_tp_x_pp_gpus(cluster, tmp_path):
    """With benchmark.device: cuda each benchmark job asks SLURM for TP x PP GPUs and gets them. The fake GPUs
    cannot run anything (NVML sees none), so each candidate ends at once as a recorded failure (or at the config's
    1 s timeout); only the requests matter here."""
    _, env = cluster
    config = _write_config(tmp_path, "slurm-gpu.yaml")
    t0 = time.time()
    # 1 CPU per GPU: the test node has 2 CPUs (the profile's 4 per GPU would be refused, see the test below)
    proc = _slurm_run(tmp_path, env, f"results/{config['run']}/iter_1/proposal.json",
                      "--set-resources", "benchmark:cpus_per_gpu=1")
    assert proc.returncode == 0, proc.stderr[-8000:]
    iter0 = json.loads((tmp_path / "results" / config["run"] / "iter_0" / "proposal.json").read_text())
    wanted = {f"rule_benchmark_wildcards_0_{c['name']}": c["config"].get("tensor_parallel_size", 1) *
              c["config"].get("pipeline_parallel_size", 1) for c in iter0["candidates"]}
    jobs = _sacct(env, t0)
    assert {j["Comment"]: _gpus(j["AllocTRES"]) for j in jobs} == wanted
    assert max(wanted.values()) == FAKE_GPUS  # the design has a multi-GPU candidate
    for name in _names(iter0):
        record = json.loads((tmp_path / "results" / config["run"] / "iter_0" / name / "metrics.json").read_text())
        assert (record["candidate"], record["status"]) == (name, "failed"), record


@pytest.mark.parametrize("case, changes, args, message", [pytest.param(*p, id=p[0]) for p in [
    ("unknown partition", {}, ["--default-resources", "slurm_partition=gpus"],
     "default-resources: slurm_partition: partition 'gpus' does not exist on this cluster; partitions: debug"),
    ("TP x PP above a node's GPUs", {"benchmark.num_devices": 4, "search_space.pipeline_parallel_size": [1, 2]},
     ["--set-resources", "benchmark:cpus_per_gpu=1"],
     "rule benchmark asks for 4 GPU(s) per job (TP x PP of candidate tp2-seqs16-pp2, the largest of the search "
     "space allowed by benchmark.num_devices=4) but the nodes of partition 'debug' (the cluster's default) have at "
     "most 2"),
    ("profile asks for more GPUs", {}, ["--set-resources", "benchmark:gpu=3", "benchmark:cpus_per_gpu=1"],
     "rule benchmark asks for 3 GPU(s) per job (set-resources: benchmark: gpu) but the nodes of partition 'debug'"),
    ("the profile's CPUs per GPU on a 2-CPU node", {}, [],
     "rule benchmark asks for 8 CPUs per job (set-resources: benchmark: cpus_per_gpu x 2 GPUs) but the nodes of "
     "partition 'debug' (the cluster's default) have at most 2"),
    ("device auto on GPU nodes", {"benchmark.device": "auto", "benchmark.num_devices": "auto"}, [],
     "benchmark.device is 'auto', which resolved to the CPU engine on this node"),
]])
def test_bad_cluster_settings_stop_before_any_job(cluster, tmp_path, case, changes, args, message):
    _, env = cluster
    config = _write_config(tmp_path, "slurm-gpu.yaml", **changes)
    t0 = time.time()
    proc = _slurm_run(tmp_path, env, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-4000:]
    assert "the SLURM settings do not fit this cluster" in proc.stderr
    # stopped before the search started: no proposal, no job in SLURM
    assert not (tmp_path / "results" / config["run"] / "iter_0" / "proposal.json").exists()
    out = subprocess.run(["sacct", "-X", "-P", "-n", "-a", "-S", time.strftime("%Y-%m-%dT%H:%M:%S",
                          time.localtime(t0 - 1)), "-o", "JobID"], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "", f"{case}: jobs were submitted: {out.stdout}"
