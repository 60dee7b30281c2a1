"""Figures of a run (seaborn/matplotlib): the Pareto front, the hypervolume per iteration, energy per source, the
effect of each knob, the TP/PP trade-off and online-mode latency percentiles.

Every figure is saved as PNG (HTML report, notebook) and, when a PDF path is given, as PDF (LaTeX report). Every
figure that shows energy says in its labels which sources were measured and which estimated. Every figure copes
with a run of one observation, with knobs missing from the observations and with failed runs only.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in PDFs: text stays selectable and searchable in the report
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..records import ESTIMATED, METRICS, SOURCES, metric_label  # noqa: E402
from .analysis import latency_columns  # noqa: E402
from .baseline import role_label  # noqa: E402
from .energy import energy_by_source, energy_qualifier  # noqa: E402
from .knobs import knob_columns  # noqa: E402
from .tables import feasible_rows, highlighted_configs, pareto_table  # noqa: E402


def energy_provenance_note(obs: pd.DataFrame) -> str:
    """``energy: cpu estimated, ram estimated``, from the provenance columns of the successful runs."""
    ok = obs[obs["status"] == "ok"]
    parts = []
    for src in SOURCES:
        kinds = sorted(set(ok.get(f"energy_{src}_provenance", pd.Series(dtype=str)).dropna()) - {""})
        if kinds:
            parts.append(f"{src} {'/'.join(kinds)}")
    return "energy: " + ", ".join(parts) if parts else "energy: none measured"


def _axis_label(metric: str, obs: pd.DataFrame) -> str:
    label = metric_label(metric)
    if metric in METRICS and METRICS[metric].from_energy and ESTIMATED in energy_provenance_note(obs):
        label += " (includes ESTIMATED energy)"
    return label


def pareto_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str, path_pdf: str | None = None,
                  title: str = "") -> None:
    """Every successful configuration coloured by iteration, the front as a step line, vLLM's default and the
    best configurations labelled; two objectives (:mod:`.front_plots` draws three or more)."""
    if len(objectives) != 2:
        raise ValueError(f"pareto_figure draws two objectives, not {len(objectives)}: use "
                         "vllm_mobo.report.front_plots for three or more")
    x, y = objectives[0]["metric"], objectives[1]["metric"]
    ok = obs[obs["status"] == "ok"].copy()
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    if not ok.empty:
        ok["iteration"] = ok["iteration"].astype(int)
        sns.scatterplot(data=ok, x=x, y=y, hue="iteration", palette="viridis", s=60, ax=ax, legend="full")
        front = pareto_table(obs, objectives).sort_values(x)
        ax.step(front[x], front[y], where="post", color="crimson", lw=1.5, label="Pareto front")
        ax.scatter(front[x], front[y], facecolors="none", edgecolors="crimson", s=140, lw=1.5)
        default = ok[ok["is_vllm_default"].astype(bool)]
        if not default.empty:
            ax.scatter(default[x], default[y], marker="*", s=260, color="black", label="vLLM default", zorder=5)
        roles_of: dict[str, list[str]] = {}
        for role, name in highlighted_configs(pareto_table(obs, objectives), objectives).items():  # the tables' order
            roles_of.setdefault(name, []).append(role_label(role))
        xmid, ymid = ok[x].median(), ok[y].median()
        for k, (name, roles) in enumerate(roles_of.items()):
            row = ok[ok["candidate"] == name].iloc[0]
            right, top = row[x] > xmid, row[y] > ymid  # label towards the inside of the axes
            ax.annotate(",\n".join(roles) + f":\n{name}", (row[x], row[y]), textcoords="offset points",
                        xytext=(-30 if right else 30, (-20 - 10 * k) if top else (20 + 10 * k)), fontsize=7,
                        ha="right" if right else "left", va="top" if top else "bottom", zorder=6,
                        bbox={"boxstyle": "round", "fc": "white", "ec": "grey", "alpha": 0.85},
                        arrowprops={"arrowstyle": "-", "color": "grey"})
    failed = int((obs["status"] != "ok").sum())
    ax.set_xlabel(metric_label(x) + f" ({objectives[0]['direction']})")
    ax.set_ylabel("\n".join(textwrap.wrap(_axis_label(y, obs) + f" ({objectives[1]['direction']})", 50)))
    ax.set_title((title + "\n" if title else "") + f"{energy_provenance_note(obs)}; {len(ok)} ok, {failed} failed",
                 fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", title="iteration", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


def hypervolume_figure(hv: pd.DataFrame, path_png: str, title: str = "", path_pdf: str | None = None) -> None:
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(hv["evaluations"], hv["hypervolume"], marker="o")
    for _, r in hv.iterrows():
        ax.annotate(f"iter {int(r['iteration'])}", (r["evaluations"], r["hypervolume"]), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel("evaluations (cumulative)")
    ax.set_ylabel("hypervolume (log objectives)")
    ax.set_title(title or "Hypervolume of the front found so far", fontsize=9)
    _save(fig, path_png, path_pdf)


# ----------------------------------------------------------------------------------------------------- helpers

SOURCE_COLOURS = {"gpu": "#4c72b0", "cpu": "#dd8452", "ram": "#55a868"}
HATCHES = {"measured": "", "estimated": "///", "unknown": "..."}
TP, PP = "tensor_parallel_size", "pipeline_parallel_size"


def _save(fig, path_png: str, path_pdf: str | None = None, rect: tuple | None = None) -> None:
    """Lays ``fig`` out (within ``rect``, figure fractions, where a figure legend needs room) and writes it."""
    fig.tight_layout(rect=rect)
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


def _message_figure(message: str, path_png: str, path_pdf: str | None, title: str = "") -> None:
    """A figure that says why there is nothing to plot (so the report keeps its place and says so)."""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True, transform=ax.transAxes)
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path_png, path_pdf)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# ------------------------------------------------------------------------------------------- energy per source


def energy_sources_figure(obs: pd.DataFrame, path_png: str, path_pdf: str | None = None, title: str = "") -> None:
    """Stacked bars of joules per output token by source (GPU, CPU, RAM) for every successful configuration;
    measured energy solid, estimated energy hatched."""
    e = energy_by_source(obs)
    head = (title + "\n" if title else "") + energy_provenance_note(obs)
    if e.empty:
        _message_figure("no energy recorded for any successful run", path_png, path_pdf, head)
        return
    sns.set_theme(style="whitegrid")
    ok = feasible_rows(obs)
    order = ok.sort_values("joules_per_output_token")["candidate"].tolist()
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(order) + 3), 4.8))
    bottom = np.zeros(len(order))
    for src in SOURCES:
        part = e[e["source"] == src].set_index("candidate")
        if part.empty:
            continue
        heights = np.array([part["joules_per_output_token"].get(c, 0.0) for c in order])
        provs = [part["provenance"].get(c, "unknown") for c in order]
        bars = ax.bar(range(len(order)), heights, bottom=bottom, color=SOURCE_COLOURS[src], edgecolor="black", lw=0.5)
        for bar, prov in zip(bars, provs):
            bar.set_hatch(HATCHES.get(prov, "..."))
        bottom += heights
    default = set(ok[ok["is_vllm_default"].astype(str).str.lower() == "true"]["candidate"])
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([_short(c) + (" (vLLM default)" if c in default else "") for c in order], rotation=45,
                       ha="right", fontsize=7)
    ax.set_ylabel(f"{metric_label('joules_per_output_token')} ({energy_qualifier(obs).upper()})")
    present = [s for s in SOURCES if s in set(e["source"])]
    handles = [Patch(facecolor=SOURCE_COLOURS[s], edgecolor="black", label=s.upper()) for s in present]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=HATCHES[p], label=p)
                for p in ("measured", "estimated")]  # both, so the convention is always stated
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    absent = [s.upper() for s in SOURCES if s not in present]
    ax.set_title(head + (f"; no {'/'.join(absent)} energy recorded" if absent else ""), fontsize=9)
    _save(fig, path_png, path_pdf)


# ------------------------------------------------------------------------------------------------ knob effects


def knob_effects_figure(obs: pd.DataFrame, space_keys, objectives: list[dict], path_png: str,
                        path_pdf: str | None = None, title: str = "") -> None:
    """Marginal effect of each knob: every successful run as a point at its knob value, the mean per value as a
    line; one column per knob of the search space that the observations have, one row per objective."""
    ok = feasible_rows(obs)
    knobs = knob_columns(ok, space_keys)
    head = (title + "\n" if title else "") + "marginal effects (means over the other knobs); " \
        + energy_provenance_note(obs)
    if ok.empty or not knobs:
        why = "no successful run" if ok.empty else "no knob of the search space in the observations"
        _message_figure(why, path_png, path_pdf, head)
        return
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(len(objectives), len(knobs), figsize=(2.6 * len(knobs) + 1, 2.6 * len(objectives) + 0.6),
                             squeeze=False, sharey="row")
    for j, knob in enumerate(knobs):
        sub = ok[ok[knob].notna()].copy()
        sub["_value"] = sub[knob].map(lambda v: str(bool(v)).lower() if isinstance(v, (bool, np.bool_))
                                      else (str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v)))
        order = sorted(sub["_value"].unique(), key=lambda s: (0, float(s)) if s.replace(".", "", 1).isdigit()
                       else (1, s))
        for i, o in enumerate(objectives):
            ax = axes[i][j]
            pos = sub["_value"].map({v: k for k, v in enumerate(order)}).to_numpy(dtype=float)
            ax.scatter(pos, sub[o["metric"]], color="grey", s=22, zorder=3, label="run")
            means = sub.groupby("_value")[o["metric"]].mean().reindex(order)
            ax.plot(range(len(order)), means.to_numpy(), color="crimson", marker="D", lw=1.5, ms=5, alpha=0.8,
                    label="mean per value")
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels(order)
            ax.set_xlim(-0.5, len(order) - 0.5)
            ax.set_xlabel(knob if i == len(objectives) - 1 else "", fontsize=8)
            ax.set_ylabel(_axis_label(o["metric"], obs) if j == 0 else "", fontsize=7)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(head + f"; {len(ok)} successful run(s)", fontsize=9)
    _save(fig, path_png, path_pdf)


# ----------------------------------------------------------------------------------------------- TP x PP


def tp_pp_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str, path_pdf: str | None = None,
                 title: str = "") -> None:
    """Heatmaps of the best value of each objective per tensor_parallel_size x pipeline_parallel_size (with the
    number of runs), from the columns of the observations (enrich them with the resolved engine args first)."""
    ok = feasible_rows(obs)
    head = (title + "\n" if title else "") + "best value per TP x PP; " + energy_provenance_note(obs)
    if ok.empty or TP not in ok or PP not in ok or ok[[TP, PP]].isna().all().any():
        _message_figure("no successful run with known tensor/pipeline parallel sizes", path_png, path_pdf, head)
        return
    ok = ok[ok[TP].notna() & ok[PP].notna()].copy()
    ok[TP], ok[PP] = ok[TP].astype(int), ok[PP].astype(int)
    sns.set_theme(style="white")
    fig, axes = plt.subplots(1, len(objectives), figsize=(4.2 * len(objectives), 3.6), squeeze=False)
    for ax, o in zip(axes[0], objectives):
        agg = "max" if o["direction"] == "maximize" else "min"
        best = ok.pivot_table(index=PP, columns=TP, values=o["metric"], aggfunc=agg)
        n = ok.pivot_table(index=PP, columns=TP, values=o["metric"], aggfunc="count")
        annot = best.map(lambda v: f"{v:.3g}" if pd.notna(v) else "").astype(str) + "\n(n=" \
            + n.fillna(0).astype(int).astype(str) + ")"
        sns.heatmap(best, annot=annot.to_numpy(), fmt="", cmap="viridis" if agg == "max" else "viridis_r",
                    cbar=False, ax=ax, annot_kws={"fontsize": 8})
        ax.set_xlabel("tensor_parallel_size")
        ax.set_ylabel("pipeline_parallel_size")
        ax.set_title(f"{agg} {_axis_label(o['metric'], obs)}", fontsize=8)
    combos = len(ok.groupby([TP, PP]))
    fig.suptitle(head + (f"; only TP={ok[TP].iloc[0]} x PP={ok[PP].iloc[0]} evaluated" if combos == 1 else ""),
                 fontsize=9)
    _save(fig, path_png, path_pdf)


# ----------------------------------------------------------------------------------------------- latency


def latency_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str, path_pdf: str | None = None,
                   title: str = "") -> None:
    """Online-mode latency percentiles (TTFT, TPOT, ITL, E2EL ...) per configuration: one panel per latency
    metric, percentile on x; the Pareto configurations and vLLM's default are drawn, or every run when few.
    Says "no online-mode run" when the observations have no latency columns."""
    cols = latency_columns(feasible_rows(obs))
    head = title
    if not cols:
        _message_figure("no online-mode run: the observations have no latency-percentile columns", path_png,
                        path_pdf, head)
        return
    ok = feasible_rows(obs)
    front = set(pareto_table(obs, objectives)["candidate"]) if len(ok) else set()
    shown = ok if len(ok) <= 8 else ok[ok["candidate"].isin(front) | (ok["is_vllm_default"].astype(str).str.lower()
                                                                       == "true")]
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols) + 1.5, 3.8), squeeze=False)
    for ax, (metric, pcts) in zip(axes[0], cols.items()):
        for _, r in shown.iterrows():
            xs = [p for p, c in pcts if pd.notna(r[c])]
            ys = [r[c] for p, c in pcts if pd.notna(r[c])]
            style = "-" if r["candidate"] in front else "--"
            is_default = str(r.get("is_vllm_default")).lower() == "true"
            ax.plot(xs, ys, style, marker="*" if is_default else "o", ms=8 if is_default else 4,
                    label=_short(r["candidate"]) + (" (default)" if is_default else ""))
        ax.set_xlabel("percentile")
        ax.set_ylabel(f"{metric.upper()} (ms)")
        ax.set_xticks([p for p, _ in pcts])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="center right")
    fig.suptitle((title + "\n" if title else "") + "latency percentiles (solid: Pareto set, dashed: others)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)
