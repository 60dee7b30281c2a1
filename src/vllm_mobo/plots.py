"""Figures of a run (seaborn/matplotlib): the Pareto front and the hypervolume per iteration.

Every figure that shows energy says in its labels which sources were measured and which estimated.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .results import highlighted_configs, pareto_table  # noqa: E402

LABELS = {
    "output_tokens_per_s": "output tokens/s",
    "total_tokens_per_s": "total tokens/s",
    "requests_per_s": "requests/s",
    "joules_per_output_token": "J per output token",
    "joules_per_token": "J per token",
}


def energy_provenance_note(obs: pd.DataFrame) -> str:
    """``energy: cpu estimated, ram estimated``, from the provenance columns of the successful runs."""
    ok = obs[obs["status"] == "ok"]
    parts = []
    for src in ("gpu", "cpu", "ram"):
        kinds = sorted(set(ok.get(f"energy_{src}_provenance", pd.Series(dtype=str)).dropna()) - {""})
        if kinds:
            parts.append(f"{src} {'/'.join(kinds)}")
    return "energy: " + ", ".join(parts) if parts else "energy: none measured"


def _axis_label(metric: str, obs: pd.DataFrame) -> str:
    label = LABELS.get(metric, metric)
    if metric.startswith("joules") and "estimated" in energy_provenance_note(obs):
        label += " (includes ESTIMATED energy)"
    return label


def pareto_figure(obs: pd.DataFrame, objectives: list[dict], path_png: str, path_pdf: str | None = None,
                  title: str = "") -> None:
    """Every successful configuration coloured by iteration, the front as a step line, vLLM's default and the
    best configurations labelled."""
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
        for role, name in highlighted_configs(front, objectives).items():
            row = ok[ok["candidate"] == name].iloc[0]
            ax.annotate(f"{role}:\n{name}", (row[x], row[y]), textcoords="offset points", xytext=(8, 8),
                        fontsize=7, arrowprops={"arrowstyle": "-", "color": "grey"})
    failed = int((obs["status"] != "ok").sum())
    ax.set_xlabel(LABELS.get(x, x) + f" ({objectives[0]['direction']})")
    ax.set_ylabel(_axis_label(y, obs) + f" ({objectives[1]['direction']})")
    ax.set_title((title + "\n" if title else "") + f"{energy_provenance_note(obs)}; {len(ok)} ok, {failed} failed",
                 fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    if path_pdf:
        fig.savefig(path_pdf)
    plt.close(fig)


def hypervolume_figure(hv: pd.DataFrame, path_png: str, title: str = "") -> None:
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(hv["evaluations"], hv["hypervolume"], marker="o")
    for _, r in hv.iterrows():
        ax.annotate(f"iter {int(r['iteration'])}", (r["evaluations"], r["hypervolume"]), fontsize=7,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xlabel("evaluations (cumulative)")
    ax.set_ylabel("hypervolume (log objectives)")
    ax.set_title(title or "Hypervolume of the front found so far", fontsize=9)
    fig.tight_layout()
    fig.savefig(path_png, dpi=150)
    plt.close(fig)
