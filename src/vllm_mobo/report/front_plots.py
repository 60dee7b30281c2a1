"""Figures of a front of three or more objectives (matplotlib): a pairwise scatter matrix and a parallel-coordinates
plot. With two objectives :func:`vllm_mobo.report.plots.pareto_figure` shows the front instead.

Both mark the front's configurations (crimson), vLLM's default (black star or dashed line) and the other feasible
configurations (grey); axis labels state each objective's direction, and energy axes say when energy was estimated.
Both cope with a run of no or one successful observation.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["pdf.fonttype"] = 42
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..records import metric_label  # noqa: E402
from .baseline import role_label  # noqa: E402
from .plots import _axis_label, _message_figure, _save, _short, energy_provenance_note  # noqa: E402
from .tables import feasible_rows, highlighted_configs, pareto_table  # noqa: E402

FRONT, OTHER, DEFAULT = "crimson", "#9a9a9a", "black"


def _groups(obs: pd.DataFrame, objectives: list[dict]) -> tuple[pd.DataFrame, set[str], pd.DataFrame]:
    """(feasible rows, names on the front, vLLM's default row(s) among them)."""
    ok = feasible_rows(obs)
    front = set(pareto_table(obs, objectives)["candidate"]) if len(ok) else set()
    default = ok[ok["is_vllm_default"].astype(str).str.lower() == "true"] if "is_vllm_default" in ok else ok.iloc[0:0]
    return ok, front, default


def _head(obs: pd.DataFrame, ok: pd.DataFrame, front: set[str], title: str) -> str:
    failed = int((obs["status"] != "ok").sum()) if len(obs) else 0
    return (title + "\n" if title else "") + f"{energy_provenance_note(obs)}; {len(ok)} feasible, {failed} failed, " \
        f"{len(front)} on the Pareto front"


def pareto_matrix_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str, path_pdf: str | None = None,
                         title: str = "") -> None:
    """Lower triangle: every pair of objectives as a scatter of the feasible configurations (front crimson, others
    grey, vLLM's default a star); diagonal: each objective's histogram over them, the front's values as ticks."""
    ok, front, default = _groups(obs, objectives)
    head = _head(obs, ok, front, title)
    if ok.empty:
        _message_figure("no successful run: no front to show", path_png, path_pdf, head)
        return
    k = len(objectives)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(k, k, figsize=(2.7 * k + 0.8, 2.7 * k + 0.6), squeeze=False)
    on = ok["candidate"].isin(front)
    found = highlighted_configs(pareto_table(obs, objectives), objectives)
    knee = ok[ok["candidate"] == found.get("knee")]
    for i, oi in enumerate(objectives):
        for j, oj in enumerate(objectives):
            ax, x, y = axes[i][j], oj["metric"], oi["metric"]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(ok[x], bins=min(10, max(3, len(ok))), color=OTHER, alpha=0.6)
                ax.set_title(f"{metric_label(x)}: runs per bin, front in red", fontsize=6)
                for v in ok.loc[on, x]:
                    ax.axvline(v, color=FRONT, lw=1, alpha=0.8)
            else:
                ax.scatter(ok.loc[~on, x], ok.loc[~on, y], s=22, color=OTHER, label="other feasible")
                ax.scatter(ok.loc[on, x], ok.loc[on, y], s=40, facecolors="none", edgecolors=FRONT, lw=1.5,
                           label="Pareto front (all objectives)")
                ax.scatter(knee[x], knee[y], marker="D", s=34, color=FRONT, zorder=4, label="knee of the front")
                if not default.empty:
                    ax.scatter(default[x], default[y], marker="*", s=180, color=DEFAULT, zorder=5, label="vLLM default")
            ax.tick_params(labelsize=6)
            ax.set_xlabel(f"{_axis_label(x, obs)}\n({oj['direction']})" if i == k - 1 else "", fontsize=7)
            ax.set_ylabel(f"{_axis_label(y, obs)}\n({oi['direction']})" if j == 0 and i > 0 else "", fontsize=7)
    handles, labels = axes[1][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=7, frameon=True)
    roles: dict[str, list[str]] = {}
    for role, name in found.items():
        roles.setdefault(name, []).append(role_label(role))
    notes = "\n".join(f"{_short(n, 40)}: {', '.join(r)}" for n, r in roles.items())
    fig.text(0.98, 0.86, notes, ha="right", va="top", fontsize=6)
    fig.suptitle(head + "\nfront points are non-dominated on all objectives together, not in each panel", fontsize=8)
    _save(fig, path_png, path_pdf)


def normalised_objectives(ok: pd.DataFrame, objectives: list[dict]) -> pd.DataFrame:
    """Each objective scaled to [0, 1] over ``ok``, oriented so that 1 is the best value (a constant column: 0.5)."""
    out = pd.DataFrame(index=ok.index)
    for o in objectives:
        v = ok[o["metric"]].astype(float)
        lo, hi = v.min(), v.max()
        z = (v - lo) / (hi - lo) if hi > lo else pd.Series(0.5, index=v.index)
        out[o["metric"]] = z if o["direction"] == "maximize" else 1.0 - z
    return out


def parallel_coordinates_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str,
                                path_pdf: str | None = None, title: str = "") -> None:
    """One vertical axis per objective, scaled to [0, 1] over the feasible configurations with the best value at
    the top (the axis label gives the direction and the worst and best values); one line per configuration: the
    front's in colour and named, vLLM's default dashed with stars (black when it is not on the front), the others
    grey."""
    ok, front, default = _groups(obs, objectives)
    head = _head(obs, ok, front, title)
    if ok.empty:
        _message_figure("no successful run: no front to show", path_png, path_pdf, head)
        return
    Z = normalised_objectives(ok, objectives)
    xs = np.arange(len(objectives))
    sns.set_theme(style="white")
    fig, ax = plt.subplots(figsize=(2.4 * len(objectives) + 3.2, 4.8))
    colours = sns.color_palette("tab10" if len(front) <= 10 else "husl", max(1, len(front)))
    names = list(ok.loc[ok["candidate"].isin(front), "candidate"])
    for idx, r in ok.iterrows():
        name, ys = r["candidate"], Z.loc[idx].to_numpy()
        is_default = name in set(default["candidate"])
        if name in front:
            ax.plot(xs, ys, "--*" if is_default else "-o", color=colours[names.index(name) % len(colours)], lw=2,
                    ms=10 if is_default else 5, zorder=4,
                    label=_short(name, 34) + (" (vLLM default)" if is_default else ""))
        elif is_default:
            ax.plot(xs, ys, "--*", color=DEFAULT, lw=1.5, ms=10, zorder=3, label="vLLM default (not on the front)")
        else:
            ax.plot(xs, ys, "-", color=OTHER, lw=0.8, alpha=0.6, zorder=2)
    for x in xs:
        ax.axvline(x, color="black", lw=0.8)
    labels = []
    for o in objectives:
        v = ok[o["metric"]]
        worst, best = (v.min(), v.max()) if o["direction"] == "maximize" else (v.max(), v.min())
        labels.append(f"{_axis_label(o['metric'], obs)}\n{o['direction']}: best {best:.4g} (top)\n"
                      f"worst {worst:.4g} (bottom)")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlim(-0.2, len(objectives) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("scaled objective (1 = best of the feasible configurations)", fontsize=8)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="Pareto front", title_fontsize=7)
    ax.set_title(head + "; grey: other feasible configurations", fontsize=8)
    _save(fig, path_png, path_pdf)


def front_figure_names(objectives: list[dict]) -> list[str]:
    """Names of the figures that show the front: ``pareto_front`` for two objectives, else ``pareto_matrix`` and
    ``parallel_coordinates``."""
    return ["pareto_front"] if len(objectives) == 2 else ["pareto_matrix", "parallel_coordinates"]

