"""How many benchmarks each search strategy needs: the pipeline's search replayed on measured tables.

For every strategy x table x seed, the real search loop runs (:func:`vllm_mobo.search.plan.plan_iteration`, iteration
by iteration, as the pipeline's ``propose`` checkpoint calls it) and every proposed candidate is answered by the
replay backend (:class:`vllm_mobo.replay.table.ReplayTable`) instead of vLLM: no GPU, no engine, the table's measured
values. The stop rule is disabled (``stop_relative_ehvi: 0``); the relative EHVI each proposal reports is kept in
the trace. After every evaluation the trace records:

- ``hv_ratio``: hypervolume of the feasible configurations found so far over the hypervolume of the table's true
  front, both on the table's true values, in log-objective (minimisation) space, with the reference point just
  beyond the true front's nadir (:meth:`ReplayTable.front_reference_point`: + 1% of the front's range), so that
  only points near the front score; 2 to 4 objectives, the table's own (``meta.yaml``);
- ``hv_ratio_all_rows_ref``: the same with the lenient reference point of earlier reports (the nadir of all
  feasible rows + 10% of their range, as :func:`vllm_mobo.report.tables.hypervolume_by_iteration`), for continuity;
- ``cumulative_energy_j``: the search's own energy, the sum of :func:`vllm_mobo.records.evaluation_energy_j` of the
  evaluated rows (window power x wall time: ESTIMATED); a failure measured no energy, so it costs its wall time x
  the table's median power per device x the devices it used (ESTIMATED as well);
- the share of the true Pareto points found.

:func:`summarize` reduces the traces per strategy x table (median and IQR over seeds); :func:`figures` draws HV
ratio against evaluations and against search energy; :func:`target_check` states the project's target clause by
clause; :func:`write_report` fills the packaged ``optimizer_benchmark.tex`` and builds the PDF with latexmk.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..records import VLLM_DEFAULT, as_record
from ..resources import resource
from .compare_report import _meta_rows, display_table, figures, latex_tabular, markdown, table_title, write_report
from .scoring import STRATEGIES, default_strategy, reach, summarize, target_check, target_wording
from .table import REFERENCES, ReplayTable

EST_WINDOW = "estimated: window power x wall time"
EST_FAILURE = "estimated: median power per device x wall time (failure)"


# ------------------------------------------------------------------------------------------------ strategies

def _optimizer_schema() -> dict:
    # read the YAML directly: importing vllm_mobo.config imports jsonschema, which takes seconds to start
    import yaml

    with open(resource("config.schema.yaml")) as fh:
        return yaml.safe_load(fh)["properties"]["optimizer"]


def available_strategies() -> list[str]:
    """Strategies this checkout implements: the optimiser's registry (``vllm_mobo.search.optimizer.strategies``) where
    it exists, else the values the config schema allows for ``optimizer.strategy``."""
    try:
        from ..search.optimizer import strategies as registry
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
        from ..search.optimizer import strategies as registry
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


def unfit_pairs(strategies: list[str], tables: dict[str, ReplayTable]) -> dict[tuple[str, str], str]:
    """{(strategy, table): why} for a strategy that cannot search a table: a 2-objective-only one (the registry's
    ``TWO_OBJECTIVES``) on a table of 3-4 objectives."""
    try:
        from ..search.optimizer.strategies import TWO_OBJECTIVES
    except ImportError:
        TWO_OBJECTIVES = set()
    return {(s, name): f"handles 2 objectives only; table {name} has {len(t.objectives)}"
            for s in strategies if s in TWO_OBJECTIVES for name, t in tables.items() if len(t.objectives) != 2}


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


def evaluation_cost_j(table: ReplayTable, record: dict, median_power_w: float) -> tuple[float, str]:
    """(joules, how) of one replayed evaluation, from the noiseless record."""
    e = as_record(record).evaluation_energy_j if record["status"] == "ok" else float("nan")
    if np.isfinite(e):
        return e, EST_WINDOW
    wall = (record.get("timing") or {}).get("wall_s")
    if wall is None or not np.isfinite(wall):
        walls = table.rows["wall_s"].dropna() if "wall_s" in table.rows else pd.Series(dtype=float)
        wall = float(walls.median()) if len(walls) else 0.0
    return float(wall) * median_power_w * int(record.get("devices_used") or 1), EST_FAILURE


def run_search(table: ReplayTable | str | Path, strategy: str, seed: int, settings: Settings) -> pd.DataFrame:
    """One replayed search: the trace, one row per evaluation (see the module's docstring)."""
    from ..search import plan as search

    table = table if isinstance(table, ReplayTable) else _table(table)
    optimizer = {**optimizer_defaults(), **settings.optimizer, "strategy": strategy, "seed": int(seed),
                 "budget": settings.budget, "batch_size": settings.batch_size,
                 "initial_design": settings.initial_design, "include_vllm_default": settings.include_vllm_default,
                 "stop_relative_ehvi": 0.0}
    config = table.pipeline_config(optimizer)
    objectives = table.objectives
    judged = settings.front_includes_default
    true_front = set(table.true_front(objectives, judged)["candidate"])
    true_hv = {ref: table.true_hypervolume(objectives, judged, ref) for ref in REFERENCES}
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
            hv = {ref: table.hypervolume_of(found, objectives, judged, ref) for ref in REFERENCES}
            rows.append({
                "table": table.name, "strategy": strategy, "seed": int(seed), "evaluation": len(records),
                "iteration": iteration, "candidate": name, "status": truth["replay"]["status"],
                "eval_energy_j": cost, "eval_energy_method": how, "cumulative_energy_j": cumulative,
                "hypervolume": hv["front"], "hv_ratio": _ratio(hv["front"], true_hv["front"]),
                "hypervolume_all_rows_ref": hv["all_rows"],
                "hv_ratio_all_rows_ref": _ratio(hv["all_rows"], true_hv["all_rows"]),
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


def _ratio(hv: float, true_hv: float) -> float:
    return hv / true_hv if true_hv > 0 else float("nan")


def reference_points(table: ReplayTable, with_default: bool) -> dict[str, list[float]]:
    """Both reference points of a table in log-objective (minimisation) space, by objective: for settings.json."""
    refs = {"front": table.front_reference_point(with_default=with_default), "all_rows": table.reference_point()}
    return {ref: [float(v) for v in refs[ref]] for ref in REFERENCES}


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
    names = {str(Path(d)): ReplayTable.load(d).name for d in table_dirs}
    unfit = unfit_pairs(strategies, tables)
    for (s, tbl), why in unfit.items():
        skipped[f"{s} on {tbl}" if len(tables) > 1 else s] = why
        echo(f"SKIPPING strategy {s!r} on {tbl}: {why}")
    jobs_list = [(str(Path(d)), s, seed, asdict(settings), jobs > 1)
                 for d in table_dirs for s in strategies if (s, names[str(Path(d))]) not in unfit
                 for seed in range(settings.seeds)]
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
               + ", in log-objective space with the reference point just beyond the true front's nadir (+ 1% of the "
                 "front's range per objective: HV ratio); `old ref.`: the lenient reference point of earlier reports "
                 "(nadir of every feasible row + 10%), for continuity. Median [IQR] over seeds; search energy is "
                 "ESTIMATED (window power x wall time).", "", markdown(disp)]
    if skipped:
        md += ["Not run: " + "; ".join(f"{s} ({w})" for s, w in skipped.items()), ""]
    md += ["## Target check", "", f"Target: {target_wording(default_strategy())}.", ""] + [f"- {c['table']}: {c['clause']}: **{c['met']}** ({c['numbers']})" for c in checks]
    paths["markdown"].write_text("\n".join(md) + "\n")
    paths["latex"].write_text(latex_tabular(disp))
    settings_out = {**asdict(settings), "tables": [str(d) for d in table_dirs], "strategies_run": strategies,
                    "strategies_skipped": skipped, "jobs": jobs, "seconds": time.perf_counter() - t0,
                    "reference_points_log_min": {n: reference_points(t, settings.front_includes_default)
                                                 for n, t in tables.items()}}
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
