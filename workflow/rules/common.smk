# Imports, config validation and the input functions that unroll the search with checkpoints.

import functools
import json
from pathlib import Path

from snakemake.utils import min_version

from vllm_mobo.hardware import resolve_device
from vllm_mobo.config import load_schema, validate_config
from vllm_mobo.resources import resource
from vllm_mobo.engine_args import devices_used
from vllm_mobo.slurm.preflight import max_devices_requested

min_version("9.0")


# Validate before any job starts; defaults from the schema are filled in. A malformed config stops here with
# one line per problem naming the key and what is allowed.
config.update(validate_config(config, load_schema(workflow.source_path("../schemas/config.schema.yaml"))))

RESULTS = f"results/{config['run']}"
LOGS = f"logs/{config['run']}"
MODEL_DIR = f"{RESULTS}/model"


@functools.cache
def device():
    """Where benchmarks run (``auto`` asks NVML, so only when a job needs it, not at every parse). On a cluster
    whose head node has no GPU, set benchmark.device: cuda explicitly."""
    return resolve_device(config["benchmark"]["device"])


wildcard_constraints:
    iteration=r"\d+",
    candidate=r"[A-Za-z0-9][A-Za-z0-9_.=-]*",


def read_proposal(iteration):
    """The proposal of an iteration, once its checkpoint has run (else Snakemake re-plans after it)."""
    path = checkpoints.propose.get(iteration=iteration).output.proposal
    with open(path) as fh:
        return json.load(fh)


def metrics_paths(iteration):
    return [
        f"{RESULTS}/iter_{iteration}/{c['name']}/metrics.json" for c in read_proposal(iteration)["candidates"]
    ]


def model_inputs(wildcards=None):
    """The model directory rule's output for architecture models; nothing for a model path."""
    return [f"{MODEL_DIR}/config.json"] if "architecture" in config["workload"]["model"] else []


def propose_inputs(wildcards):
    """Iteration i's proposal needs every result of iterations 0..i-1 and the earlier proposals."""
    i = int(wildcards.iteration)
    inputs = {"proposals": [], "metrics": []}
    for j in range(i):
        inputs["proposals"].append(f"{RESULTS}/iter_{j}/proposal.json")
        inputs["metrics"] += metrics_paths(j)
    return inputs


def final_iteration():
    """The last iteration that proposed candidates: walk the checkpoints until one says stop."""
    i = 0
    while not read_proposal(i)["stop"]:
        i += 1
    return i - 1


def all_metrics(wildcards=None):
    return [p for j in range(final_iteration() + 1) for p in metrics_paths(j)]


def all_proposals(wildcards=None):
    return [f"{RESULTS}/iter_{j}/proposal.json" for j in range(final_iteration() + 2)]


def candidate_devices(wildcards):
    """GPUs (or CPU ranks) a candidate occupies: TP x PP, with the fixed engine args."""
    for c in read_proposal(wildcards.iteration)["candidates"]:
        if c["name"] == wildcards.candidate:
            return devices_used({**config.get("engine_args", {}), **c["config"]})
    raise ValueError(f"candidate {wildcards.candidate} is not in iteration {wildcards.iteration}'s proposal")


def benchmark_gpus(wildcards):
    """The ``gpu`` resource of a benchmark: its TP x PP on CUDA, none on the CPU build."""
    return candidate_devices(wildcards) if device() == "cuda" else 0


def profile_gpus(wildcards):
    """GPUs the profile job holds (it profiles one configuration at a time): the most any configuration of the
    search can use."""
    if device() != "cuda" or not config["profile"]["enabled"]:
        return 0
    return max_devices_requested(config)[0]


# --- Cluster preflight (vllm_mobo.slurm.preflight) -----------------------------------------------------------------
# Before the first job: with the SLURM executor, the partition, GPU (TP x PP), memory, CPU and time requests of the
# submitted rules are checked against `sinfo`, and a mismatch stops the run with one line per problem naming the
# setting; locally, the `gpu` resource is capped at the GPUs present (unless --resources gpu=N is given).
# Snakemake keeps one onstart handler: add other start-up steps here rather than in a second `onstart:`.
# First, before anything is measured: stop the vLLM processes an interrupted earlier run of this host left behind
# (e.g. after `kill -9` of Snakemake), found from the attempt files in results/<run>/.attempts (measure/supervisor.py).
from snakemake.logging import logger
from vllm_mobo.engine_args import check_config as check_engine_args
from vllm_mobo.measure.supervisor import stop_leftovers
from vllm_mobo.slurm.preflight import preflight as cluster_preflight


onstart:
    stop_leftovers(f"{RESULTS}/.attempts", log=logger.info)
    logger.info(check_engine_args(config, cache_dir=".snakemake/vllm-mobo"))
    cluster_preflight(workflow, config)
