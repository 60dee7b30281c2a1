"""What the profiles say: the explanation text, the breakdown figure and the LaTeX section of the report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .breakdown import CATEGORIES, CATEGORY_LABELS, KERNEL_PATTERNS


def status_sentences(status: pd.DataFrame) -> list[str]:
    """What was profiled, in sentences: "not profiled: nsys not found" when nothing was."""
    if status.empty:
        return ["not profiled: no configuration was selected (profile.configs is empty)"]
    done = status[status["status"] == "profiled"]
    out = []
    reasons = status.loc[status["status"] != "profiled", "reason"].dropna().unique().tolist()
    if done.empty and len(reasons) == 1:
        return [f"{reasons[0]} (configurations: {', '.join(c for c in status['candidate'] if c)})."]
    if len(done):
        out.append("Profiled under Nsight Systems: " + "; ".join(
            f"{r.candidate} ({r.roles}, TP={r.tensor_parallel_size}, PP={r.pipeline_parallel_size})"
            for r in done.itertuples()) + ".")
    for r in status[status["status"] != "profiled"].itertuples():
        out.append(f"{r.candidate or r.roles}: {r.status}: {r.reason}.")
    return out


def _mean_pct(bd: pd.DataFrame, cand: str, col: str) -> float:
    return float(bd.loc[bd["candidate"] == cand, col].mean())


def _describe(bd: pd.DataFrame, cand: str) -> str:
    rows = bd[bd["candidate"] == cand]
    has_idle = rows["idle_pct"].notna().any()
    parts = [f"{CATEGORY_LABELS[c]} {_mean_pct(bd, cand, f'{c}_pct'):.1f}%" for c in CATEGORIES]
    if has_idle:
        parts.append(f"idle {_mean_pct(bd, cand, 'idle_pct'):.1f}%")
    what = "of the measured window, mean over its GPUs" if has_idle else "of its GPU time (no measured window)"
    return ", ".join(parts) + f" ({what})"


def explain(status: pd.DataFrame, breakdown: pd.DataFrame, observations: pd.DataFrame,
            objectives: list[dict]) -> list[str]:
    """A short explanation, from the profiles and the benchmark results only, of why TP or PP wins for this
    workload; it says plainly when nothing was profiled or no TP/PP > 1 configuration was."""
    out = status_sentences(status)
    prof = status[status["status"] == "profiled"]
    bd = breakdown[breakdown["candidate"].isin(prof["candidate"])] if len(breakdown) else breakdown
    if prof.empty or bd.empty:
        out.append("No configuration was profiled, so no TP > 1 or PP > 1 configuration was either: these "
                   "results hold no kernel-level evidence of why TP or PP wins for this workload.")
        return out
    obs = pd.DataFrame()
    if "candidate" in observations:
        ok = observations[observations["status"] == "ok"] if "status" in observations else observations
        obs = ok.drop_duplicates("candidate", keep="last").set_index("candidate")

    def metrics(cand: str) -> str:
        if cand not in obs.index:
            return "not benchmarked in the search"
        r = obs.loc[cand]
        r = r.iloc[0] if isinstance(r, pd.DataFrame) else r
        return ", ".join(f"{float(r[o['metric']]):.4g} {o['metric'].replace('_', ' ')}" for o in objectives
                         if o["metric"] in r and pd.notna(r[o["metric"]]))

    for r in prof.itertuples():
        if r.candidate in set(bd["candidate"]):
            out.append(f"{r.candidate} (TP={r.tensor_parallel_size}, PP={r.pipeline_parallel_size}; "
                       f"{metrics(r.candidate)}): {_describe(bd, r.candidate)}.")
    tp = prof[prof["tensor_parallel_size"] > 1]
    pp = prof[prof["pipeline_parallel_size"] > 1]
    if tp.empty and pp.empty:
        out.append("None of the profiled configurations uses TP > 1 or PP > 1 (each ran on one GPU), so these "
                   "profiles cannot show why TP or PP wins for this workload. To compare them, add e.g. "
                   "{tensor_parallel_size: 2} and {pipeline_parallel_size: 2} to profile.configs.")
        return out
    has_idle = bd["idle_pct"].notna().any()

    def overhead(cand: str) -> float:
        return _mean_pct(bd, cand, "communication_pct") + (_mean_pct(bd, cand, "idle_pct") if has_idle else 0.0)

    for label, group, comm_what, idle_what in (
            ("TP", tp, "the all-reduces TP needs after each attention and MLP block", "no kernel or copy running"),
            ("PP", pp, "sending activations between stages", "pipeline bubbles: one stage waiting for the other")):
        for r in group.itertuples():
            comm = _mean_pct(bd, r.candidate, "communication_pct")
            idle = _mean_pct(bd, r.candidate, "idle_pct")
            size = r.tensor_parallel_size if label == "TP" else r.pipeline_parallel_size
            out.append(f"Under {label}={size} ({r.candidate}) each GPU spends {comm:.1f}% of its time in "
                       f"communication kernels ({comm_what})" + (f" and is idle {idle:.1f}% of the measured "
                                                                 f"window ({idle_what})" if has_idle else "")
                       + ", on average over its GPUs.")
    if tp.empty or pp.empty:
        missing = "PP > 1" if pp.empty else "TP > 1"
        out.append(f"No {missing} configuration was profiled, so the profiles cannot compare TP with PP here.")
        return out
    thr = next((o for o in objectives if not o["metric"].startswith("joules")), objectives[0])
    a, b = tp.iloc[0]["candidate"], pp.iloc[0]["candidate"]
    va = vb = None
    if a in obs.index and b in obs.index and thr["metric"] in obs.columns:
        va, vb = float(obs.loc[a, thr["metric"]]), float(obs.loc[b, thr["metric"]])
    elif "profiled_output_tokens_per_s" in prof and prof[prof["candidate"].isin([a, b])][
            "profiled_output_tokens_per_s"].notna().sum() == 2:  # not both benchmarked: the profiled runs' own
        thr = {"metric": "output_tokens_per_s (measured under nsys)", "direction": "maximize"}
        va, vb = (float(prof.loc[prof["candidate"] == c, "profiled_output_tokens_per_s"].iloc[0]) for c in (a, b))
    if va is not None:
        better_tp = (va > vb) == (thr["direction"] == "maximize")
        win, lose = (a, b) if better_tp else (b, a)
        won = "TP" if better_tp else "PP"
        ow, ol = overhead(win), overhead(lose)
        what = "communication + idle" if has_idle else "communication"
        if ow < ol:
            out.append(f"{won} wins on {thr['metric'].replace('_', ' ')} for this workload ({win}: "
                       f"{va if better_tp else vb:.4g} vs {lose}: {vb if better_tp else va:.4g}), consistent with "
                       f"the profiles: its GPUs lose {ow:.1f}% of their time to {what}, against {ol:.1f}%.")
        else:
            out.append(f"{won} wins on {thr['metric'].replace('_', ' ')} ({win}: {va if better_tp else vb:.4g} "
                       f"vs {lose}: {vb if better_tp else va:.4g}) although its GPUs lose as much or more time "
                       f"to {what} ({ow:.1f}% vs {ol:.1f}%): the difference lies in the compute kernels "
                       f"themselves (GEMM {_mean_pct(bd, win, 'gemm_pct'):.1f}% vs "
                       f"{_mean_pct(bd, lose, 'gemm_pct'):.1f}%, attention {_mean_pct(bd, win, 'attention_pct'):.1f}% "
                       f"vs {_mean_pct(bd, lose, 'attention_pct'):.1f}%), not in communication or bubbles.")
    else:
        out.append(f"{a} or {b} has no benchmark result in the search, so which of TP and PP wins is not known "
                   "from this run.")
    return out


def patterns_text() -> str:
    """The classification rules in one line, for the reports."""
    return "; ".join(f"{CATEGORY_LABELS[c]}: /{p}/" for c, p in KERNEL_PATTERNS) + \
        "; anything else: other kernels. First match wins, case-insensitive."


def pattern_list() -> list[dict]:
    """The classification rules as (category, alternatives) for the LaTeX report, breakable between them."""
    return [{"category": CATEGORY_LABELS[c], "alternatives": p.split("|")} for c, p in KERNEL_PATTERNS]


def gpu_label(device: str) -> str:
    """``NVIDIA H100 80GB HBM3 (1)`` (nsys's device column) -> ``GPU 1``; other labels unchanged."""
    m = re.search(r"\((\d+)\)$", str(device))
    return f"GPU {m.group(1)}" if m else str(device)


COLORS = {"gemm": "#4c72b0", "attention": "#dd8452", "communication": "#c44e52", "memory": "#8172b3",
          "other": "#937860", "idle": "#d0d0d0"}


def breakdown_figure(status: pd.DataFrame, breakdown: pd.DataFrame, path_png: str, path_pdf: str | None = None,
                     title: str = "") -> None:
    """Stacked bars, one per profiled configuration and GPU: the share of the measured window spent in each
    category and idle. Without profiles: a figure that says why (the status sentence)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["pdf.fonttype"] = 42
    import textwrap

    import matplotlib.pyplot as plt

    if breakdown is None or breakdown.empty:
        fig, ax = plt.subplots(figsize=(8, 2.6))
        ax.axis("off")
        text = "\n".join(textwrap.fill(s, 90) for s in status_sentences(status))
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
        ax.set_title(("GPU time breakdown (Nsight Systems) — " + title).strip(" —"), fontsize=11)
    else:
        bd = breakdown.reset_index(drop=True)
        labels = [f"{r.candidate}\n{r.roles}; TP{int(r.tensor_parallel_size)} PP{int(r.pipeline_parallel_size)}"
                  f" · {gpu_label(r.gpu)}" for r in bd.itertuples()]
        cats = list(CATEGORIES) + (["idle"] if bd["idle_pct"].notna().any() else [])
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.55 * len(bd)))
        left = np.zeros(len(bd))
        for c in cats:
            vals = bd[f"{c}_pct"].fillna(0).to_numpy(dtype=float)
            ax.barh(range(len(bd)), vals, left=left, color=COLORS[c], label=CATEGORY_LABELS[c], edgecolor="white")
            for i, v in enumerate(vals):
                if v >= 6:
                    ax.text(left[i] + v / 2, i, f"{v:.0f}%", ha="center", va="center", fontsize=7, color="white")
            left += vals
        ax.set_yticks(range(len(bd)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(100.0, float(left.max())))
        ax.set_xlabel("% of the measured window per GPU" if "idle" in cats else "% of GPU kernel + copy time")
        ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(len(bd), 1)))
        ax.set_title(("GPU time breakdown (Nsight Systems) — " + title).strip(" —"), fontsize=11)
    fig.tight_layout()
    fig.savefig(path_png, dpi=130)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


def read_tables(status_csv: Path | str, breakdown_csv: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    status = pd.read_csv(status_csv, keep_default_na=False, na_values=[""])
    status["candidate"] = status["candidate"].fillna("")
    bd = pd.read_csv(breakdown_csv)
    return status, bd


def latex_section(status_csv, breakdown_csv, explanation_txt, figure_pdf) -> dict:
    """What the report's profiling section shows: sentences, the status and breakdown tables, the figure."""
    from ..report.analysis import fmt
    from ..report.latex import Raw, table

    status, bd = read_tables(status_csv, breakdown_csv)
    text = [p for p in Path(explanation_txt).read_text().split("\n\n") if p.strip()]
    st = status[["candidate", "roles", "tensor_parallel_size", "pipeline_parallel_size", "status", "reason"]]
    st = st.rename(columns={"tensor_parallel_size": "TP", "pipeline_parallel_size": "PP"})
    ctx = {"text": [" ".join(p.split()) for p in text], "status": table(st.fillna("").map(fmt)),
           "breakdown": None, "figure": None, "patterns": pattern_list()}
    if not bd.empty:
        cols = ["candidate", "gpu"] + [f"{c}_pct" for c in (*CATEGORIES, "idle")]
        t = bd[cols].copy()
        t["gpu"] = t["gpu"].map(gpu_label)
        t = t.rename(columns={f"{c}_pct": f"{CATEGORY_LABELS[c].split(' (')[0]} %" for c in (*CATEGORIES, "idle")})
        ctx["breakdown"] = table(t.map(lambda v: f"{v:.1f}" if isinstance(v, float) and not np.isnan(v)
                                       else ("" if isinstance(v, float) else v)))
        ctx["figure"] = Raw(Path(figure_pdf).as_posix())
    return ctx
