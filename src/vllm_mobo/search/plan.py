"""The search as the pipeline runs it: one call per iteration, from the config and every result so far to the
next iteration's candidates (or the decision to stop), and the table of configurations skipped as invalid."""

from __future__ import annotations

import pandas as pd

from .. import hardware
from ..config import modelled_slo_metrics
from ..records import Record, candidate_name
from .optimizer.noise import log_noise_variances
from .optimizer.observations import to_observations
from .optimizer.propose import propose_batch
from .space import Platform, SearchSpace


def platform_for(config: dict) -> Platform:
    bench = config["benchmark"]
    device = hardware.resolve_device(bench["device"])
    max_len = config["workload"].get("max_model_len") or config["workload"]["model"].get("architecture", {}).get(
        "max_position_embeddings")
    return Platform(device=device, num_devices=hardware.resolve_num_devices(bench["num_devices"], device),
                    max_model_len=max_len)


def valid_and_skipped(config: dict, platform: Platform) -> tuple[SearchSpace, list[dict], pd.DataFrame]:
    space = SearchSpace(config["search_space"])
    valid, skipped = space.split_valid(platform, config.get("engine_args"))
    table = pd.DataFrame(
        [{"candidate": candidate_name(c), **c, "reason": reason} for c, reason in skipped],
        columns=["candidate", *space.keys, "reason"],
    )
    return space, valid, table


def noise_option(config: dict) -> dict | None:
    """``optimizer.noise`` as :func:`propose_batch` takes it (variances on the log scale, :mod:`.optimizer.noise`):
    per objective in order (None: inferred) and per modelled SLO; None when no noise is given."""
    setting = config["optimizer"].get("noise")
    if setting is None:
        return None
    objectives, slos = [o["metric"] for o in config["objectives"]], modelled_slo_metrics(config)
    var = log_noise_variances(setting, objectives + slos)
    return {"objectives": [var.get(m) for m in objectives], "constraints": {m: var[m] for m in slos if m in var}}


def plan_iteration(config: dict, iteration: int, records: list[Record | dict], history: list[dict],
                   platform: Platform, allowed: set[str] | None = None) -> dict:
    """The proposal for ``iteration``: ``records`` are the metrics of every earlier candidate, ``history`` the
    earlier proposals (for the EHVI stop rule). Adds the platform and stop decision to :func:`propose_batch`'s.
    ``allowed``: candidate names the search may choose among (a partial replay table's measured rows); None: every
    valid configuration.

    The stop rule (``stop_relative_ehvi`` > 0): stop once the best EHVI x P(feasible) over the current hypervolume
    (``relative_ehvi``; for ``ehvi-energy`` taken before the division by the expected cost) stayed below the
    threshold for ``stop_patience`` consecutive iterations. Only ``qlognehvi``, ``ehvi`` and ``ehvi-energy`` report
    it (``qlognehvi``: an MC estimate of the noisy EHVI x P(feasible)); the other
    strategies (``parego``, ``random``, ``sobol``, ``nsga2``, ``optuna``) have no EHVI and run to the budget."""
    opt = config["optimizer"]
    space, valid, _ = valid_and_skipped(config, platform)
    if allowed is not None:
        valid = [c for c in valid if candidate_name(c) in allowed]
    proposal = propose_batch(
        space, valid, to_observations(records, config["objectives"]),
        [o["direction"] for o in config["objectives"]],
        iteration=iteration, initial_design=opt["initial_design"], include_vllm_default=opt["include_vllm_default"],
        batch_size=opt["batch_size"], budget=opt["budget"], seed=opt["seed"], strategy=opt["strategy"],
        parego_rho=opt.get("parego_rho", 0.05), cost_cooling=opt.get("cost_cooling", True),
        noise=noise_option(config),
    )
    proposal["platform"] = {"device": platform.device, "num_devices": platform.num_devices,
                            "max_model_len": platform.max_model_len}
    proposal["space_size"], proposal["valid_size"] = len(space), len(valid)
    threshold, patience = opt["stop_relative_ehvi"], opt["stop_patience"]
    if threshold > 0 and not proposal["stop"] and proposal["relative_ehvi"] is not None:
        recent = [p.get("relative_ehvi") for p in history[-(patience - 1):]] if patience > 1 else []
        window = recent + [proposal["relative_ehvi"]]
        if len(window) == patience and all(r is not None and r < threshold for r in window):
            proposal.update(stop=True, candidates=[],
                            reason=f"converged: best EHVI below {threshold:g} of the hypervolume for {patience} iterations")
    return proposal
