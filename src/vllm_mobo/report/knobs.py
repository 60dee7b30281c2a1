"""Which knobs matter: marginal effects of every search-space knob on every objective, ranked, as text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..records import metric_label
from .energy import energy_qualifier
from .tables import feasible_rows, in_words

#: Few successful evaluations: marginal means of a knob then mix the effects of the other knobs.
FEW_OBSERVATIONS = 8


def knob_columns(obs: pd.DataFrame, space_keys) -> list[str]:
    """The search-space knobs the observations have a column for (user-defined spaces may name others)."""
    return [k for k in space_keys if k in obs.columns and obs[k].notna().any()]


def _value_label(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def knob_effects(obs: pd.DataFrame, space_keys, objectives: list[dict]) -> pd.DataFrame:
    """Marginal means: for each knob and each of its evaluated values, the mean of each objective over the
    successful runs with that value (and how many runs that is)."""
    ok = feasible_rows(obs)
    rows = []
    for knob in knob_columns(ok, space_keys):
        sub = ok[ok[knob].notna()].copy()
        sub["_value"] = sub[knob].map(_value_label)
        for value in sorted(sub["_value"].unique(), key=_sort_key):
            part = sub[sub["_value"] == value]
            row = {"knob": knob, "value": value, "runs": len(part)}
            for o in objectives:
                row[f"mean {o['metric']}"] = float(part[o["metric"]].mean())
            row["energy"] = energy_qualifier(obs)
            rows.append(row)
    cols = ["knob", "value", "runs"] + [f"mean {o['metric']}" for o in objectives] + ["energy"]
    return pd.DataFrame(rows, columns=cols)


def knob_importance(obs: pd.DataFrame, space_keys, objectives: list[dict]) -> pd.DataFrame:
    """One row per knob: how far the marginal means of its values lie apart, in % of the overall mean of each
    objective, and the value with the best mean. Knobs evaluated at a single value have no spread (NaN)."""
    ok = feasible_rows(obs)
    effects = knob_effects(obs, space_keys, objectives)
    rows = []
    for knob in knob_columns(ok, space_keys):
        eff = effects[effects["knob"] == knob]
        row = {"knob": knob, "values evaluated": len(eff)}
        spreads = []
        for o in objectives:
            col = f"mean {o['metric']}"
            overall = float(ok[o["metric"]].mean())
            if len(eff) >= 2 and overall:
                spread = 100.0 * (eff[col].max() - eff[col].min()) / abs(overall)
                best = eff.loc[eff[col].idxmax() if o["direction"] == "maximize" else eff[col].idxmin(), "value"]
            else:
                spread, best = np.nan, (eff["value"].iloc[0] if len(eff) else "")
            row[f"spread % {o['metric']}"] = spread
            row[f"best value for {o['metric']}"] = best
            spreads.append(spread)
        row["max spread %"] = np.nanmax(spreads) if not all(np.isnan(spreads)) else np.nan
        row["energy"] = energy_qualifier(obs)
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.sort_values("max spread %", ascending=False, na_position="last").reset_index(drop=True)


def knob_text(obs: pd.DataFrame, space_keys, objectives: list[dict]) -> list[str]:
    """Paragraphs on which knobs matter, from the marginal means."""
    ok = feasible_rows(obs)
    imp = knob_importance(obs, space_keys, objectives)
    missing = [k for k in space_keys if k not in knob_columns(ok, space_keys)]
    out = []
    if ok.empty:
        return ["No configuration ran successfully, so nothing can be said about the knobs."]
    if missing:
        out.append("Knobs of the search space without values in the successful runs (not shown): "
                   + ", ".join(missing) + ".")
    if imp.empty or imp["max spread %"].isna().all():
        first = "best value for " + objectives[0]["metric"]
        varied = "" if imp.empty else " (each knob was evaluated at a single value: " \
            + ", ".join(f"{r['knob']}={r[first]}" for _, r in imp.iterrows()) + ")"
        out.append(f"With {len(ok)} successful run(s), no knob was evaluated at two or more values{varied}, so "
                   "their effects cannot be separated yet.")
        return out
    ranked = imp[imp["max spread %"].notna()]
    parts = []
    for _, r in ranked.iterrows():
        effs = []
        for o in objectives:
            spread, best = r["spread % " + o["metric"]], r["best value for " + o["metric"]]
            effs.append(f"{spread:.1f}% of the mean {metric_label(o['metric'])} (best: {best})")
        parts.append(f"{r['knob']} moves " + in_words(effs))
    out.append("Ranked by how far the means of their values lie apart, the knobs that matter most are: "
               + "; ".join(parts) + ".")
    flat = imp[imp["max spread %"].isna()]["knob"].tolist()
    if flat:
        out.append("Evaluated at a single value only (no effect measurable): " + ", ".join(flat) + ".")
    if len(ok) < FEW_OBSERVATIONS:
        out.append(f"These are marginal means over {len(ok)} successful run(s): with so few, each mean mixes in the "
                   "effects of the other knobs, so the ranking is indicative only.")
    return out
