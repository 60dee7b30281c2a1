"""The confirmed front: each confirmed configuration at the mean of its repeats with 95% interval bars, the front
of the means as a step line and vLLM's default marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["pdf.fonttype"] = 42
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..records import VLLM_DEFAULT, metric_label  # noqa: E402


def confirmed_front_figure(means: pd.DataFrame, front: pd.DataFrame, objectives: list[dict], repeats: int,
                           path_png: str, path_pdf: str | None = None, title: str = "",
                           energy_note: str = "") -> None:
    """Means with 95% confidence intervals of the first two objectives (x: first, y: second)."""
    x, y = objectives[0]["metric"], objectives[1]["metric"]
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    on_front = set(front["candidate"]) if len(front) else set()
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
        ax.annotate(label, (r[x], r[y]), textcoords="offset points", xytext=(-6 if right else 6, 6), fontsize=7,
                    ha="right" if right else "left", zorder=5)
    if len(front) > 1:
        f = front.sort_values(x)
        ax.step(f[x], f[y], where="post", color="crimson", lw=1.2, alpha=0.7, label="confirmed front (means)")
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel(f"{metric_label(x)} ({objectives[0]['direction']})")
    ax.set_ylabel(f"{metric_label(y)} ({objectives[1]['direction']})")
    ax.set_title((title + "\n" if title else "") + f"confirmation: mean of {repeats} fresh-engine repeats; bars: "
                 "95% confidence interval of each mean\n(the differences to vLLM's default, paired by round, are in "
                 "the report)" + (f"\n{energy_note}" if energy_note else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)
