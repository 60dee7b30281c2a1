"""Which configurations are profiled: the roles of the Pareto front (energy- and throughput-optimal, knee) and vLLM's default."""

from __future__ import annotations

import pandas as pd

from ..records import VLLM_DEFAULT, Record, candidate_name
from ..report.tables import highlighted_configs

#: The roles ``profile.configs`` may name. An entry may also be a mapping of engine args (e.g.
#: ``{tensor_parallel_size: 2}``): that configuration is profiled as well (role ``requested``), benchmarked in the
#: search or not (then the profiled run's own throughput is the one compared).
ROLES = ("energy_optimal", "throughput_optimal", "knee", "vllm_default")
ROLE_LABELS = {"energy_optimal": "energy-optimal", "throughput_optimal": "throughput-optimal", "knee": "knee",
               "vllm_default": "vLLM default", "requested": "requested"}


def role_candidates(pareto: pd.DataFrame, objectives: list[dict]) -> dict[str, str]:
    """Role -> candidate name for the roles of :data:`ROLES` that the front defines (vLLM's default always)."""
    best = highlighted_configs(pareto, objectives) if len(pareto) else {}
    out = {}
    for o in objectives:
        role = "energy_optimal" if o["metric"].startswith("joules") else "throughput_optimal"
        if f"best {o['metric']}" in best and role not in out:
            out[role] = best[f"best {o['metric']}"]
    if "knee" in best:
        out["knee"] = best["knee"]
    out["vllm_default"] = VLLM_DEFAULT
    return out


def select_configs(pareto: pd.DataFrame, records: list[Record], objectives: list[dict],
                   roles: list) -> list[dict]:
    """The configurations to profile, one entry per distinct candidate in the order of ``roles`` (role names, or
    mappings of engine args): ``{"candidate", "roles", "config", "iteration", "record"}``. A role the run does
    not define (e.g. no successful configuration) is an entry with ``candidate`` None."""
    by_role = role_candidates(pareto, objectives)
    by_name = {}
    for r in records:
        if r.ok or r.candidate not in by_name:
            by_name[r.candidate] = r
    out: list[dict] = []
    for role in roles:
        explicit = dict(role) if isinstance(role, dict) else None
        if explicit is not None:
            name, role = candidate_name(explicit), "requested"
        else:
            name = by_role.get(role)
        if name is None:
            out.append({"candidate": None, "roles": [role], "config": None, "iteration": None, "record": None})
            continue
        same = next((e for e in out if e["candidate"] == name), None)
        if same:
            same["roles"].append(role)
            continue
        rec = by_name.get(name)
        config = rec.config if rec else (explicit if explicit is not None else ({} if name == VLLM_DEFAULT
                                                                                    else None))
        out.append({"candidate": name, "roles": [role], "config": config,
                    "iteration": rec.iteration if rec else None, "record": rec})
    return out


def parallel_sizes(entry: dict, fixed: dict | None = None) -> tuple[int, int]:
    """(TP, PP) of a selected configuration: as vLLM resolved them, else its engine args, else 1."""
    rec = entry.get("record")
    args = {**(fixed or {}), **(entry.get("config") or {}), **(rec.engine_args if rec else {}),
            **(rec.resolved_engine_args if rec else {})}
    return int(args.get("tensor_parallel_size") or 1), int(args.get("pipeline_parallel_size") or 1)
