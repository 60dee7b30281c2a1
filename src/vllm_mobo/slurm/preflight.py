"""Preflight of a run on a SLURM cluster: before the first job, the requests of the submitted rules (partition,
GPUs, memory, CPUs, time) are checked against what ``sinfo`` says the cluster has.

Without it, a mistake surfaces late: SLURM refuses a job asking for more GPUs than any node has only when that
job is submitted, and a candidate with a large TP x PP may be proposed hours into the search; a job asking for
more time than the partition allows stays pending for ever. Here every problem is one line naming the setting
(the profile key or the config key) and what the cluster allows, and the run stops before any benchmark.

The workflow calls :func:`preflight` from an ``onstart:`` handler (workflow/rules/common.smk). On local runs it
instead caps the ``gpu`` resource at the GPUs this machine has, unless ``--resources gpu=N`` says otherwise, and
:func:`vllm_mobo.measure.gpus.claim_gpus` gives concurrent local benchmarks disjoint GPUs (SLURM does that itself on a cluster).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

#: ``sinfo`` output: one line per node and partition.
SINFO_FORMAT = "%P|%N|%G|%c|%m|%l|%a"


class ClusterError(ValueError):
    """The run asks the cluster for something it does not have (one line per problem)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "the SLURM settings do not fit this cluster (checked with sinfo before any job):\n  - "
            + "\n  - ".join(self.problems)
        )


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int
    cpus: int
    memory_mb: int


@dataclass
class Partition:
    name: str
    default: bool = False
    available: bool = True
    max_time_min: int | None = None  # None: no limit
    nodes: list[Node] = field(default_factory=list)

    @property
    def max_gpus(self) -> int:
        return max((n.gpus for n in self.nodes), default=0)

    @property
    def max_cpus(self) -> int:
        return max((n.cpus for n in self.nodes), default=0)

    @property
    def max_memory_mb(self) -> int:
        return max((n.memory_mb for n in self.nodes), default=0)


@dataclass
class JobRequest:
    """What the jobs of one rule ask for; ``*_from`` say which setting each value comes from (for messages)."""

    rule: str
    partition: str | None = None  # None: the cluster's default partition
    partition_from: str = ""
    gpus: int = 0
    gpus_from: str = ""
    mem_mb: int | None = None
    mem_from: str = ""
    cpus: int | None = None
    cpus_from: str = ""
    runtime_min: int | None = None
    runtime_from: str = ""
    #: benchmark.device 'auto' resolved to the CPU engine on the submitting node (a mistake on GPU nodes)
    cpu_by_auto: bool = False


# --------------------------------------------------------------------------------------------- parsing sinfo
def gres_gpus(gres: str) -> int:
    """GPUs in a ``sinfo %G`` field: ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``, ``(null)`` -> 4, 4, 2, 0."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres or ""):
        item = re.sub(r"\(.*?\)", "", item).strip()
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        total += int(count) if count.isdigit() else 1
    return total


def time_limit_minutes(text: str) -> int | None:
    """A SLURM time limit (``infinite``, ``30``, ``30:00``, ``2:00:00``, ``1-12:00:00``, ``1-12``) in minutes,
    rounded down; None for no limit."""
    text = (text or "").strip().lower()
    if text in ("", "infinite", "unlimited", "n/a"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")]
        hours, minutes, seconds = (parts + [0, 0, 0])[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts[:3]
    return days * 24 * 60 + hours * 60 + minutes + seconds // 60


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions from ``sinfo --noheader --Node --format=SINFO_FORMAT`` (the default partition ends in ``*``)."""
    partitions: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 7:
            raise ValueError(f"unexpected sinfo line (expected 7 '|'-separated fields): {line!r}")
        pname, node, gres, cpus, mem, limit, avail = (f.strip() for f in fields)
        default = pname.endswith("*")
        pname = pname.rstrip("*")
        p = partitions.setdefault(pname, Partition(pname))
        p.default = p.default or default
        p.available = avail.lower() == "up"
        p.max_time_min = time_limit_minutes(limit)
        p.nodes.append(Node(node, gres_gpus(gres), int(re.sub(r"\D", "", cpus) or 0),
                            int(re.sub(r"\D", "", mem) or 0)))
    return partitions


def query_partitions(sinfo: str = "sinfo", timeout_s: float = 60) -> dict[str, Partition]:
    """The cluster's partitions, from ``sinfo``; ClusterError if it cannot be asked."""
    exe = shutil.which(sinfo)
    if exe is None:
        raise ClusterError([f"`{sinfo}` is not on PATH: run snakemake with the SLURM profile on a node of the "
                            "cluster (where sinfo and sbatch work)"])
    try:
        out = subprocess.run([exe, "--noheader", "--Node", f"--format={SINFO_FORMAT}"], capture_output=True,
                             text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ClusterError([f"`sinfo` did not answer within {timeout_s:g} s: is slurmctld reachable?"]) from None
    if out.returncode != 0:
        raise ClusterError([f"`sinfo` failed (exit {out.returncode}): {out.stderr.strip() or out.stdout.strip()}"])
    partitions = parse_sinfo(out.stdout)
    if not partitions:
        raise ClusterError(["`sinfo` lists no partition: is this node part of a SLURM cluster?"])
    return partitions


# --------------------------------------------------------------------------------------------- checking
def check_requests(requests: list[JobRequest], partitions: dict[str, Partition]) -> list[str]:
    """One line per request the cluster cannot satisfy, naming the setting and what is allowed."""
    problems = []
    names = ", ".join(sorted(partitions)) or "none"
    default = next((p for p in partitions.values() if p.default), None)
    for r in requests:
        if r.partition is not None and r.partition not in partitions:
            problems.append(f"{r.partition_from}: partition {r.partition!r} does not exist on this cluster; "
                            f"partitions: {names}")
            continue
        part = partitions[r.partition] if r.partition is not None else default
        if part is None:
            problems.append(f"rule {r.rule}: no slurm_partition is set and the cluster has no default partition; "
                            f"set default-resources: slurm_partition to one of: {names}")
            continue
        where = f"partition {part.name!r}" + ("" if r.partition is not None else " (the cluster's default)")
        if not part.available:
            problems.append(f"{r.partition_from or 'rule ' + r.rule}: {where} is not up (sinfo availability)")
        if r.cpu_by_auto and part.max_gpus:
            problems.append(f"benchmark.device is 'auto', which resolved to the CPU engine on this node (no GPU "
                            f"visible), but the nodes of {where} have GPUs: set benchmark.device to 'cuda' (and "
                            f"benchmark.num_devices to the GPUs per node, at most {part.max_gpus}), or to 'cpu' to "
                            f"benchmark vLLM's CPU build there on purpose")
        if r.gpus > part.max_gpus:
            with_gpus = sorted(f"{p.name} ({p.max_gpus})" for p in partitions.values() if p.max_gpus)
            hint = (f"partitions with GPUs (most per node): {', '.join(with_gpus)}" if with_gpus
                    else "no partition of this cluster has GPUs")
            problems.append(f"rule {r.rule} asks for {r.gpus} GPU(s) per job ({r.gpus_from}) but the nodes of "
                            f"{where} have at most {part.max_gpus}; {hint}")
        if r.mem_mb is not None and r.mem_mb > part.max_memory_mb:
            problems.append(f"rule {r.rule} asks for mem_mb={r.mem_mb} ({r.mem_from}) but the nodes of {where} "
                            f"have at most {part.max_memory_mb} MB")
        if r.cpus is not None and r.cpus > part.max_cpus:
            problems.append(f"rule {r.rule} asks for {r.cpus} CPUs per job ({r.cpus_from}) but the nodes of "
                            f"{where} have at most {part.max_cpus}")
        if r.runtime_min is not None and part.max_time_min is not None and r.runtime_min > part.max_time_min:
            problems.append(f"rule {r.rule} asks for runtime={r.runtime_min} min ({r.runtime_from}) but {where} "
                            f"allows at most {part.max_time_min} min (the job would stay pending)")
    return problems


def max_devices_requested(config: dict) -> tuple[int, str]:
    """The most devices (TP x PP) any benchmark of this search can ask for, and the candidate that does: the
    vLLM default (with the fixed engine args) and every valid configuration of the space."""
    from ..engine_args import devices_used
    from ..records import VLLM_DEFAULT, candidate_name
    from ..search.plan import platform_for, valid_and_skipped

    fixed = config.get("engine_args", {}) or {}
    best, who = devices_used(fixed), VLLM_DEFAULT
    _, valid, _ = valid_and_skipped(config, platform_for(config))
    for c in valid:
        n = devices_used({**fixed, **c})
        if n > best:
            best, who = n, candidate_name(c)
    return best, who


# --------------------------------------------------------------------------------------------- Snakemake glue
def _setting(resource, *args):
    """The value of a Snakemake resource (a Resource, a plain value or a function of the wildcards); None when
    unset or when it can only be computed for a job (it needs a proposal)."""
    if resource is None:
        return None
    evaluate = getattr(resource, "evaluate", None)
    if evaluate is not None:  # snakemake.resources.Resource
        if resource.is_evaluable():
            try:
                resource = evaluate(*args, input=[], threads=1, attempt=1)
            except Exception:
                raw = getattr(resource, "raw", None)
                return raw if isinstance(raw, (int, str)) and not callable(raw) else None
        return resource.value
    if callable(resource):
        try:
            return resource(*args)
        except Exception:
            return None
    return resource


def _lookup(mapping, key):
    if mapping is None:
        return None
    try:
        return mapping[key] if key in mapping else None
    except TypeError:
        return None


def _int(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def requests_from_workflow(workflow, config: dict, rules=None) -> tuple[list[JobRequest], list[str]]:
    """The requests of the submitted rules (``rules``; default: every rule that is not a local rule) as this run
    would make them: ``set-resources`` (per rule) over the rule's own ``resources`` over ``default-resources``.
    Also returns config problems found on the way."""
    from ..hardware import resolve_device, visible_gpu_indices

    settings = workflow.resource_settings
    overwrite = getattr(settings, "overwrite_resources", None) or {}
    defaults = getattr(settings, "default_resources", None)
    problems: list[str] = []
    bench = config["benchmark"]
    device = resolve_device(bench["device"])
    if bench["device"] == "cuda" and bench["num_devices"] == "auto" and not visible_gpu_indices():
        problems.append("benchmark.num_devices is 'auto' but this node (where snakemake plans the search) sees no "
                        "GPU, so every candidate would be skipped: set benchmark.num_devices to the GPUs per node "
                        "of the benchmark partition")
    if rules is None:
        rules = [r.name for r in workflow.rules if not workflow.is_local(r)]
    requests = []
    for name in rules:
        try:
            rule = workflow.get_rule(name)
        except Exception:
            continue
        own = getattr(rule, "resources", None) or {}
        per_rule = _lookup(overwrite, name) or {}

        def pick(key, _own=own, _per_rule=per_rule, _name=name):
            default = _setting(_lookup(defaults, key), None)
            for source, mapping in ((f"set-resources: {_name}: {key}", _per_rule),
                                    (f"rule {_name}'s resources: {key}", _own),
                                    (f"default-resources: {key}", defaults)):
                value = _setting(_lookup(mapping, key), None)
                if value is not None and value != "":
                    if mapping is _own and value == default:  # Snakemake copies the defaults into the rule
                        source = f"default-resources: {key}"
                    return value, source
            return None, ""

        r = JobRequest(rule=name)
        partition, r.partition_from = pick("slurm_partition")
        r.partition = str(partition) if partition is not None else None
        gpus, source = pick("gpu")
        if _int(gpus) is not None and source.startswith("set-resources"):
            r.gpus, r.gpus_from = _int(gpus), source
        elif device == "cuda" and (name == "benchmark" or (name == "profile" and config["profile"]["enabled"])):
            r.gpus, who = max_devices_requested(config)
            r.gpus_from = (f"TP x PP of candidate {who}, the largest of the search space allowed by "
                           f"benchmark.num_devices={bench['num_devices']}")
        elif _int(gpus):
            r.gpus, r.gpus_from = _int(gpus), source
        gres, source = pick("gres")
        if gres and "gpu" in str(gres):
            r.gpus, r.gpus_from = max(r.gpus, gres_gpus(str(gres))), source
        mem, r.mem_from = pick("mem_mb")
        r.mem_mb = _int(mem)
        cpt, cpt_from = pick("cpus_per_task")
        cpg, cpg_from = pick("cpus_per_gpu")
        if _int(cpt) and _int(cpt) > 0:
            r.cpus, r.cpus_from = _int(cpt), cpt_from
        elif r.gpus and _int(cpg) and _int(cpg) > 0:
            r.cpus, r.cpus_from = _int(cpg) * r.gpus, f"{cpg_from} x {r.gpus} GPUs"
        runtime, r.runtime_from = pick("runtime")
        r.runtime_min = _int(runtime)
        r.cpu_by_auto = name == "benchmark" and device == "cpu" and bench["device"] == "auto"
        requests.append(r)
    return requests, problems


def executor_name(workflow) -> str | None:
    plugin = getattr(workflow, "executor_plugin", None)
    return getattr(plugin, "name", None)


def local_gpu_cap(workflow, config: dict, count: int | None = None) -> int | None:
    """On a local run with CUDA benchmarks, cap the ``gpu`` resource at the GPUs visible here (``count``: that
    many instead), unless the user set ``--resources gpu=N``, so concurrent benchmarks never ask for more GPUs
    than exist. Returns the cap, or None when none was set."""
    from ..hardware import resolve_device, visible_gpu_indices

    if "gpu" in workflow.global_resources or resolve_device(config["benchmark"]["device"]) != "cuda":
        return None
    cap = len(visible_gpu_indices()) if count is None else int(count)
    workflow.register_resource("gpu", cap)
    # In onstart the scheduler exists already and only limits the resources it knew when it was made
    # (Snakemake 9): add the cap to those too. tests/test_cluster.py checks that two gpu=1 jobs then run one
    # after the other.
    scheduler = getattr(workflow, "scheduler", None)
    limits = getattr(scheduler, "global_resources", None)
    if isinstance(limits, dict):
        limits["gpu"] = cap
    return cap


def preflight(workflow, config: dict, sinfo: str = "sinfo") -> None:
    """Called from ``onstart:``. SLURM executor: check the submitted rules' requests against ``sinfo`` and raise
    :class:`ClusterError` listing every problem. Local executor: the ``gpu`` cap (:func:`local_gpu_cap`)."""
    name = executor_name(workflow)
    if name == "local":
        local_gpu_cap(workflow, config)
        return
    if name != "slurm":
        return
    requests, problems = requests_from_workflow(workflow, config)
    problems += check_requests(requests, query_partitions(sinfo))
    if problems:
        raise ClusterError(problems)
