"""The confirmed front: each confirmed configuration at the mean of its repeats with 95% interval bars and vLLM's
default marked; two objectives in one panel with the front of the means as a step line, three or more in one panel
per objective pair."""

from __future__ import annotations

from itertools import combinations

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["pdf.fonttype"] = 42
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..records import VLLM_DEFAULT, metric_label  # noqa: E402


def _error_bars(ax, means: pd.DataFrame, on_front: set, x: str, y: str, fontsize: float = 7) -> None:
    """Each configuration's mean on (x, y) with its 95% intervals, labelled towards the inside of the axes."""
    for _, r in means.iterrows():
        default = r["candidate"] == VLLM_DEFAULT
        colour = "black" if default else ("crimson" if r["candidate"] in on_front else "grey")
        xerr = [[r[x] - r[f"{x}_ci_low"]], [r[f"{x}_ci_high"] - r[x]]]
        yerr = [[r[y] - r[f"{y}_ci_low"]], [r[f"{y}_ci_high"] - r[y]]]
        ax.errorbar(r[x], r[y], xerr=xerr, yerr=yerr, fmt="*" if default else "o", ms=14 if default else 7,
                    color=colour, capsize=3, lw=1.2, zorder=4)
        label = "vLLM default" if default else r["candidate"]
        if not r["feasible"]:
            label += f" ({r['usable']} of {r['repeats']} repeats usable)"
        right = r[x] > means[x].median()  # label towards the inside of the axes
        ax.annotate(label, (r[x], r[y]), textcoords="offset points", xytext=(-6 if right else 6, 6), fontsize=fontsize,
                    ha="right" if right else "left", zorder=5)


def _title(title: str, repeats: int, energy_note: str) -> str:
    return (title + "\n" if title else "") + f"confirmation: mean of {repeats} fresh-engine repeats; bars: 95% " \
        "confidence interval of each mean\n(the differences to vLLM's default, paired by round, are in the report)" \
        + (f"\n{energy_note}" if energy_note else "")


def confirmed_front_figure(means: pd.DataFrame, front: pd.DataFrame, objectives: list[dict], repeats: int,
                           path_png: str, path_pdf: str | None = None, title: str = "",
                           energy_note: str = "") -> None:
    """Means with 95% confidence intervals: two objectives in one panel (x: first, y: second, the front of the
    means as a step line); three or more in one panel per objective pair (front configurations crimson)."""
    if len(objectives) > 2:
        _pairwise_figure(means, front, objectives, repeats, path_png, path_pdf, title, energy_note)
        return
    x, y = objectives[0]["metric"], objectives[1]["metric"]
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    on_front = set(front["candidate"]) if len(front) else set()
    _error_bars(ax, means, on_front, x, y)
    if len(front) > 1:
        f = front.sort_values(x)
        ax.step(f[x], f[y], where="post", color="crimson", lw=1.2, alpha=0.7, label="confirmed front (means)")
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel(f"{metric_label(x)} ({objectives[0]['direction']})")
    ax.set_ylabel(f"{metric_label(y)} ({objectives[1]['direction']})")
    ax.set_title(_title(title, repeats, energy_note), fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


def _pairwise_figure(means: pd.DataFrame, front: pd.DataFrame, objectives: list[dict], repeats: int,
                     path_png: str, path_pdf: str | None, title: str, energy_note: str) -> None:
    pairs = list(combinations(objectives, 2))
    ncols = min(3, len(pairs))
    nrows = -(-len(pairs) // ncols)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows + 1.0), squeeze=False)
    on_front = set(front["candidate"]) if len(front) else set()
    for ax, (a, b) in zip(axes.flat, pairs):
        _error_bars(ax, means, on_front, a["metric"], b["metric"], fontsize=5)
        ax.set_xlabel(f"{metric_label(a['metric'])} ({a['direction']})", fontsize=8)
        ax.set_ylabel(f"{metric_label(b['metric'])} ({b['direction']})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    fig.suptitle(_title(title, repeats, energy_note) + "\ncrimson: the confirmed front on all objectives together; "
                 "star: vLLM's default", fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)
