"""The strategy comparison presented: the summary table (Markdown, LaTeX), HV-ratio figures and the PDF report."""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..records import VLLM_DEFAULT, metric_label
from ..resources import resource
from .scoring import CHECK_AT, STRATEGIES, THRESHOLD, default_strategy, target_wording
from .table import ReplayTable

if TYPE_CHECKING:
    from .compare import Settings

TEMPLATE = resource("optimizer_benchmark.tex")


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


def display_table(summary: pd.DataFrame, check_at: tuple[int, ...] = CHECK_AT) -> pd.DataFrame:
    """The summary as people read it: one row per table x strategy, median [IQR] cells; the judging yardstick
    (reference point beyond the true front's nadir) first, the lenient all-rows one after it (``old ref.``)."""
    check_at = (check_at,) if isinstance(check_at, int) else tuple(check_at)
    rows = []
    for _, r in summary.iterrows():
        b = int(r["budget"])

        def hv(col, k=None):
            c = f"{col}_at_{k}" if k else col
            return _iqr(r[f"{c}_q25"], r[f"{c}_median"], r[f"{c}_q75"], "{:.3f}")

        row = {"table": r["table"], "strategy": r["strategy"], "seeds": int(r["seeds"])}
        row.update({f"HV ratio at {k}": hv("hv_ratio", k) for k in check_at if k < b})
        row[f"HV ratio at {b}"] = hv("hv_ratio")
        row.update({
            "evals to 95%": _iqr(r["evals_to_95_q25"], r["evals_to_95_median"], r["evals_to_95_q75"], "{:g}", b),
            "reached 95%": f"{r['reached_95_share']:.0%}",
            "search kJ to 95% (est.)": _iqr(r["energy_to_95_j_q25"] / 1e3, r["energy_to_95_j_median"] / 1e3,
                                            r["energy_to_95_j_q75"] / 1e3, "{:.3g}"),
            "true front found": f"{r['pareto_found_share_median']:.0%} of {int(r['true_pareto_size'])}",
        })
        if "hv_ratio_all_rows_ref_median" in r:
            k = max([k for k in check_at if k <= b], default=b)
            row[f"HV ratio at {k} (old ref.)"] = hv("hv_ratio_all_rows_ref", k if k < b else None)
            row["evals to 95% (old ref.)"] = _iqr(r["evals_to_95_all_rows_ref_q25"], r["evals_to_95_all_rows_ref_median"],
                                                  r["evals_to_95_all_rows_ref_q75"], "{:g}", b)
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False) + "\n"


def latex_tabular(df: pd.DataFrame) -> str:
    """A booktabs tabular, every header and cell escaped for LaTeX."""
    from ..report.analysis import latex_escape

    escaped = df.rename(columns=latex_escape).map(lambda v: latex_escape(str(v)))
    return escaped.to_latex(index=False, escape=False, column_format="l" * len(df.columns))


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
    """Per table: ``hv_vs_evaluations_<dir>`` and ``hv_vs_energy_<dir>`` (PNG and PDF; ``<dir>`` the table's folder name): median line and IQR
    band per strategy, the 95% line dashed. Returns {table: {"evaluations": pdf, "energy": pdf}}."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    known = STRATEGIES + [s for s in strategies if s not in STRATEGIES]
    palette = dict(zip(known, sns.color_palette("tab10", len(known))))
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
            ax.set_ylabel("HV / true front's HV\n(reference just beyond the front's nadir)", fontsize=8)
            ax.set_title(f"{table_title(table)}{noise}\nmedian and IQR over {tr['seed'].nunique()} seeds, "
                         f"{len(table.candidates())} candidates, true front of {int(tr['true_pareto_size'].iloc[0])} points",
                         fontsize=8)
            ax.legend(fontsize=7, title="strategy", title_fontsize=7, loc="lower right")
            fig.tight_layout()
            stem = out_dir / f"hv_vs_{kind}_{table.path.name}"
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
            "objectives": ", ".join(f"{metric_label(o['metric'])} ({o['direction']})" for o in t.objectives),
        })
    return rows


def reference_rows(tables: dict[str, ReplayTable], with_default: bool) -> list[dict]:
    """Per table, both reference points in the objectives' own units (the log space undone), for the report."""
    out = []
    for name, t in tables.items():
        def units(ref):
            return ", ".join(f"{o['metric']} {math.exp(-v if o['direction'] == 'maximize' else v):.4g}"
                             for o, v in zip(t.objectives, ref))
        out.append({"table": name, "front": units(t.front_reference_point(with_default=with_default)),
                    "all_rows": units(t.reference_point())})
    return out


def write_report(out_dir: Path, pdf_path: Path, tables: dict[str, ReplayTable], summary: pd.DataFrame,
                 checks: list[dict], figs: dict, settings: Settings, skipped: dict[str, str]) -> Path | None:
    """Fill the packaged optimizer_benchmark.tex and build ``pdf_path`` with latexmk (None, with a message, when
    latexmk is missing)."""
    from ..report.latex import Raw, render_latex

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
        "ours": default_strategy(),
        "target": target_wording(default_strategy()),
        "references": reference_rows(tables, settings.front_includes_default),
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
