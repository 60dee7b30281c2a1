"""The figure of Zeus's meter check (zeus_meter_check.py): GPU power over time from Zeus's PowerMonitor (each
domain), this project's 20 ms NVML sampler and, where the check wrote ``timeline.json``, the pipeline's power
timeline (its GPU curve, aligned on the first window's start), the two measured windows shaded with each meter's
joules.

    python benchmarks/device/zeus_check_figure.py docs/gpu/<date>-h200-zeus-meter-check
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from vllm_mobo.records import PowerTimeline  # noqa: E402

LABELS = {
    "device_instant": "Zeus PowerMonitor: device, instant",
    "device_average": "Zeus PowerMonitor: device, average",
    "memory_average": "Zeus PowerMonitor: memory, average",
    "vllm_mobo_sampler_20ms": "NVML power sampled every 20 ms (this check's thread)",
}


def main(folder: Path) -> Path:
    check = json.loads((folder / "zeus_check.json").read_text())
    timeline = pd.read_csv(folder / "zeus_check_timeline.csv")
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for domain, rows in timeline.groupby("domain", sort=False):
        ax.plot(rows["t_s"], rows["watts"], lw=0.9, label=LABELS.get(domain, domain),
                alpha=0.55 if domain == "vllm_mobo_sampler_20ms" else 1.0)
    if (folder / "timeline.json").exists():
        tl = PowerTimeline.from_dict(json.loads((folder / "timeline.json").read_text()))
        shift = check["windows"][0]["start_s"] - tl.windows[0]["start_s"]
        ax.step([t + shift for t in tl.t_s[1:]], tl.watts["gpu0"], where="pre", lw=1.2, color="black",
                label=f"vllm-mobo power timeline ({tl.interval_s:g} s intervals of the counter)")
    for w in check["windows"]:
        ax.axvspan(w["start_s"], w["end_s"], color="0.85", zorder=0)
        j = w["joules"]
        text = (f"{w['window']} window, {w['seconds']:.1f} s\ncounter (vllm-mobo) {j['vllm_mobo']:,.0f} J\n"
                f"ZeusMonitor {j['zeus_monitor']:,.0f} J\nPowerMonitor {j['zeus_power_monitor']:,.0f} J\n"
                f"20 ms samples {j['sampled']:,.0f} J"
                + (f"\ntimeline {j['timeline']:,.0f} J" if j.get("timeline") is not None else ""))
        ax.text(w["start_s"] + 0.3, 0.04, text, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom")
    ax.set_xlabel("time since the monitors started (s)")
    ax.set_ylabel("GPU power (W, measured)")
    ax.set_title(f"{check['gpu']} (driver {check['driver']}), {check['load']}: Zeus {check['zeus']} against "
                 "NVML's energy counter", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    out = folder / "zeus_check.png"
    fig.savefig(out, dpi=150)
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
