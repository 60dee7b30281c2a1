"""How many benchmarks each search strategy needs: the pipeline's search replayed on measured tables.

For every strategy x table x seed, the real search loop runs (:func:`vllm_mobo.search.plan_iteration`, iteration
by iteration, as the pipeline's ``propose`` checkpoint calls it) and every proposed candidate is answered by the
replay backend (:class:`vllm_mobo.replay.ReplayTable`) instead of vLLM: no GPU, no engine, the table's measured
values. The stop rule is disabled (``stop_relative_ehvi: 0``); the relative EHVI each proposal reports is kept in
the trace. After every evaluation the trace records:

- ``hv_ratio``: hypervolume of the feasible configurations found so far over the hypervolume of the table's true
  front, both on the table's true values, in log-objective space with one reference point per table (the nadir of
  all feasible rows + 10% of their range, as :func:`vllm_mobo.results.hypervolume_by_iteration`);
- ``cumulative_energy_j``: the search's own energy, the sum of :func:`vllm_mobo.results.evaluation_energy_j` of the
  evaluated rows (window power x wall time: ESTIMATED); a failure measured no energy, so it costs its wall time x
  the table's median power per device x the devices it used (ESTIMATED as well);
- the share of the true Pareto points found.

:func:`summarize` reduces the traces per strategy x table (median and IQR over seeds); :func:`figures` draws HV
ratio against evaluations and against search energy; :func:`target_check` states the project's target clause by
clause; :func:`write_report` fills ``report/optimizer_benchmark.tex`` and builds the PDF with latexmk.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .replay import ReplayTable
from .results import record_evaluation_energy_j
from .space import VLLM_DEFAULT

#: Every strategy the benchmark knows, ours first (names as in the config's ``optimizer.strategy``).
STRATEGIES = ["ehvi", "ehvi-energy", "parego", "random", "sobol", "nsga2", "optuna"]
OURS = "ehvi"
THRESHOLD = 0.95
#: The project's target: ours reaches 95% within this many evaluations (median) on the 432-point space ...
TARGET_EVALUATIONS = 25
TARGET_SPACE_SIZE = 432
#: ... with at least this many times fewer evaluations than random search ...
TARGET_FACTOR_VS_RANDOM = 2.0
#: ... and ahead of these at equal budget (compared at TARGET_EVALUATIONS evaluations).
TARGET_RIVALS = ["nsga2", "optuna"]
REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "report" / "optimizer_benchmark.tex"
EST_WINDOW = "estimated: window power x wall time"
EST_FAILURE = "estimated: median power per device x wall time (failure)"


# ------------------------------------------------------------------------------------------------ strategies

def _optimizer_schema() -> dict:
    # read the YAML directly: importing vllm_mobo.config imports jsonschema, which takes seconds to start
    import yaml

    with open(REPO / "workflow" / "schemas" / "config.schema.yaml") as fh:
        return yaml.safe_load(fh)["properties"]["optimizer"]


def available_strategies() -> list[str]:
    """Strategies this checkout implements: the optimiser's registry (``vllm_mobo.optimizer.strategies``) where
    it exists, else the values the config schema allows for ``optimizer.strategy``."""
    try:
        from .optimizer import strategies as registry
    except ImportError:
        return list(_optimizer_schema()["properties"]["strategy"].get("enum", []))
    return list(registry.STRATEGIES)


def strategy_problem(name: str) -> str | None:
    """Why ``name`` cannot run here (not implemented, a missing optional dependency), or None."""
    have = available_strategies()
    if name not in have:
        if name in STRATEGIES:
            return f"not implemented in this checkout (optimizer.strategy allows: {', '.join(have)})"
        return f"unknown strategy (known: {', '.join(STRATEGIES)})"
    try:
        from .optimizer import strategies as registry
    except ImportError:
        return None
    check = getattr(registry, "REQUIREMENTS", {}).get(name)
    if check is not None:
        try:
            check()
        except Exception as exc:  # e.g. optuna not installed
            return f"unavailable: {exc}"
    return None


def optimizer_defaults() -> dict:
    """The ``optimizer`` block of a config with nothing set: every schema default (nested ones included)."""
    def fill(schema: dict) -> dict:
        out = {}
        for key, sub in schema.get("properties", {}).items():
            if "default" in sub:
                out[key] = sub["default"]
                if isinstance(out[key], dict) and sub.get("properties"):
                    out[key] = {**fill(sub), **out[key]}
        return out

    return fill(_optimizer_schema())


def split_strategies(requested: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the strategies to run, {skipped strategy: why})."""
    run, skipped = [], {}
    for s in requested:
        problem = strategy_problem(s)
        if problem:
            skipped[s] = problem
        else:
            run.append(s)
    return run, skipped


# ------------------------------------------------------------------------------------------------ one search

@dataclass
class Settings:
    budget: int = 50
    batch_size: int = 4
    initial_design: int = 5
    include_vllm_default: bool = True
    #: Judge searches against the front of the search space's configurations (False) or of every row including
    #: vLLM's default (True). Every strategy evaluates the default first (the baseline) without searching for
    #: it, so by default it does not count as found: where it beats the whole space it would hand every strategy
    #: 100% at evaluation 1. Its evaluation still counts as an evaluation and in the search energy.
    front_includes_default: bool = False
    noise: bool = False
    seeds: int = 10
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    optimizer: dict = field(default_factory=dict)  # further optimizer.* keys (e.g. a strategy's own settings)


_TABLES: dict[str, ReplayTable] = {}


def _table(path: str | Path) -> ReplayTable:
    key = str(Path(path).resolve())
    if key not in _TABLES:
        _TABLES[key] = ReplayTable.load(path)
    return _TABLES[key]


def table_names(table_dirs: list[str | Path]) -> list[str]:
    """The names the outputs of each table carry (meta.yaml's name; the directory's name while it is missing)."""
    names = []
    for d in table_dirs:
        try:
            names.append(ReplayTable.load(d).name)
        except Exception:  # noqa: BLE001 - a table not measured yet: Snakemake reports the missing input
            names.append(Path(d).name)
    return names


def evaluation_cost_j(table: ReplayTable, record: dict, median_power_w: float) -> tuple[float, str]:
    """(joules, how) of one replayed evaluation, from the noiseless record."""
    e = record_evaluation_energy_j(record) if record["status"] == "ok" else float("nan")
    if np.isfinite(e):
        return e, EST_WINDOW
    wall = (record.get("timing") or {}).get("wall_s")
    if wall is None or not np.isfinite(wall):
        walls = table.rows["wall_s"].dropna() if "wall_s" in table.rows else pd.Series(dtype=float)
        wall = float(walls.median()) if len(walls) else 0.0
    return float(wall) * median_power_w * int(record.get("devices_used") or 1), EST_FAILURE


def run_search(table: ReplayTable | str | Path, strategy: str, seed: int, settings: Settings) -> pd.DataFrame:
    """One replayed search: the trace, one row per evaluation (see the module's docstring)."""
    from . import search

    table = table if isinstance(table, ReplayTable) else _table(table)
    optimizer = {**optimizer_defaults(), **settings.optimizer, "strategy": strategy, "seed": int(seed),
                 "budget": settings.budget, "batch_size": settings.batch_size,
                 "initial_design": settings.initial_design, "include_vllm_default": settings.include_vllm_default,
                 "stop_relative_ehvi": 0.0}
    config = table.pipeline_config(optimizer)
    objectives = table.objectives
    judged = settings.front_includes_default
    true_front = set(table.true_front(objectives, judged)["candidate"])
    true_hv = table.true_hypervolume(objectives, judged)
    power = table.median_power_per_device_w()
    rng = np.random.default_rng([int(seed), 7919])  # the noise's own stream, apart from the optimiser's
    records, history, rows, found = [], [], [], []
    cumulative = 0.0
    t0 = time.perf_counter()
    iteration = 0
    allowed = set(table.candidates())
    while True:
        proposal = search.plan_iteration(config, iteration, records, history, table.platform, allowed)
        history.append(proposal)
        if proposal["stop"] or not proposal["candidates"]:
            break
        for cand in proposal["candidates"]:
            name = cand["name"]
            truth = table.record(name, iteration)
            rec = table.record(name, iteration, rng=rng, noise=True) if settings.noise else truth
            records.append(rec)
            cost, how = evaluation_cost_j(table, truth, power)
            cumulative += cost
            found.append(name)
            hv = table.hypervolume_of(found, objectives, judged)
            rows.append({
                "table": table.name, "strategy": strategy, "seed": int(seed), "evaluation": len(records),
                "iteration": iteration, "candidate": name, "status": truth["replay"]["status"],
                "eval_energy_j": cost, "eval_energy_method": how, "cumulative_energy_j": cumulative,
                "hypervolume": hv, "hv_ratio": hv / true_hv if true_hv > 0 else float("nan"),
                "true_pareto_found": len(true_front.intersection(found)), "true_pareto_size": len(true_front),
                "relative_ehvi": proposal.get("relative_ehvi"), "noise": settings.noise,
                "budget": settings.budget,
            })
        iteration += 1
    trace = pd.DataFrame(rows)
    if len(trace):
        trace["pareto_found_share"] = trace["true_pareto_found"] / trace["true_pareto_size"]
        trace["stop_reason"] = ""
        trace.loc[trace.index[-1], "stop_reason"] = history[-1].get("reason", "")
        trace["run_seconds"] = time.perf_counter() - t0
    return trace


def _run_job(job: tuple) -> tuple[pd.DataFrame | None, str | None]:
    """(trace, None), or (None, the error) when the strategy raised: one broken strategy must not stop the rest."""
    table_dir, strategy, seed, settings_dict, single_thread = job
    try:
        if single_thread:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                return run_search(table_dir, strategy, seed, Settings(**settings_dict)), None
        return run_search(table_dir, strategy, seed, Settings(**settings_dict)), None
    except Exception as exc:  # noqa: BLE001 - reported per run and in the summary
        import traceback

        where = traceback.extract_tb(exc.__traceback__)[-1]
        return None, f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"


# ------------------------------------------------------------------------------------------------ reductions

_CENSOR = 1e300


def quantiles(values, qs=(0.25, 0.5, 0.75)) -> list[float]:
    """Quantiles where inf means "not reached": an interpolation touching inf is inf (censored)."""
    v = np.asarray([x for x in values if not (isinstance(x, float) and math.isnan(x))], dtype=float)
    if not len(v):
        return [float("nan")] * len(qs)
    v = np.where(np.isinf(v), _CENSOR, v)
    return [float("inf") if q >= _CENSOR / 10 else float(q) for q in np.quantile(v, qs)]


def reach(trace: pd.DataFrame, threshold: float = THRESHOLD) -> tuple[float, float]:
    """(evaluations, cumulative search energy J) at the first evaluation whose HV ratio is at least ``threshold``
    in one run's trace; (inf, inf) when the run never got there."""
    t = trace.sort_values("evaluation")
    hit = t[t["hv_ratio"] >= threshold - 1e-12]
    if hit.empty:
        return float("inf"), float("inf")
    first = hit.iloc[0]
    return float(first["evaluation"]), float(first["cumulative_energy_j"])


def value_at(trace: pd.DataFrame, evaluations: int, column: str = "hv_ratio") -> float:
    """A run's ``column`` after ``evaluations`` evaluations (its last value if the run ended earlier)."""
    t = trace[trace["evaluation"] <= evaluations]
    return float(t.sort_values("evaluation")[column].iloc[-1]) if len(t) else 0.0


def summarize(traces: pd.DataFrame, budget: int, check_at: int = TARGET_EVALUATIONS) -> pd.DataFrame:
    """Per table x strategy: HV ratio at the budget (and at ``check_at`` evaluations), evaluations and search
    energy to reach 95% (median, IQR; a seed that never reached counts as not reached, inf), the share of seeds
    that reached it, and the share of the true Pareto points found at the budget."""
    out = []
    for (tbl, strat), g in traces.groupby(["table", "strategy"], sort=False):
        runs = [t for _, t in g.groupby("seed")]
        hv_end = [value_at(t, budget) for t in runs]
        hv_chk = [value_at(t, check_at) for t in runs]
        reached = [reach(t) for t in runs]
        ev, en = [r[0] for r in reached], [r[1] for r in reached]
        pf = [value_at(t, budget, "pareto_found_share") for t in runs]
        q_hv, q_ev, q_en, q_chk = quantiles(hv_end), quantiles(ev), quantiles(en), quantiles(hv_chk)
        out.append({
            "table": tbl, "strategy": strat, "seeds": len(runs), "budget": budget,
            "evaluations_median": float(np.median([t["evaluation"].max() for t in runs])),
            "hv_ratio_q25": q_hv[0], "hv_ratio_median": q_hv[1], "hv_ratio_q75": q_hv[2],
            f"hv_ratio_at_{check_at}_q25": q_chk[0], f"hv_ratio_at_{check_at}_median": q_chk[1],
            f"hv_ratio_at_{check_at}_q75": q_chk[2],
            "evals_to_95_q25": q_ev[0], "evals_to_95_median": q_ev[1], "evals_to_95_q75": q_ev[2],
            "reached_95_share": float(np.mean([np.isfinite(x) for x in ev])),
            "energy_to_95_j_q25": q_en[0], "energy_to_95_j_median": q_en[1], "energy_to_95_j_q75": q_en[2],
            "pareto_found_share_median": float(np.median(pf)),
            "true_pareto_size": int(g["true_pareto_size"].iloc[0]),
            "search_energy_at_budget_j_median": float(np.median([value_at(t, budget, "cumulative_energy_j")
                                                                  for t in runs])),
            "noise": bool(g["noise"].iloc[0]),
        })
    return pd.DataFrame(out)


def target_check(summary: pd.DataFrame, tables: dict[str, ReplayTable], check_at: int = TARGET_EVALUATIONS,
                 skipped: dict[str, str] | None = None) -> list[dict]:
    """The project's target, clause by clause, per table: ``{"table", "clause", "met" (yes/no/not run),
    "numbers"}``. The target: ours reaches 95% of the true front's hypervolume within 25 evaluations (median) on
    the 432-point space, with at least 2x fewer evaluations than random search, and ahead of NSGA-II and Optuna at
    equal budget (median HV ratio after 25 evaluations)."""
    out, skipped = [], skipped or {}

    def why_not(strat, tbl):
        return skipped.get(strat) or skipped.get(f"{strat} on {tbl}") or "not requested"

    def cell(tbl, strat, col):
        row = summary[(summary["table"] == tbl) & (summary["strategy"] == strat)]
        return None if row.empty else float(row[col].iloc[0])

    def ev(x):
        return f"not reached within {budget}" if x is None or not np.isfinite(x) else f"{x:g}"

    budget = int(summary["budget"].iloc[0]) if len(summary) else 0
    for name, table in tables.items():
        size = len(table.space)
        space_note = f"{size}-point space" + ("" if size == TARGET_SPACE_SIZE else f" (not the {TARGET_SPACE_SIZE}-point one)")
        whole = size == TARGET_SPACE_SIZE and not table.partial
        if table.partial:
            space_note += (f", a PARTIAL table: the search only chose among its {len(table.candidates())} measured "
                           f"rows of {table.valid_size()} valid configurations")
        ours = cell(name, OURS, "evals_to_95_median")
        share = cell(name, OURS, "reached_95_share")
        if ours is None:
            out.append({"table": name, "clause": f"ours reaches 95% within {TARGET_EVALUATIONS} evaluations (median)",
                        "met": "not run", "numbers": f"{OURS} was not run: {why_not(OURS, name)}"})
        else:
            met = np.isfinite(ours) and ours <= TARGET_EVALUATIONS and whole
            out.append({"table": name,
                        "clause": f"ours reaches 95% within {TARGET_EVALUATIONS} evaluations (median) on the "
                                  f"{TARGET_SPACE_SIZE}-point space",
                        "met": "yes" if met else "no",
                        "numbers": f"median {ev(ours)} evaluations (reached in {share:.0%} of seeds, budget {budget}) "
                                   f"on the {space_note}"})
        rnd = cell(name, "random", "evals_to_95_median")
        if ours is None or rnd is None:
            out.append({"table": name, "clause": f"at least {TARGET_FACTOR_VS_RANDOM:g}x fewer evaluations than random",
                        "met": "not run",
                        "numbers": "; ".join(f"{s} was not run: {why_not(s, name)}" for s in (OURS, "random")
                                             if cell(name, s, "evals_to_95_median") is None)})
        else:
            if not np.isfinite(ours):
                met, ratio = False, "ours did not reach 95% in the median seed"
            elif not np.isfinite(rnd):
                met = budget >= TARGET_FACTOR_VS_RANDOM * ours
                ratio = (f"random did not reach 95% within {budget} evaluations in the median seed, so the factor is "
                         f"more than {budget / ours:.1f}")
            else:
                met, ratio = rnd / ours >= TARGET_FACTOR_VS_RANDOM, f"factor {rnd / ours:.2f}"
            out.append({"table": name, "clause": f"at least {TARGET_FACTOR_VS_RANDOM:g}x fewer evaluations than random",
                        "met": "yes" if met else "no",
                        "numbers": f"ours {ev(ours)}, random {ev(rnd)} evaluations to 95% (medians); {ratio}"})
        col = f"hv_ratio_at_{check_at}_median"
        for rival in TARGET_RIVALS:
            a, b = cell(name, OURS, col), cell(name, rival, col)
            clause = f"ahead of {rival} at equal budget ({check_at} evaluations)"
            if a is None or b is None:
                who = rival if b is None else OURS
                out.append({"table": name, "clause": clause, "met": "not run",
                            "numbers": f"{who} was not run: {why_not(who, name)}"})
                continue
            if budget < check_at:
                out.append({"table": name, "clause": clause, "met": "not run",
                            "numbers": f"the budget of {budget} is below {check_at} evaluations"})
                continue
            at_budget = (cell(name, OURS, "hv_ratio_median"), cell(name, rival, "hv_ratio_median"))
            out.append({"table": name, "clause": clause, "met": "yes" if a > b else "no",
                        "numbers": f"median HV ratio after {check_at} evaluations: ours {a:.3f}, {rival} {b:.3f}"
                                   + (" (tie)" if a == b else "")
                                   + f"; at the budget of {budget}: ours {at_budget[0]:.3f}, {rival} {at_budget[1]:.3f}"})
    return out


# ------------------------------------------------------------------------------------------------ presentation

def _iqr(q25, med, q75, fmt="{:.3g}", budget=None) -> str:
    """``median [q25, q75]``; a value not reached is ``>budget`` (or ``n.r.``), all three not reached once."""
    def one(x):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "n/a"
        if not np.isfinite(x):
            return f">{budget}" if budget else "n.r."
        return fmt.format(x)

    if not any(np.isfinite(v) for v in (q25, med, q75) if v is not None):
        return one(med)
    return f"{one(med)} [{one(q25)}, {one(q75)}]"


def display_table(summary: pd.DataFrame, check_at: int = TARGET_EVALUATIONS) -> pd.DataFrame:
    """The summary as people read it: one row per table x strategy, median [IQR] cells."""
    rows = []
    for _, r in summary.iterrows():
        b = int(r["budget"])
        rows.append({
            "table": r["table"], "strategy": r["strategy"], "seeds": int(r["seeds"]),
            f"HV ratio at {b}": _iqr(r["hv_ratio_q25"], r["hv_ratio_median"], r["hv_ratio_q75"], "{:.3f}"),
            **({f"HV ratio at {check_at}": _iqr(r[f"hv_ratio_at_{check_at}_q25"], r[f"hv_ratio_at_{check_at}_median"],
                                                r[f"hv_ratio_at_{check_at}_q75"], "{:.3f}")} if b > check_at else {}),
            "evals to 95%": _iqr(r["evals_to_95_q25"], r["evals_to_95_median"], r["evals_to_95_q75"], "{:g}", b),
            "reached 95%": f"{r['reached_95_share']:.0%}",
            "search kJ to 95% (est.)": _iqr(r["energy_to_95_j_q25"] / 1e3, r["energy_to_95_j_median"] / 1e3,
                                            r["energy_to_95_j_q75"] / 1e3, "{:.3g}"),
            "true front found": f"{r['pareto_found_share_median']:.0%} of {int(r['true_pareto_size'])}",
        })
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.values.tolist()]
    return "\n".join(lines) + "\n"


def latex_tabular(df: pd.DataFrame) -> str:
    from .analysis import latex_escape

    cols = list(df.columns)
    body = [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule",
            " & ".join(r"\textbf{" + latex_escape(c) + "}" for c in cols) + r" \\", r"\midrule"]
    body += [" & ".join(latex_escape(str(v)) for v in row) + r" \\" for row in df.values.tolist()]
    body += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(body) + "\n"


def table_title(table: ReplayTable) -> str:
    if table.synthetic:
        return f"replay of SYNTHETIC table {table.name} (made-up numbers, not a measurement)"
    return f"{table.hardware_label()}, {table.software_label()}: replay of measured table {table.name}"


def _on_grid(runs: list[pd.DataFrame], x: str, grid: np.ndarray) -> pd.DataFrame:
    """Each run's HV ratio as a step function of ``x`` (0 before its first evaluation), sampled on ``grid``."""
    out = []
    for t in runs:
        t = t.sort_values("evaluation")
        xs, ys = t[x].to_numpy(float), t["hv_ratio"].to_numpy(float)
        idx = np.searchsorted(xs, grid, side="right") - 1
        vals = np.where(idx >= 0, ys[np.clip(idx, 0, None)], 0.0)
        out.append(pd.DataFrame({x: grid, "hv_ratio": vals, "strategy": t["strategy"].iloc[0],
                                 "seed": t["seed"].iloc[0]}))
    return pd.concat(out, ignore_index=True)


def figures(traces: pd.DataFrame, tables: dict[str, ReplayTable], out_dir: str | Path,
            strategies: list[str]) -> dict[str, dict[str, Path]]:
    """Per table: ``hv_vs_evaluations_<table>`` and ``hv_vs_energy_<table>`` (PNG and PDF): median line and IQR
    band per strategy, the 95% line dashed. Returns {table: {"evaluations": pdf, "energy": pdf}}."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = dict(zip(STRATEGIES, sns.color_palette("tab10", len(STRATEGIES))))
    made = {}
    for name, table in tables.items():
        tr = traces[traces["table"] == name]
        if tr.empty:
            continue
        present = [s for s in strategies if s in set(tr["strategy"])]
        runs = [t for _, t in tr.groupby(["strategy", "seed"], sort=False)]
        budget = int(tr["budget"].iloc[0])
        noise = " (with measurement noise)" if bool(tr["noise"].iloc[0]) else ""
        made[name] = {}
        for kind in ("evaluations", "energy"):
            if kind == "evaluations":
                x, grid = "evaluation", np.arange(1, budget + 1, dtype=float)
                xlabel = "evaluations (benchmarks run)"
            else:
                x = "cumulative_energy_j"
                lo = max(float(tr[x].min()), 1e-9)
                grid = np.geomspace(lo, float(tr[x].max()), 200)
                xlabel = "search energy, J (ESTIMATED: window power x wall time; failures: median power)"
            data = _on_grid(runs, x, grid)
            sns.set_theme(style="whitegrid")
            fig, ax = plt.subplots(figsize=(7.5, 4.8))
            sns.lineplot(data=data, x=x, y="hv_ratio", hue="strategy", hue_order=present, estimator="median",
                         errorbar=("pi", 50), palette=palette, ax=ax)
            ax.axhline(THRESHOLD, ls="--", color="grey", lw=1)
            ax.text(grid[0], THRESHOLD + 0.01, "95% of the true front's hypervolume", fontsize=7, color="grey")
            if kind == "energy":
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap the major ones
            ax.set_ylim(0, 1.05)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("hypervolume / true front's hypervolume")
            ax.set_title(f"{table_title(table)}{noise}\nmedian and IQR over {tr['seed'].nunique()} seeds, "
                         f"{len(table.candidates())} candidates, true front of {int(tr['true_pareto_size'].iloc[0])} points",
                         fontsize=8)
            ax.legend(fontsize=7, title="strategy", title_fontsize=7, loc="lower right")
            fig.tight_layout()
            stem = out_dir / f"hv_vs_{kind}_{name}"
            fig.savefig(f"{stem}.png", dpi=150)
            fig.savefig(f"{stem}.pdf")
            plt.close(fig)
            made[name][kind] = Path(f"{stem}.pdf")
    return made


# ------------------------------------------------------------------------------------------------ the report

def model_label(model) -> str:
    """The model of a table's workload in a few words (a config.json body is summarised, not printed)."""
    if isinstance(model, dict):
        if model.get("path"):
            return str(model["path"])
        arch = model.get("architecture") or {}
        if arch:
            name = (arch.get("architectures") or ["?"])[0]
            return (f"{name} with dummy weights (hidden {arch.get('hidden_size')}, "
                    f"{arch.get('num_hidden_layers')} layers, vocabulary {arch.get('vocab_size')})")
        return "?"
    return str(model or "?")


def _meta_rows(tables: dict[str, ReplayTable], with_default: bool = False) -> list[dict]:
    rows = []
    for name, t in tables.items():
        m = t.meta
        wl = m.get("workload") or {}
        workload = ", ".join(f"{k} {v}" for k, v in wl.items() if k != "model" and not isinstance(v, dict)) \
            + "".join(f", {k} {v.get('min')}-{v.get('max')}" for k, v in wl.items() if isinstance(v, dict)
                      and "min" in v)
        energy = m.get("energy_provenance") or {}
        energy = ", ".join(f"{k} {v}" for k, v in energy.items()) if isinstance(energy, dict) else "; ".join(
            str(e) for e in energy)
        rows.append({
            "name": name, "synthetic": t.synthetic, "description": str(m.get("description") or ""),
            "hardware": t.hardware_label(), "software": t.software_label() + (
                f", torch {(m.get('software') or {}).get('torch')}" if (m.get("software") or {}).get("torch") else ""),
            "workload": (model_label(wl.get("model")) + (": " if workload else "") + workload.lstrip(", ")).strip(),
            "date": str(m.get("date") or "?"), "space_size": len(t.space), "candidates": len(t.candidates()),
            "partial": t.partial, "front_size": len(t.true_front(with_default=with_default)),
            "default_on_front": VLLM_DEFAULT in set(t.true_front(with_default=True)["candidate"]),
            "platform": f"{t.platform.device}, {t.platform.num_devices} device(s), max_model_len {t.platform.max_model_len}",
            "measurement": str(m.get("measurement") or m.get("measurement_method") or "?"),
            "energy": energy or "?",
        })
    return rows


def write_report(out_dir: Path, pdf_path: Path, tables: dict[str, ReplayTable], summary: pd.DataFrame,
                 checks: list[dict], figs: dict, settings: Settings, skipped: dict[str, str]) -> Path | None:
    """Fill report/optimizer_benchmark.tex and build ``pdf_path`` with latexmk (None, with a message, when
    latexmk is missing)."""
    from .report import Raw, render_latex

    build = Path(out_dir) / "latex"
    build.mkdir(parents=True, exist_ok=True)
    disp = display_table(summary)
    ctx = {
        "settings": asdict(settings),
        "tables": _meta_rows(tables, settings.front_includes_default),
        "synthetic": any(t.synthetic for t in tables.values()),
        "summary": Raw(latex_tabular(disp.drop(columns=["table"]) if len(tables) == 1 else disp)),
        "figures": [{"table": n, "evaluations": Raw(Path(f["evaluations"]).resolve().as_posix()),
                     "energy": Raw(Path(f["energy"]).resolve().as_posix())} for n, f in figs.items()],
        "checks": checks,
        "skipped": [{"strategy": s, "why": w} for s, w in skipped.items()],
        "ours": OURS,
    }
    tex = build / "optimizer-benchmark.tex"
    tex.write_text(render_latex(TEMPLATE, ctx))
    if shutil.which("latexmk") is None:
        print(f"latexmk not found: {tex} written, PDF not built")
        return None
    log = build / "latexmk.log"
    with open(log, "w") as fh:
        proc = subprocess.run(["latexmk", "-gg", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                               f"-outdir={build}", str(tex)], stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"latexmk failed on {tex} (log: {log})")
    pdf_path = Path(pdf_path)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build / "optimizer-benchmark.pdf", pdf_path)
    return pdf_path


# ------------------------------------------------------------------------------------------------ the benchmark

def run_benchmark(table_dirs: list[str | Path], settings: Settings, out_dir: str | Path, jobs: int = 1,
                  pdf_path: str | Path | None = None, echo=print) -> dict:
    """Every strategy x table x seed, then traces.csv, summary.csv/.md/.tex, target_check.csv, the figures and
    (``pdf_path``) the PDF report. Returns the paths written and the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {}
    for d in table_dirs:
        t = ReplayTable.load(d)
        if t.name in tables:
            raise ValueError(f"two tables named {t.name!r}")
        tables[t.name] = t
        if settings.noise:  # raises, naming the table, when it has no repeats to estimate the noise from
            echo(f"table {t.name}: noise sd of log values from repeats.csv: "
                 + ", ".join(f"{m} {v:.4f}" for m, v in t.noise_sd().items()))
        echo(f"table {t.name}: {table_title(t)}; {len(t.candidates())} candidates"
             f"{' (PARTIAL table: the search is restricted to the measured rows)' if t.partial else ''}, "
             f"true front of {len(t.true_front(with_default=settings.front_includes_default))} points"
             + (" (vLLM's default beats or matches it: on the front of all rows)"
                if VLLM_DEFAULT in set(t.true_front()["candidate"]) else ""))
    strategies, skipped = split_strategies(settings.strategies)
    for s, why in skipped.items():
        echo(f"SKIPPING strategy {s!r}: {why}")
    if not strategies:
        raise ValueError("no strategy to run: " + "; ".join(f"{s}: {w}" for s, w in skipped.items()))
    jobs_list = [(str(Path(d)), s, seed, asdict(settings), jobs > 1)
                 for d in table_dirs for s in strategies for seed in range(settings.seeds)]
    names = {str(Path(d)): ReplayTable.load(d).name for d in table_dirs}
    traces, n = [], len(jobs_list)
    t0 = time.perf_counter()

    errors: dict[tuple[str, str], list[str]] = {}

    def report(k, job, result):
        trace, error = result
        if error:
            echo(f"[{k}/{n}] {job[1]} seed {job[2]} on {names[job[0]]}: FAILED: {error}")
            errors.setdefault((job[1], names[job[0]]), []).append(error)
            return
        traces.append(trace)
        ev, _ = reach(trace)
        echo(f"[{k}/{n}] {job[1]} seed {job[2]} on {names[job[0]]}: {int(trace['evaluation'].max())} evaluations, "
             f"HV ratio {trace['hv_ratio'].iloc[-1]:.3f}, 95% "
             f"{'at ' + format(ev, 'g') + ' evaluations' if np.isfinite(ev) else 'not reached'} "
             f"({trace['run_seconds'].iloc[0]:.1f} s)")

    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_run_job, j): j for j in jobs_list}
            for k, fut in enumerate(as_completed(futures), 1):
                report(k, futures[fut], fut.result())
    else:
        for k, job in enumerate(jobs_list, 1):
            report(k, job, _run_job(job))
    # A strategy that failed on some seed of a table is left out of that table's summary (its surviving seeds
    # would be a biased sample) and named, with the error, among the strategies not run.
    for (strat, tbl), errs in errors.items():
        skipped[f"{strat} on {tbl}" if len(tables) > 1 else strat] = (
            f"FAILED in {len(errs)} of {settings.seeds} runs: {errs[0]}")
    traces = [t for t in traces if (t["strategy"].iloc[0], t["table"].iloc[0]) not in errors]
    if not traces:
        raise RuntimeError("every run failed: " + "; ".join(f"{s}: {w}" for s, w in skipped.items()))
    order = {s: i for i, s in enumerate(strategies)}
    tr = pd.concat(traces, ignore_index=True)
    tr = tr.sort_values(["table", "strategy", "seed", "evaluation"], key=lambda c: c.map(order) if c.name == "strategy"
                        else c, kind="stable").reset_index(drop=True)
    summary = summarize(tr, settings.budget)
    checks = target_check(summary, tables, skipped=skipped)
    disp = display_table(summary)
    paths = {"traces": out_dir / "traces.csv", "summary": out_dir / "summary.csv", "markdown": out_dir / "summary.md",
             "latex": out_dir / "summary.tex", "target_check": out_dir / "target_check.csv",
             "settings": out_dir / "settings.json"}
    tr.to_csv(paths["traces"], index=False)
    summary.to_csv(paths["summary"], index=False)
    pd.DataFrame(checks).to_csv(paths["target_check"], index=False)
    synthetic = [n for n, t in tables.items() if t.synthetic]
    md = ["# Search strategies replayed on measured tables", ""]
    if synthetic:
        md += [f"**SYNTHETIC tables (made-up numbers, not measurements): {', '.join(synthetic)}**", ""]
    md += [f"- {r['name']}: {r['hardware']}, {r['software']}, {r['workload']}, measured {r['date']}; "
           f"{r['candidates']} candidates of a {r['space_size']}-point space"
           f"{' (partial)' if r['partial'] else ''}, true front of {r['front_size']} points"
           f"{' (vLLM default on the front of all rows)' if r['default_on_front'] else ''}; energy {r['energy']}"
           for r in _meta_rows(tables, settings.front_includes_default)]
    md += ["", f"Budget {settings.budget} evaluations (batch {settings.batch_size}, initial design "
               f"{settings.initial_design}{', plus vLLM default' if settings.include_vllm_default else ''}), "
               f"{settings.seeds} seeds, noise {'on' if settings.noise else 'off'}. Judged against the true front of "
               + ("every row, vLLM's default included" if settings.front_includes_default else
                  "the search space's configurations (vLLM's default, evaluated first by every strategy, not counted "
                  "as found)")
               + ". Median [IQR] over seeds; search energy is ESTIMATED (window power x wall time).", "", markdown(disp)]
    if skipped:
        md += ["Not run: " + "; ".join(f"{s} ({w})" for s, w in skipped.items()), ""]
    md += ["## Target check", ""] + [f"- {c['table']}: {c['clause']}: **{c['met']}** ({c['numbers']})" for c in checks]
    paths["markdown"].write_text("\n".join(md) + "\n")
    paths["latex"].write_text(latex_tabular(disp))
    settings_out = {**asdict(settings), "tables": [str(d) for d in table_dirs], "strategies_run": strategies,
                    "strategies_skipped": skipped, "jobs": jobs, "seconds": time.perf_counter() - t0}
    paths["settings"].write_text(json.dumps(settings_out, indent=2) + "\n")
    figs = figures(tr, tables, out_dir / "figures", strategies)
    for name, f in figs.items():
        for kind, p in f.items():
            paths[f"figure_{kind}_{name}"] = p
    if pdf_path:
        built = write_report(out_dir, Path(pdf_path), tables, summary, checks, figs, settings, skipped)
        if built:
            paths["pdf"] = built
    echo("")
    echo("\n".join(md))
    echo(f"written: {', '.join(str(p) for p in paths.values())}")
    return {"paths": paths, "summary": summary, "checks": checks, "skipped": skipped}
