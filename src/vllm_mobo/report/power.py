"""Power over time (the ``power_timeline`` of each metrics record): one panel per configuration with the measured
windows shaded and warm-up and idle (cool-down) marked, and the run's steadiness (mean power and its spread
within every window of every configuration).

Estimated curves (the CPU from process-tree CPU time where RAPL is unreadable) are dashed and say so in the
legend; measured ones are solid.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..records import ESTIMATED, Record  # noqa: E402
from .baseline import role_label  # noqa: E402
from .plots import SOURCE_COLOURS, _message_figure, _save, _short  # noqa: E402
from .tables import highlighted_configs, pareto_table  # noqa: E402

PHASE_STYLE = {  # phase: (face colour, alpha, legend label)
    "window": ("#2ca02c", 0.18, "measured window"),
    "warmup": ("#7f7f7f", 0.18, "warm-up"),
    "cooldown": ("#1f77b4", 0.10, "idle (cool-down)"),
}
#: Panels one timeline figure holds at most.
MAX_PANELS = 8


def timeline_records(records: list[Record], candidates: list[str]) -> list[Record]:
    """The records of ``candidates`` (in that order, the last iteration's where a name ran twice) that carry a
    power timeline."""
    latest = {}
    for r in sorted(records, key=lambda r: r.iteration):
        if r.ok and r.power_timeline is not None and r.power_timeline.t_s:
            latest[r.candidate] = r
    return [latest[c] for c in dict.fromkeys(candidates) if c in latest]


def shown_timelines(records: list[Record], obs: pd.DataFrame, objectives: list[dict]) -> tuple[list[Record], dict]:
    """The records whose timelines the report shows (vLLM's default, then the front's configurations, best first
    objective first) and the role of each (``vLLM's default``, ``knee of the front``, ``best ...``)."""
    front = pareto_table(obs, objectives)
    roles: dict[str, str] = {}
    for role, name in highlighted_configs(front, objectives).items():
        roles[name] = ", ".join(filter(None, [roles.get(name), role_label(role)]))
    defaults = [r.candidate for r in records if r.is_vllm_default]
    roles.update({name: "vLLM's default" for name in defaults})
    names = [*defaults, *(front["candidate"] if not front.empty else [])]
    return timeline_records(records, names), roles


def steadiness_table(records: list[Record]) -> pd.DataFrame:
    """One row per measured window of every successful record with a timeline: candidate, window label, start
    and length, and the total power's mean, standard deviation and coefficient of variation over the sampling
    intervals inside the window, with the provenance of the curves summed."""
    rows = []
    for r in records:
        tl = r.power_timeline
        if not r.ok or tl is None:
            continue
        provenance = "/".join(sorted({c.get("provenance", "") for c in tl.channels}))
        for k, w in enumerate(tl.windows):
            rows.append({"iteration": r.iteration, "candidate": r.candidate, "window": k,
                         "label": w.get("label") or "", "start_s": w["start_s"],
                         "length_s": w["end_s"] - w["start_s"], **tl.window_power(w), "provenance": provenance})
    return pd.DataFrame(rows, columns=["iteration", "candidate", "window", "label", "start_s", "length_s",
                                       "intervals", "mean_w", "sd_w", "cv", "provenance"])


def steadiness_text(table: pd.DataFrame) -> list[str]:
    """One sentence for the report: the median and the largest coefficient of variation of the windows' power,
    naming the least steady window; empty without timelines."""
    ok = table.dropna(subset=["cv"])
    if ok.empty:
        return []
    worst = ok.loc[ok["cv"].idxmax()]
    estimated = " (ESTIMATED: the CPU curve where RAPL is unreadable)" if ok["provenance"].str.contains(
        ESTIMATED).any() else ""
    return [f"Power within the measured windows{estimated}: over {len(ok)} windows of "
            f"{ok['candidate'].nunique()} configurations, the total power's coefficient of variation over the "
            f"timeline's intervals had a median of {100 * ok['cv'].median():.1f}% and a maximum of "
            f"{100 * worst['cv']:.1f}% ({worst['candidate']}, window {worst['label'] or int(worst['window'])}); "
            f"the power timelines of vLLM's default and the front are drawn in the figures."]


def _panel(ax, record: Record, role: str) -> None:
    tl = record.power_timeline
    for k, p in enumerate(tl.phases):
        colour, alpha, _ = PHASE_STYLE.get(p["phase"], ("#bbbbbb", 0.1, p["phase"]))
        if p["phase"] == "window" and k % 2:  # back-to-back windows (online: one per rate) in two shades
            alpha *= 1.8
        ax.axvspan(p["start_s"], p["end_s"], color=colour, alpha=alpha, lw=0)
    for ch in tl.channels:
        watts = tl.watts.get(ch["name"], ())
        if not watts:
            continue
        estimated = ch.get("provenance") == ESTIMATED
        ax.step(tl.t_s[1:], watts, where="pre", lw=1.1, ls="--" if estimated else "-",
                color=SOURCE_COLOURS.get(ch.get("source"), None) if ch.get("source") != "gpu" else None,
                label=f"{ch['name']}" + (" (ESTIMATED)" if estimated else ""))
    if len(tl.channels) > 1:
        ax.step(tl.t_s[1:], tl.total_watts(), where="pre", lw=1.4, color="black", label="total")
    ax.set_title(f"{_short(record.candidate, 60)}" + (f" ({role})" if role else ""), fontsize=8)
    ax.set_xlabel("seconds since the warm-up began", fontsize=8)
    ax.set_ylabel("power (W)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)
    if tl.error:
        ax.text(0.01, 0.97, f"sampling ended early: {tl.error}"[:90], transform=ax.transAxes, fontsize=6,
                va="top", color="crimson")


def timelines_figure(records: list[Record], roles: dict[str, str], path_png: str, path_pdf: str | None = None,
                     title: str = "") -> None:
    """One panel per record (at most :data:`MAX_PANELS`), ``roles`` naming what each candidate is (``knee``,
    ``vLLM default``, ...)."""
    records = records[:MAX_PANELS]
    if not records:
        _message_figure("no power timeline recorded for the front's configurations", path_png, path_pdf, title)
        return
    height = 2.3 * len(records) + 0.35  # the panels and the legend below them
    fig, axes = plt.subplots(len(records), 1, figsize=(8, height), squeeze=False)
    for ax, r in zip(axes[:, 0], records):
        _panel(ax, r, roles.get(r.candidate, ""))
    handles, _ = axes[0, 0].get_legend_handles_labels()
    seen = {p["phase"] for r in records for p in r.power_timeline.phases}
    handles += [Patch(color=c, alpha=max(a, 0.3), label=lab) for ph, (c, a, lab) in PHASE_STYLE.items() if ph in seen]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=6, frameon=False)
    interval = records[0].power_timeline.interval_s
    axes[0, 0].set_title((title + ": " if title else "") + f"power over time, mean of every {interval:g} s "
                         f"interval\n{axes[0, 0].get_title()}", fontsize=8)
    _save(fig, path_png, path_pdf, rect=(0, 0.3 / height, 1, 1))


def steadiness_figure(table: pd.DataFrame, path_png: str, path_pdf: str | None = None, title: str = "") -> None:
    """Every measured window as a point at its mean power with a bar of +- one standard deviation of the total
    power within it; one row per configuration, the coefficient of variation of its least steady window beside
    it."""
    ok = table.dropna(subset=["mean_w"])
    if ok.empty:
        _message_figure("no power timeline recorded: steadiness unknown", path_png, path_pdf, title)
        return
    names = list(dict.fromkeys(ok.sort_values(["iteration", "candidate"])["candidate"]))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.6))
    for y, name in enumerate(names):
        rows = ok[ok["candidate"] == name]
        ax.errorbar(rows["mean_w"], [y] * len(rows), xerr=rows["sd_w"].fillna(0.0), fmt="o", ms=3, lw=1,
                    color="#4c72b0", ecolor="#4c72b0", capsize=2)
        worst = rows["cv"].max()
        if not math.isnan(worst):
            ax.annotate(f"max CV {100 * worst:.1f}%", (1.0, y), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=6)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([_short(n, 40) for n in names], fontsize=6)
    ax.invert_yaxis()
    estimated = ok["provenance"].str.contains(ESTIMATED).any()
    ax.set_xlabel("mean power within each measured window (W), bar: +- 1 sd over its sampling intervals"
                  + ("\n(the CPU part ESTIMATED where RAPL is unreadable)" if estimated else ""), fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title((title + "\n" if title else "") + "steadiness of every measured window", fontsize=9)
    _save(fig, path_png, path_pdf)
