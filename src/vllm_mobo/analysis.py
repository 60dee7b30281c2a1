"""Analysis of a finished run, shared by the notebook, the LaTeX report, the exports and the tests.

Every function takes the run's tables (``observations.csv``, ``pareto.csv``) and/or its ``metrics.json`` records
and returns a table or text. Text is generated from the data: sentences are chosen by what the data say, numbers
come from the tables, and energy is always called *estimated* when any source of it was estimated.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .io import read_json
from .results import feasible_rows, highlighted_configs
from .space import VLLM_DEFAULT

SOURCES = ("gpu", "cpu", "ram")

METRIC_LABELS = {
    "output_tokens_per_s": "output tokens/s",
    "total_tokens_per_s": "total tokens/s",
    "requests_per_s": "requests/s",
    "joules_per_output_token": "J per output token",
    "joules_per_token": "J per token",
}

#: Online-mode latency columns: ``ttft_ms_p50``, ``tpot_ms_p99``, ``e2el_ms_p99``, ``itl_ms_p95`` ...
LATENCY_COLUMN = re.compile(r"^(?P<metric>[a-z][a-z0-9]*)_ms_p(?P<percentile>\d+(?:\.\d+)?)$")

#: Few successful evaluations: marginal means of a knob then mix the effects of the other knobs.
FEW_OBSERVATIONS = 8


# ---------------------------------------------------------------------------------------------------- loading


def load_records(paths) -> list[dict]:
    """The ``metrics.json`` records of a run, in the order given."""
    return [read_json(p) for p in paths]


def record_index(records: list[dict]) -> dict[tuple[int, str], dict]:
    return {(int(r["iteration"]), r["candidate"]): r for r in records}


def record_for(records: list[dict], row) -> dict:
    """The ``metrics.json`` record of an observation row (a Series or dict with iteration and candidate)."""
    return record_index(records)[(int(row["iteration"]), row["candidate"])]


def enrich_observations(obs: pd.DataFrame, records: list[dict], keys) -> pd.DataFrame:
    """``obs`` with a column for each engine argument of ``keys`` that it lacks (or has empty), filled from the
    engine arguments vLLM resolved for each run (``resolved_engine_args`` of ``metrics.json``): e.g. the tensor and
    pipeline parallel sizes of a run whose search space did not include them. Rows without a record stay empty."""
    out = obs.copy()
    index = record_index(records)
    for key in keys:
        if key in out.columns and out[key].notna().all():
            continue
        values = []
        for i, (_, row) in enumerate(out.iterrows()):
            current = out[key].iloc[i] if key in out.columns else np.nan
            if pd.notna(current):
                values.append(current)
                continue
            rec = index.get((int(row["iteration"]), row["candidate"])) or {}
            resolved = {**(rec.get("engine_args") or {}), **(rec.get("resolved_engine_args") or {})}
            values.append(resolved.get(key, np.nan))
        out[key] = values
    return out


def ok_rows(obs: pd.DataFrame) -> pd.DataFrame:
    """Observations that ran and met their SLOs: what the analysis compares."""
    return feasible_rows(obs)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


# ------------------------------------------------------------------------------------------------- provenance


def estimated_sources(obs: pd.DataFrame) -> list[str]:
    """Energy sources whose joules were estimated in at least one successful run."""
    ok = ok_rows(obs)
    return [s for s in SOURCES if (ok.get(f"energy_{s}_provenance", pd.Series(dtype=object)) == "estimated").any()]


def measured_sources(obs: pd.DataFrame) -> list[str]:
    ok = ok_rows(obs)
    return [s for s in SOURCES if (ok.get(f"energy_{s}_provenance", pd.Series(dtype=object)) == "measured").any()]


def energy_qualifier(obs: pd.DataFrame) -> str:
    """``estimated``, ``partly estimated`` or ``measured``: how to call the run's energy numbers."""
    est, meas = estimated_sources(obs), measured_sources(obs)
    if est and not meas:
        return "estimated"
    if est:
        return "partly estimated"
    return "measured" if meas else "unavailable"


# ------------------------------------------------------------------------------------------------------ knobs


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
    ok = ok_rows(obs)
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
    ok = ok_rows(obs)
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
    ok = ok_rows(obs)
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
        parts.append(f"{r['knob']} moves " + " and ".join(effs))
    out.append("Ranked by how far the means of their values lie apart, the knobs that matter most are: "
               + "; ".join(parts) + ".")
    flat = imp[imp["max spread %"].isna()]["knob"].tolist()
    if flat:
        out.append("Evaluated at a single value only (no effect measurable): " + ", ".join(flat) + ".")
    if len(ok) < FEW_OBSERVATIONS:
        out.append(f"These are marginal means over {len(ok)} successful run(s): with so few, each mean mixes in the "
                   "effects of the other knobs, so the ranking is indicative only.")
    return out


# ------------------------------------------------------------------------------------------ vLLM's default


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
        diffs = " and ".join(_better_worse(r[f"vs default % {o['metric']}"], o["metric"], o["direction"])
                             for o in objectives)
        out.append(f"The configuration {name} ({', '.join(role_label(x) for x in rs)}) has {diffs} than vLLM's "
                   "default.")
    return out


# ------------------------------------------------------------------------------------------------------ energy


def energy_by_source(obs: pd.DataFrame) -> pd.DataFrame:
    """Per successful configuration and energy source: joules, joules per output token and provenance."""
    ok = ok_rows(obs)
    rows = []
    for _, r in ok.iterrows():
        for s in SOURCES:
            j = r.get(f"energy_{s}_j", np.nan)
            if pd.isna(j):
                continue
            prov = r.get(f"energy_{s}_provenance", "")
            rows.append({"iteration": int(r["iteration"]), "candidate": r["candidate"], "source": s,
                         "joules": float(j), "joules_per_output_token": float(j) / float(r["output_tokens"]),
                         "provenance": prov if isinstance(prov, str) and prov else "unknown"})
    return pd.DataFrame(rows, columns=["iteration", "candidate", "source", "joules", "joules_per_output_token",
                                       "provenance"])


def energy_methods(records: list[dict]) -> dict[str, tuple[str, str]]:
    """Source -> (candidate, how its energy was obtained): the ``method`` string of the first record having it."""
    out = {}
    for r in records:
        for s in ((r.get("energy") or {}).get("sources") or []):
            out.setdefault(s["source"], (r["candidate"], s.get("method", s.get("provenance", ""))))
    return out


def energy_text(obs: pd.DataFrame, records: list[dict] | None = None) -> list[str]:
    """Paragraphs on where the energy goes, with the provenance of every source."""
    e = energy_by_source(obs)
    if e.empty:
        return ["No energy was recorded for any successful run."]
    total = e.groupby("source")["joules"].sum()
    share = 100.0 * total / total.sum()
    prov = e.groupby("source")["provenance"].agg(lambda s: "/".join(sorted(set(s))))
    order = share.sort_values(ascending=False).index
    parts = [f"{s.upper()} {share[s]:.1f}% ({prov[s]})" for s in order]
    n = e["candidate"].nunique()
    out = [f"Across the {n} successful run(s), the energy splits as: " + ", ".join(parts) + "."]
    absent = [s.upper() for s in SOURCES if s not in total.index]
    if absent:
        out.append("No energy was recorded for " + ", ".join(absent) + " (no such device or meter).")
    est = estimated_sources(obs)
    if est:
        out.append("Every energy number that includes " + ", ".join(s.upper() for s in est)
                   + " is ESTIMATED from a model, not measured; compare configurations with each other, not with "
                   "a power meter.")
    if records:
        methods = energy_methods(records)
        for s in order:
            if s in methods:
                out.append(f"{s.upper()}, e.g. for {methods[s][0]}: {methods[s][1]}.")
    return out


# --------------------------------------------------------------------------------------------------- latency


def latency_columns(obs: pd.DataFrame) -> dict[str, list[tuple[float, str]]]:
    """Online-mode latency metric -> [(percentile, column)], for the columns that hold at least one value."""
    out: dict[str, list[tuple[float, str]]] = {}
    for col in obs.columns:
        m = LATENCY_COLUMN.match(col)
        if m and obs[col].notna().any():
            out.setdefault(m["metric"], []).append((float(m["percentile"]), col))
    return {k: sorted(v) for k, v in sorted(out.items())}


# --------------------------------------------------------------------------------------- hardware & software


def _distinct(records: list[dict], key: str) -> list:
    seen, out = set(), []
    for r in records:
        v = r.get(key)
        s = json.dumps(v, sort_keys=True)
        if v is not None and s not in seen:
            seen.add(s)
            out.append(v)
    return out


def platform_table(records: list[dict]) -> pd.DataFrame:
    """(what, value) rows: device, hardware and software versions of the runs (every distinct value)."""
    rows = []
    for dev in _distinct(records, "device"):
        rows.append(("device", str(dev)))
    for section in ("hardware", "software"):
        for d in _distinct(records, section):
            for k, v in d.items():
                if isinstance(v, list):
                    v = ", ".join(json.dumps(x) if isinstance(x, dict) else str(x) for x in v) or "none"
                if (section + ": " + k, str(v)) not in rows:
                    rows.append((f"{section}: {k}", str(v)))
    return pd.DataFrame(rows, columns=["what", "value"])


# ------------------------------------------------------------------------------------------ vllm serve export


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def serve_args(engine_args: dict) -> list[str]:
    """``vllm serve`` arguments for engine arguments: booleans as ``--x`` / ``--no-x``, dicts and lists as JSON."""
    args = []
    for key, value in engine_args.items():
        if value is None:
            continue
        if isinstance(value, bool):
            args.append(_flag(key) if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            args += [_flag(key), json.dumps(value)]
        else:
            args += [_flag(key), str(value)]
    return args


def serve_command(model: str, engine_args: dict, multiline: bool = False) -> str:
    """A ready ``vllm serve`` command line (shell-quoted)."""
    args = serve_args(engine_args)
    if not multiline:
        return shlex.join(["vllm", "serve", model, *args])
    pairs = [" ".join(map(shlex.quote, pair)) for pair in flag_groups(args)]
    return " \\\n  ".join([f"vllm serve {shlex.quote(model)}", *pairs])


def flag_groups(args: list[str]) -> list[list[str]]:
    """``--flag value`` pairs (and lone ``--flag``s) of a command line, each kept together."""
    groups, i = [], 0
    while i < len(args):
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            groups.append([args[i], args[i + 1]])
            i += 2
        else:
            groups.append([args[i]])
            i += 1
    return groups


def engine_args_yaml(engine_args: dict, header: str = "") -> str:
    """The engine arguments as a ``vllm serve --config`` YAML file (dashed keys, as vLLM's CLI names them)."""
    body = yaml.safe_dump({k.replace("_", "-"): v for k, v in engine_args.items() if v is not None},
                          sort_keys=False, default_flow_style=False)
    head = "".join(f"# {line}\n" for line in header.splitlines())
    return head + body


def serve_model(record: dict, model_dir: str | None) -> str:
    """The model argument of ``vllm serve`` for a record: the model path, or the run's model directory for
    architecture models run with dummy weights."""
    model = record.get("model") or ""
    if model.startswith("architecture"):
        return str(model_dir)
    return model


def pareto_commands(pareto: pd.DataFrame, records: list[dict], model_dir: str | None) -> pd.DataFrame:
    """For every Pareto configuration: its ``vllm serve`` command line."""
    rows = []
    for _, r in pareto.iterrows():
        rec = record_for(records, r)
        rows.append({"candidate": r["candidate"],
                     "command": serve_command(serve_model(rec, model_dir), rec["engine_args"])})
    return pd.DataFrame(rows, columns=["candidate", "command"])


# ------------------------------------------------------------------------------------------------ the search


def search_summary(obs: pd.DataFrame, proposals: list[dict]) -> dict:
    """Evaluations, failures, iterations and the reason the search stopped (from the last proposal)."""
    last = proposals[-1] if proposals else {}
    # The space's sizes as judged by the last proposal that proposed something: a stop proposal (budget reached)
    # needs no validity check, and one written on another machine (a search finished elsewhere) would judge the
    # space against that machine.
    sized = next((p for p in reversed(proposals) if p.get("candidates")), last)
    return {
        "evaluations": len(obs),
        "ok": int((obs["status"] == "ok").sum()) if len(obs) else 0,
        "failed": int((obs["status"] != "ok").sum()) if len(obs) else 0,
        "iterations": int(obs["iteration"].nunique()) if len(obs) else 0,
        "strategy": last.get("strategy", ""),
        "stop_reason": last.get("reason", ""),
        "space_size": sized.get("space_size"),
        "valid_size": sized.get("valid_size"),
    }


def limitations(obs: pd.DataFrame, records: list[dict], space_keys, summary: dict) -> list[str]:
    """What the reader should not conclude from this run, each item following from the data."""
    out = []
    ok = ok_rows(obs)
    est = estimated_sources(obs)
    if est:
        out.append("Energy of " + ", ".join(s.upper() for s in est) + " is estimated from models (CPU time x W per "
                   "core, resident memory x W/GB), not measured: absolute joules are indicative; rankings assume "
                   "the model holds equally for every configuration.")
    if not measured_sources(obs) and not est:
        out.append("No energy source was recorded.")
    if len(ok) < FEW_OBSERVATIONS:
        out.append(f"Only {len(ok)} configuration(s) ran successfully: the front and the knob effects rest on few "
                   "points.")
    if summary.get("valid_size") and summary["evaluations"] < summary["valid_size"]:
        out.append(f"{summary['evaluations']} of {summary['valid_size']} valid configurations were evaluated; "
                   "the front is the best found, not necessarily the true one.")
    counts = obs.groupby(knob_columns(obs, space_keys) or ["candidate"], dropna=False).size() if len(obs) else []
    if len(obs) and (counts == 1).all():
        out.append("Each configuration was benchmarked once: run-to-run noise is not quantified.")
    models = {r.get("model") for r in records}
    if any(str(m).startswith("architecture") for m in models):
        out.append("The model is an architecture with dummy (random) weights: throughput and energy reflect its "
                   "size, not a real checkpoint; use the commands with a real model path.")
    modes = {r.get("mode") for r in records}
    if modes == {"offline"}:
        out.append("Only offline (batch) throughput was measured: no request latency percentiles.")
    devices = {r.get("device") for r in records}
    if devices == {"cpu"}:
        out.append("The engine ran on vLLM's CPU build: results do not transfer to GPUs.")
    if summary.get("failed"):
        out.append(f"{summary['failed']} configuration(s) failed and are excluded from the front.")
    return out


# ----------------------------------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "-": "-{}",  # no en/em-dash ligatures: ``--max-num-seqs`` stays as typed
}


def latex_escape(value) -> str:
    """Text safe for LaTeX: every special character escaped (underscores in names and engine arguments)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(value))


def fmt(value, digits: int = 4) -> str:
    """A number as tables show it: ``digits`` significant digits, no exponent for ordinary magnitudes."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "--"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}" if 1e-4 <= abs(value) < 1e7 or value == 0 else f"{float(value):.3e}"
    return str(value)


def pareto_display(pareto: pd.DataFrame, objectives: list[dict], space_keys) -> pd.DataFrame:
    """The Pareto set as the report shows it: candidate, the objectives (formatted), the knobs."""
    cols = ["candidate"] + [o["metric"] for o in objectives] + knob_columns(pareto, space_keys) \
        + (["energy_provenance"] if "energy_provenance" in pareto else [])
    return pareto[cols].map(fmt) if len(pareto) else pd.DataFrame(columns=cols)


def read_run(results_dir: str | Path) -> dict:
    """The tables and records of a finished run directory (``results/<run>``), for notebooks and tests."""
    d = Path(results_dir)
    return {
        "observations": pd.read_csv(d / "observations.csv"),
        "pareto": pd.read_csv(d / "pareto.csv"),
        "hypervolume": pd.read_csv(d / "hypervolume.csv"),
        "records": load_records(sorted(d.glob("iter_*/*/metrics.json"))),
        "proposals": [read_json(p) for p in sorted(d.glob("iter_*/proposal.json"),
                                                   key=lambda p: int(p.parent.name.split("_")[1]))],
    }


def summary_text(obs: pd.DataFrame, summary: dict, objectives: list[dict], run: str) -> list[str]:
    """The opening paragraph: what was searched, how many runs, why the search stopped."""
    goals = " against ".join(f"{metric_label(o['metric'])} ({o['direction']})" for o in objectives)
    out = [f"Run {run} benchmarked {summary['evaluations']} vLLM engine configuration(s) with the real engine "
           f"({summary['ok']} successful, {summary['failed']} failed) over {summary['iterations']} iteration(s) of "
           f"{summary['strategy'] or 'the'} search for the Pareto front of {goals}."]
    if summary.get("stop_reason"):
        out.append(f"The search stopped because: {summary['stop_reason']}.")
    q = energy_qualifier(obs)
    if q in ("estimated", "partly estimated"):
        out.append(f"Energy in this analysis is {q.upper()}: see the energy section for how it was obtained.")
    return out
