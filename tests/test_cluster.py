"""vllm_mobo.slurm.preflight: parsing sinfo, the checks of a run's requests against a cluster, the largest TP x PP of a
search, and the local GPU cap in a real Snakemake run. The checks against a real SLURM are in test_slurm.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_snakemake
from vllm_mobo.config import load_schema, validate_config
from vllm_mobo.slurm.preflight import (
    ClusterError,
    JobRequest,
    Partition,
    check_requests,
    gres_gpus,
    max_devices_requested,
    parse_sinfo,
    query_partitions,
    time_limit_minutes,
)

REPO = Path(__file__).resolve().parents[1]

# `sinfo --noheader --Node --format='%P|%N|%G|%c|%m|%l|%a'` of tests/slurm/start-cluster.sh with FAKE_GPUS=2
SINGLE_NODE = "debug*|vm|gpu:2|2|24105|infinite|up\n"
# A cluster with CPU and GPU partitions, typed GPUs with socket bindings, a node in two partitions, a time limit
SITE = textwrap.dedent("""\
    cpu*|c001|(null)|64|256000|1-00:00:00|up
    cpu*|c002|(null)|64|256000|1-00:00:00|up
    gpu|g001|gpu:a100:4(S:0-1)|64|512000|2-00:00:00|up
    gpu|g002|gpu:a100:8(S:0-1),shard:16|128|1024000|2-00:00:00|up
    debug|g001|gpu:a100:4(S:0-1)|64|512000|30:00|up
    maint|m001|gpu:1|8|16000|infinite|down
""")


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", 0), ("", 0), ("gpu:2", 2), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:8(S:0-1),shard:16", 8),
    ("gpu:a100:2,gpu:v100:2", 4), ("gpu", 1), ("shard:8", 0), ("gpu:h100:4(S:0,1)", 4),
])
def test_gres_gpus(gres, gpus):
    assert gres_gpus(gres) == gpus


@pytest.mark.parametrize("text, minutes", [
    ("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("2:00:00", 120), ("1-00:00:00", 1440),
    ("1-12", 2160), ("0:90", 1),
])
def test_time_limit_minutes(text, minutes):
    assert time_limit_minutes(text) == minutes


def test_parse_sinfo_single_node():
    parts = parse_sinfo(SINGLE_NODE)
    assert list(parts) == ["debug"]
    p = parts["debug"]
    assert (p.default, p.available, p.max_time_min, p.max_gpus, p.max_cpus, p.max_memory_mb) == (
        True, True, None, 2, 2, 24105)


def test_parse_sinfo_site():
    parts = parse_sinfo(SITE)
    assert sorted(parts) == ["cpu", "debug", "gpu", "maint"]
    assert [p.name for p in parts.values() if p.default] == ["cpu"]
    assert parts["gpu"].max_gpus == 8 and parts["gpu"].max_cpus == 128 and parts["gpu"].max_time_min == 2880
    assert parts["debug"].max_gpus == 4 and parts["debug"].max_time_min == 30
    assert parts["cpu"].max_gpus == 0 and len(parts["cpu"].nodes) == 2
    assert parts["maint"].available is False


def test_parse_sinfo_rejects_other_formats():
    with pytest.raises(ValueError, match="expected 7"):
        parse_sinfo("PARTITION AVAIL TIMELIMIT NODES STATE NODELIST\ndebug* up infinite 1 idle vm\n")


def test_fitting_requests_pass():
    parts = parse_sinfo(SITE)
    ok = [JobRequest("benchmark", partition="gpu", gpus=8, mem_mb=64000, cpus=32, runtime_min=600),
          JobRequest("benchmark", partition=None, gpus=0, mem_mb=1000, cpus=64, runtime_min=1440)]
    assert check_requests(ok, parts) == []


def test_unknown_partition_names_it_and_the_allowed_ones():
    problems = check_requests([JobRequest("benchmark", partition="gpus", partition_from="set-resources: benchmark: "
                                          "slurm_partition")], parse_sinfo(SITE))
    assert problems == ["set-resources: benchmark: slurm_partition: partition 'gpus' does not exist on this "
                        "cluster; partitions: cpu, debug, gpu, maint"]


def test_too_many_gpus_names_the_source_and_the_partitions_with_gpus():
    parts = parse_sinfo(SITE)
    [problem] = check_requests([JobRequest("benchmark", partition="debug", gpus=8, gpus_from="TP x PP of tp4-pp2")],
                               parts)
    assert "asks for 8 GPU(s) per job (TP x PP of tp4-pp2)" in problem
    assert "partition 'debug' have at most 4" in problem
    assert "debug (4), gpu (8), maint (1)" in problem
    # the default partition has no GPU at all
    [problem] = check_requests([JobRequest("benchmark", gpus=1, gpus_from="x")], parts)
    assert "partition 'cpu' (the cluster's default) have at most 0" in problem


def test_memory_cpus_time_and_state():
    parts = parse_sinfo(SITE)
    problems = check_requests([
        JobRequest("benchmark", partition="debug", gpus=1, mem_mb=600000, mem_from="set-resources: benchmark: "
                   "mem_mb", cpus=96, cpus_from="cpus_per_gpu", runtime_min=45, runtime_from="rule's runtime"),
        JobRequest("benchmark", partition="maint", partition_from="default-resources: slurm_partition"),
    ], parts)
    assert problems == [
        "rule benchmark asks for mem_mb=600000 (set-resources: benchmark: mem_mb) but the nodes of partition "
        "'debug' have at most 512000 MB",
        "rule benchmark asks for 96 CPUs per job (cpus_per_gpu) but the nodes of partition 'debug' have at most 64",
        "rule benchmark asks for runtime=45 min (rule's runtime) but partition 'debug' allows at most 30 min "
        "(the job would stay pending)",
        "default-resources: slurm_partition: partition 'maint' is not up (sinfo availability)",
    ]


def test_cpu_engine_by_auto_on_gpu_nodes():
    parts = parse_sinfo(SITE)
    request = JobRequest("benchmark", partition="gpu", cpu_by_auto=True)
    [problem] = check_requests([request], parts)
    assert "benchmark.device is 'auto'" in problem and "set benchmark.device to 'cuda'" in problem
    # on CPU nodes the CPU engine is what `auto` should give
    assert check_requests([JobRequest("benchmark", partition="cpu", cpu_by_auto=True)], parts) == []


def test_no_default_partition():
    problems = check_requests([JobRequest("benchmark")], {"a": Partition("a")})
    assert problems == ["rule benchmark: no slurm_partition is set and the cluster has no default partition; set "
                        "default-resources: slurm_partition to one of: a"]


def test_cluster_error_lists_every_problem():
    err = ClusterError(["one", "two"])
    assert str(err).splitlines()[1:] == ["  - one", "  - two"]


def test_query_partitions_without_sinfo():
    with pytest.raises(ClusterError, match="`no-such-sinfo` is not on PATH"):
        query_partitions("no-such-sinfo")


def test_query_partitions_failing_sinfo(tmp_path):
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ClusterError, match="exit 1.*Unable to contact slurm controller"):
        query_partitions(str(fake))


def _config(**benchmark):
    raw = yaml_config()
    raw["benchmark"] = {**raw.get("benchmark", {}), **benchmark}
    raw["search_space"] = {"tensor_parallel_size": [1, 2], "pipeline_parallel_size": [1, 2], "max_num_seqs": [16, 32]}
    return validate_config(raw, load_schema(REPO / "workflow/schemas/config.schema.yaml"))


def yaml_config():
    return yaml.safe_load((REPO / "tests/configs/slurm.yaml").read_text())


def test_max_devices_requested_follows_the_valid_space():
    # num_devices bounds TP x PP through the validity rules: the largest request is what a node must have
    assert max_devices_requested(_config(device="cuda", num_devices=4)) == (4, "tp2-pp2-seqs16")
    assert max_devices_requested(_config(device="cuda", num_devices=2)) == (2, "tp1-pp2-seqs16")
    assert max_devices_requested(_config(device="cuda", num_devices=1)) == (1, "vllm-default")


SNAKEFILE = """
from vllm_mobo.slurm.preflight import local_gpu_cap

onstart:
    local_gpu_cap(workflow, config, count=config["cap"])

rule all:
    input: "a.txt", "b.txt"

rule gpu_job:
    output: "{x}.txt"
    resources: gpu=1
    shell: "date +%s.%N > {output}; sleep 4; date +%s.%N >> {output}"
"""


def _run_two_gpu_jobs(tmp_path, cap, *extra):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run_snakemake(tmp_path, *extra, "--cores", "2", "--config", f"cap={cap}",
                  "benchmark={'device': 'cuda', 'num_devices': 'auto'}", profile=None,
                  snakefile=tmp_path / "Snakefile", timeout=120)
    (a0, a1), (b0, b1) = ([float(x) for x in (tmp_path / f).read_text().split()] for f in ("a.txt", "b.txt"))
    return max(a0, b0) < min(a1, b1)  # overlapped


def test_local_gpu_cap_serialises_gpu_jobs(tmp_path):
    """With 1 GPU, two gpu=1 jobs run one after the other although 2 cores are free; with 2 GPUs together."""
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
    assert _run_two_gpu_jobs(tmp_path / "one", 1) is False
    assert _run_two_gpu_jobs(tmp_path / "two", 2) is True


def test_local_gpu_cap_leaves_an_explicit_limit(tmp_path):
    assert _run_two_gpu_jobs(tmp_path, 1, "--resources", "gpu=2") is True


HOLDER = """
import sys, time
from vllm_mobo.measure.gpus import claim_gpus
with claim_gpus(int(sys.argv[1]), [0, 1, 2], lock_dir=sys.argv[2], timeout_s=30, poll_s=0.1) as got:
    print(",".join(map(str, got)), flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(lock_dir, count, hold_s):
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(count), str(lock_dir), str(hold_s)],
                            stdout=subprocess.PIPE, text=True)


def test_claim_gpus_gives_concurrent_processes_disjoint_gpus(tmp_path):
    from vllm_mobo.measure.gpus import claim_gpus

    first = _holder(tmp_path, 2, 30)
    assert first.stdout.readline().strip() == "0,1"
    second = _holder(tmp_path, 1, 0)
    assert second.stdout.readline().strip() == "2"
    second.wait(timeout=60)
    # 2 wanted, 1 free (GPU 2): waits, all or nothing, then times out naming the GPUs
    with pytest.raises(TimeoutError, match=r"2 of GPUs \[0, 1, 2\] were not free within 0.3 s"):
        with claim_gpus(2, [0, 1, 2], lock_dir=tmp_path, timeout_s=0.3, poll_s=0.1):
            pass
    first.kill()  # a holder that dies (SIGKILL) frees its GPUs
    first.wait()
    with claim_gpus(3, [0, 1, 2], lock_dir=tmp_path, timeout_s=5, poll_s=0.1) as got:
        assert got == [0, 1, 2]
    with pytest.raises(ValueError, match="4 GPU"):
        with claim_gpus(4, [0, 1, 2], lock_dir=tmp_path):
            pass


def test_claim_gpus_waits_for_a_release(tmp_path):
    from vllm_mobo.measure.gpus import claim_gpus

    holder = _holder(tmp_path, 3, 1.5)
    assert holder.stdout.readline().strip() == "0,1,2"
    t0 = time.monotonic()
    with claim_gpus(1, [0, 1, 2], lock_dir=tmp_path, timeout_s=30, poll_s=0.1) as got:
        waited = time.monotonic() - t0
    assert len(got) == 1 and 0.5 < waited < 25
    holder.wait(timeout=30)
