"""The run against vLLM's own default configuration: each objective's change, per front configuration, as text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..records import VLLM_DEFAULT, metric_label
from .energy import energy_qualifier
from .tables import highlighted_configs, in_words


def default_row(obs: pd.DataFrame) -> pd.Series | None:
    d = obs[obs["is_vllm_default"].astype(str).str.lower() == "true"] if "is_vllm_default" in obs else obs.iloc[0:0]
    if d.empty:
        d = obs[obs["candidate"] == VLLM_DEFAULT]
    return None if d.empty else d.iloc[0]


def roles(pareto: pd.DataFrame, objectives: list[dict]) -> dict[str, str]:
    """Role -> candidate: ``best <metric>`` for each objective and ``knee``."""
    return highlighted_configs(pareto, objectives)


def role_label(role: str) -> str:
    """``best output_tokens_per_s`` -> ``best output tokens/s``; ``knee`` -> ``knee of the front``."""
    if role.startswith("best "):
        return "best " + metric_label(role[5:])
    return "knee of the front" if role == "knee" else role


def improvement(value: float, reference: float, direction: str) -> float:
    """How much better ``value`` is than ``reference`` in %, positive = better for the objective's direction."""
    change = 100.0 * (value / reference - 1.0)
    return change if direction == "maximize" else -change


def default_comparison(obs: pd.DataFrame, pareto: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """One row per highlighted configuration of the front: its objectives and its improvement over vLLM's
    default configuration in % (positive = better), when the default ran successfully."""
    d = default_row(obs)
    d_ok = d is not None and d["status"] == "ok"
    rows = []
    for role, name in roles(pareto, objectives).items():
        r = pareto[pareto["candidate"] == name].iloc[0]
        row = {"role": role, "candidate": name}
        for o in objectives:
            row[o["metric"]] = float(r[o["metric"]])
            row[f"vs default % {o['metric']}"] = (improvement(float(r[o["metric"]]), float(d[o["metric"]]),
                                                              o["direction"]) if d_ok else np.nan)
        row["energy_provenance"] = r.get("energy_provenance", "")
        row["default_energy_provenance"] = d.get("energy_provenance", "") if d is not None else ""
        rows.append(row)
    cols = ["role", "candidate"] + [c for o in objectives for c in (o["metric"], f"vs default % {o['metric']}")] \
        + ["energy_provenance", "default_energy_provenance"]
    return pd.DataFrame(rows, columns=cols)


def _better_worse(pct: float, metric: str, direction: str) -> str:
    label = metric_label(metric)
    if abs(pct) < 0.05:
        return f"the same {label}"
    if direction == "maximize":
        return f"{abs(pct):.1f}% {'higher' if pct > 0 else 'lower'} {label}"
    return f"{abs(pct):.1f}% {'lower' if pct > 0 else 'higher'} {label}"


def default_text(obs: pd.DataFrame, pareto: pd.DataFrame, objectives: list[dict]) -> list[str]:
    """Paragraphs on how the front compares with vLLM's default configuration."""
    d = default_row(obs)
    if pareto.empty:
        return ["No configuration ran successfully: there is no front to compare with vLLM's default."]
    if d is None:
        return [f"vLLM's default configuration ({VLLM_DEFAULT}) was not benchmarked in this run, so the front "
                "cannot be compared with it."]
    if d["status"] != "ok":
        return [f"vLLM's default configuration ({VLLM_DEFAULT}) failed ({d.get('failure_kind', '')}: "
                f"{d.get('failure_reason', '')}), so the front cannot be compared with it."]
    q = energy_qualifier(obs)
    vals = ", ".join(f"{float(d[o['metric']]):.4g} {metric_label(o['metric'])}" for o in objectives)
    out = [f"vLLM's default configuration reached {vals} (energy {q})."]
    if d["candidate"] in set(pareto["candidate"]):
        out.append("The default is itself on the Pareto front: no evaluated configuration beats it on every "
                   "objective at once.")
    comp = default_comparison(obs, pareto, objectives)
    seen = {}
    for _, r in comp.iterrows():
        seen.setdefault(r["candidate"], []).append(r["role"])
    for name, rs in seen.items():
        r = comp[comp["candidate"] == name].iloc[0]
        if name == d["candidate"]:
            out.append(f"The {', '.join(role_label(x) for x in rs)} configuration is vLLM's default itself.")
            continue
        diffs = in_words([_better_worse(r[f"vs default % {o['metric']}"], o["metric"], o["direction"])
                          for o in objectives])
        out.append(f"The configuration {name} ({', '.join(role_label(x) for x in rs)}) has {diffs} than vLLM's "
                   "default.")
    elsewhere = [n for n in seen if n != d["candidate"] and machine_of(obs[obs["candidate"] == n].iloc[0]) != machine_of(d)]
    if elsewhere:
        out.append(f"Caution: {', '.join(elsewhere)} and vLLM's default were measured on different hardware (host or "
                   "GPU UUIDs differ, e.g. a search resumed on another node): these differences mix configuration "
                   "and machine. The confirmation stage compares on one machine.")
    return out


def machine_of(row: pd.Series) -> tuple:
    """(host, GPU UUIDs) of an observation row; empty where the row predates these columns."""
    return tuple("" if pd.isna(row.get(k, "")) else str(row.get(k, "")) for k in ("hostname", "gpu_uuids"))
