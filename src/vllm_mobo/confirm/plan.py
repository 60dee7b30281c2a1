"""Which configurations the confirmation stage measures again, and in which order.

:func:`select` picks them from the search's Pareto set (the knee and the best configuration of each objective
first, then the rest of the front by the first objective, at most ``max_configs``) and adds vLLM's default
configuration; :func:`schedule` interleaves the repeats (A B C A B C ...) so that drift of the machine over the
stage spreads over every configuration instead of biasing the one measured last.
"""

from __future__ import annotations

import pandas as pd

from ..records import VLLM_DEFAULT, Record, record_index
from ..report.tables import highlighted_configs


def select(pareto: pd.DataFrame, records: list[Record], objectives: list[dict], max_configs: int,
           include_vllm_default: bool = True) -> list[dict]:
    """``[{"name", "config", "roles"}]``: the front configurations to confirm, then vLLM's default (``config``
    ``{}``, also when the search never measured it). ``roles`` lists ``knee``/``best <metric>``/``front``/
    ``vllm default`` for the reports."""
    index = record_index(records)
    roles: dict[str, list[str]] = {}
    for role, name in highlighted_configs(pareto, objectives).items():
        roles.setdefault(name, []).append(role)
    ordered = sorted(roles, key=lambda n: (0 if "knee" in roles[n] else 1))
    ordered += [n for n in pareto["candidate"] if n not in roles] if len(pareto) else []
    chosen = []
    for name in ordered:
        if name == VLLM_DEFAULT or len(chosen) >= max_configs:
            continue
        row = pareto[pareto["candidate"] == name].iloc[0]
        chosen.append({"name": name, "config": dict(index[(int(row["iteration"]), name)].config),
                       "roles": roles.get(name, ["front"])})
    if include_vllm_default:
        chosen.append({"name": VLLM_DEFAULT, "config": {}, "roles": ["vllm default"] + roles.get(VLLM_DEFAULT, [])})
    return chosen


def schedule(configs: list[dict], repeats: int) -> list[tuple[int, dict]]:
    """(repeat, configuration) in measuring order: every configuration once, then every one again, ..."""
    return [(r, c) for r in range(repeats) for c in configs]
