"""The LaTeX report of a run, filled from the run's files.

``latex_context`` gathers everything the packaged template ``report.tex`` shows (from ``observations.csv``,
``pareto.csv``, the ``metrics.json`` records, the proposals and the run's config); ``render_latex`` fills the
template with Jinja2, escaping every value for LaTeX unless it is already LaTeX (:class:`Raw`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import jinja2
import pandas as pd

from ..engine_args import flag_groups
from ..records import OBJECTIVES, Record, metric_label, record_index
from ..search.optimizer.strategies import DESCRIPTIONS, MODEL_BASED
from .analysis import enrich_observations, fmt, latex_escape, limitations, platform_table, search_summary
from .baseline import default_comparison, default_text, role_label, roles
from .energy import energy_by_source, energy_qualifier, energy_text, estimated_sources
from .export import serve_model
from .knobs import knob_importance, knob_text
from .power import steadiness_table, steadiness_text
from .tables import knee_rule
from .tradeoffs import tradeoff_table, tradeoff_text


class Raw(str):
    """A string that is already LaTeX: the template inserts it as it is."""


def load_text(config: dict, records: list[Record]) -> str:
    """What each benchmark sent the engine: the prompts of offline mode, or the requests and rates of online mode."""
    workload = config["workload"]
    modes = {r.mode for r in records} or {config["benchmark"].get("mode", "offline")}
    parts = []
    if "offline" in modes:
        parts.append(f"offline: {workload['num_prompts']} prompts submitted at once")
    if "online" in modes:
        online = config["benchmark"].get("online") or {}
        rates = online.get("request_rates", [])
        shown = " and ".join("all at once" if str(r) == "inf" else f"at {r:g}/s" for r in rates)
        poisson = " (Poisson arrivals)" if any(str(r) != "inf" for r in rates) else ""
        parts.append(f"online: {online.get('num_prompts') or workload['num_prompts']} requests per rate sent to "
                     f"vLLM's OpenAI-compatible server {shown or 'at the configured rates'}{poisson}")
        cap = online.get("capacity") or {}
        if cap.get("enabled"):
            parts.append(f"before them, on the same server start, the capacity under the SLOs: the request rate "
                         f"ramped from {cap.get('start_rate')}/s by x{cap.get('growth')} until an SLO failed, then "
                         f"bisected to a relative bracket of {cap.get('tolerance')} (at most {cap.get('max_steps')} "
                         f"steps and {cap.get('max_time_s')} s); those rates are targets, reported at capacity and "
                         "at each target")
    return "; ".join(parts)


def window_text(config: dict, records: list[Record]) -> list[str]:
    """How long the measured windows were and what they count: the minimum asked, the range measured, the
    batches they held (offline), and whether detokenisation was inside them."""
    ok = [r for r in records if r.ok]
    windows = [w for w in (r.metric("window_s") for r in ok) if math.isfinite(w)]
    batches = [int(b) for b in (r.metric("batches") for r in ok if r.mode == "offline") if math.isfinite(b)]
    out = []
    if windows:
        held = f"; {min(batches)}-{max(batches)} batches" if batches else ""
        out.append(f"Every measured window lasts at least benchmark.min_window_s = "
                   f"{config['benchmark'].get('min_window_s', 0):g} s, warm-up excluded (measured: "
                   f"{min(windows):.1f}-{max(windows):.1f} s{held}): offline, the workload's batch is repeated with "
                   "fresh seeds inside one metered window until it is that long; online, each rate sends enough "
                   "requests.")
    detok = {bool(r.metrics.get("detokenize", False)) for r in ok if r.mode == "offline"}
    if detok == {False}:
        out.append("Offline output tokens/s excludes detokenisation, as vllm bench throughput --disable-detokenize: "
                   "tokens are counted as token ids and never turned into text (benchmark.detokenize: false).")
    elif detok:
        out.append("Offline output tokens/s includes detokenisation, as vllm bench throughput by default "
                   "(benchmark.detokenize: true).")
    return out


def _finalize(value):
    if value is None:
        return ""
    if isinstance(value, Raw):
        return value
    return latex_escape(fmt(value) if not isinstance(value, str) else value)


def latex_command(model: str, engine_args: dict) -> Raw:
    """A ``vllm serve`` command for LaTeX: typewriter, each ``--flag value`` kept on one line."""
    pieces = [f"vllm serve {model}", *(" ".join(g) for g in flag_groups(engine_args))]
    return Raw(r"\texttt{" + " ".join(r"\mbox{" + latex_escape(p) + "}" for p in pieces) + "}")


def rst_caption(path: str | Path) -> str:
    """A caption of the HTML report (reStructuredText) as plain text, so both reports share one caption."""
    text = Path(path).read_text()
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"\*+([^*]+)\*+", r"\1", text)
    return " ".join(text.split())


def _short_header(column: str) -> str:
    """Narrow column headers for the knob table: ``spread % output_tokens_per_s`` -> ``spread % tokens/s``."""
    for metric in sorted(OBJECTIVES, key=len, reverse=True):
        column = column.replace(metric, OBJECTIVES[metric].unit)
    return column.replace("values evaluated", "values").replace("best value for", "best for")


def _vs_default(pct: float) -> str:
    """``1.5% better`` / ``3.0% worse`` / empty when there is no default to compare with."""
    if pd.isna(pct):
        return ""
    return f"{abs(pct):.1f}% {'better' if pct >= 0 else 'worse'}"


def table(df: pd.DataFrame) -> dict:
    """A table for the template: column names and rows of cell values (formatted later, then escaped)."""
    return {"columns": [str(c) for c in df.columns], "rows": df.values.tolist()}


def pareto_rows(pareto: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """The Pareto table of the PDF: candidate, objectives (formatted as :func:`vllm_mobo.report.analysis.fmt` does) and the
    energy provenance; the knob values are in each configuration's command line."""
    cols = ["candidate"] + [o["metric"] for o in objectives] + ["energy_provenance"]
    out = pareto.reindex(columns=cols).map(lambda v: "" if isinstance(v, float) and pd.isna(v) else fmt(v))
    return out.rename(columns={o["metric"]: metric_label(o["metric"]) for o in objectives}
                      | {"energy_provenance": "energy provenance"})


def objectives_phrase(objectives: list[dict]) -> str:
    """The objectives in words: ``A against B`` for two, ``A, B and C`` for more (title and abstract)."""
    labels = [metric_label(o["metric"]) for o in objectives]
    if len(labels) == 2:
        return " against ".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else labels[0]


def tradeoff_display(tradeoffs: pd.DataFrame) -> pd.DataFrame:
    """``tradeoffs.csv`` as the PDF shows it: the pair, rho over the front and the feasible observations, the verdict
    and how many pairs of front configurations conflict on the two objectives."""
    rows = [[f"{metric_label(r['objective_a'])} / {metric_label(r['objective_b'])}",
             f"{fmt(r['rho_front'], 2)} (n={int(r['n_front'])})", f"{fmt(r['rho_feasible'], 2)} (n={int(r['n_feasible'])})",
             r["verdict"] + ("" if r["basis"] == "none" else f" ({r['basis']})"),
             f"{int(r['front_pairs_conflicting'])} of {int(r['front_pairs'])}"] for _, r in tradeoffs.iterrows()]
    return pd.DataFrame(rows, columns=["objectives", "rho on the front", "rho over feasible", "verdict",
                                       "front pairs in conflict"])


def latex_context(obs: pd.DataFrame, pareto: pd.DataFrame, records: list[Record], proposals: list[dict],
                  config: dict, model_dir: str, figures: dict[str, tuple[str, str]],
                  skipped: pd.DataFrame | None = None, profile: dict | None = None,
                  confirm: dict | None = None, thermal: list[str] | None = None,
                  tradeoffs: pd.DataFrame | None = None) -> dict:
    """Everything the template shows. ``figures``: name -> (PDF path, caption text). ``profile``: the profiling
    section (:func:`vllm_mobo.profiling.explain.latex_section`), None to leave it out. ``confirm``: the
    confirmation stage (:func:`vllm_mobo.confirm.summary.read_confirmation`), None when it did not run.
    ``thermal``: the lines of ``thermal_warnings.txt``. ``tradeoffs``: ``tradeoffs.csv``
    (:func:`vllm_mobo.report.tradeoffs.tradeoff_table`), computed from ``obs`` and ``pareto`` when None."""
    objectives, space = config["objectives"], config["search_space"]
    keys = list(space)
    obs = enrich_observations(obs, records, ["tensor_parallel_size", "pipeline_parallel_size"])
    summary = search_summary(obs, proposals)
    tradeoffs = tradeoff_table(obs, pareto, objectives) if tradeoffs is None else tradeoffs
    found = roles(pareto, objectives)
    knee = found.get("knee")
    ctx = {
        "run": config["run"],
        "objectives": [{"label": metric_label(o["metric"]), "metric": o["metric"], "direction": o["direction"]}
                       for o in objectives],
        "energy_qualifier": energy_qualifier(obs),
        "estimated_sources": [s.upper() for s in estimated_sources(obs)],
        "summary": summary,
        "optimizer": config.get("optimizer", {}),
        "workload": {k: v for k, v in config["workload"].items() if k != "model"},
        "model": (records[0].model if records else "") or "",
        "mode": ", ".join(sorted({r.mode for r in records})),
        "load": load_text(config, records),
        "objectives_phrase": objectives_phrase(objectives),
        "bayesian": summary.get("strategy") in MODEL_BASED | {"optuna-gp"},
        "strategy_text": DESCRIPTIONS.get(summary.get("strategy") or "", "by the strategy's own rule"),
        "space_table": {"columns": ["engine argument", "values searched"],
                        "rows": [[k, ", ".join(fmt(v) for v in vals)] for k, vals in space.items()]},
        "fixed_args": [{"arg": k, "value": fmt(v)} for k, v in (config.get("engine_args") or {}).items()],
        "skipped": 0 if skipped is None else len(skipped),
        "platform": table(platform_table(records)),
        "figures": [{"name": Raw(n.replace("_", "-")), "path": Raw(Path(p).as_posix()), "caption": c} for n, (p, c) in figures.items()],
        "default_text": default_text(obs, pareto, objectives),
        "knob_text": knob_text(obs, keys, objectives),
        "energy_text": energy_text(obs, records) + steadiness_text(steadiness_table(records)),
        "limitations": limitations(obs, records, keys, summary),
        "pareto": table(pareto_rows(pareto, objectives)),
        "roles": {role_label(r): n for r, n in found.items()},
        "knee": None,
        "knee_rule": knee_rule(len(objectives)),
        "tradeoff_text": tradeoff_text(tradeoffs),
        "tradeoffs": table(tradeoff_display(tradeoffs)),
        "alternatives": [{"candidate": n, "role": role_label(r)} for r, n in found.items() if n != knee],
        "commands": [],
        "profile": profile,
        "window_text": window_text(config, records),
        "thermal": thermal or [],
        "confirm": None if confirm is None else {**confirm, "front": table(confirm["front"]),
                                                 "figure": Raw(Path(confirm["figure"]).as_posix())
                                                 if confirm.get("figure") else None},
    }
    if confirm is not None:  # the limitation "benchmarked once" holds for the search only
        ctx["limitations"] = [x if not x.startswith("Each configuration was benchmarked once") else
                              "The search benchmarked each configuration once; only the confirmed configurations "
                              f"have repeats ({confirm['repeats']} each) and confidence intervals."
                              for x in ctx["limitations"]]
    imp = knob_importance(obs, keys, objectives)
    if not imp.empty:
        cols = ["knob", "values evaluated"] + [f"spread % {o['metric']}" for o in objectives] \
            + [f"best value for {o['metric']}" for o in objectives]
        if len(objectives) == 2:
            header = _short_header
        else:  # headers wrap in narrow columns, so they name each objective (two of them may share a unit)
            header = {f"{what} {o['metric']}": f"{short} {metric_label(o['metric'])}" for o in objectives
                      for what, short in (("spread %", "spread %"), ("best value for", "best for"))}
        ctx["knobs"] = table(imp[cols].rename(columns=header).map(fmt))
    else:
        ctx["knobs"] = None
    ctx["knobs_spec"] = None if len(objectives) == 2 else \
        "lr" + r">{\raggedright\arraybackslash}p{1.3cm}" * (2 * len(objectives))
    e = energy_by_source(obs)
    if not e.empty:
        share = e.groupby("source").agg(joules=("joules", "sum"),
                                        provenance=("provenance", lambda s: "/".join(sorted(set(s)))))
        share["share %"] = 100.0 * share["joules"] / share["joules"].sum()
        ctx["energy_table"] = table(share.reset_index()[["source", "joules", "share %", "provenance"]].map(fmt))
    else:
        ctx["energy_table"] = None
    index = record_index(records)
    for _, r in pareto.iterrows():
        rec = index[(int(r["iteration"]), r["candidate"])]
        ctx["commands"].append({"candidate": r["candidate"],
                                "command": latex_command(serve_model(rec, model_dir), rec.engine_args)})
    if knee:
        row = pareto[pareto["candidate"] == knee].iloc[0]
        comp = default_comparison(obs, pareto, objectives)
        comp = comp[comp["candidate"] == knee].iloc[0]
        ctx["knee"] = {
            "candidate": knee,
            "values": [{"label": metric_label(o["metric"]), "value": fmt(row[o["metric"]]),
                        "vs_default": _vs_default(comp[f"vs default % {o['metric']}"])} for o in objectives],
            "roles": [role_label(r) for r, n in found.items() if n == knee],
            "command": next(c["command"] for c in ctx["commands"] if c["candidate"] == knee),
        }
    return ctx


def render_latex(template_path: str | Path, context: dict) -> str:
    """Fill the LaTeX template (Jinja2 with LaTeX-friendly delimiters: ``\\VAR{x}``, ``\\BLOCK{for ...}``)."""
    env = jinja2.Environment(
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_statement_prefix="%%", line_comment_prefix="%#",
        trim_blocks=True, autoescape=False, undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        loader=jinja2.FileSystemLoader(str(Path(template_path).parent)),
    )
    env.filters["raw"] = lambda s: Raw(s)
    return env.get_template(Path(template_path).name).render(**context)
