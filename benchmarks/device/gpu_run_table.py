#!/usr/bin/env python3
"""Markdown table of a GPU run's candidates (results/<run> of a finished or partial search, or a docs/gpu folder):
throughput, J/output token with the run's GPU scope, and J/output token recomputed with scope `used` (the
candidate's own GPUs from the per-GPU NVML counters + the CPU/RAM estimates), the idle GPUs' mean power; in
iteration order, with a `machine` column (host and the start of the GPUs' UUIDs) where the rows were measured on
more than one machine.

    python benchmarks/device/gpu_run_table.py docs/gpu/<date>-<run>
"""

import sys
from pathlib import Path

import pandas as pd

from vllm_mobo.records import MEASURED, load_record, machine_label


def rows(results_dir: Path):
    flattened = sorted((results_dir / "metrics").glob("*.json"))  # docs/gpu/<date>-<run>/metrics/
    for path in flattened or sorted(results_dir.rglob("metrics.json")):
        r = load_record(path)
        machine = machine_label(r.machine)
        if not r.ok:
            yield {"iteration": r.iteration, "candidate": r.candidate, "machine": machine, "status": r.status}
            continue
        sources = {s.source: s for s in r.energy.sources}
        gpus = sources["gpu"].detail["gpus"]
        used = set(r.gpus_pinned)
        own = sum(g["joules"] for g in gpus if g["index"] in used)
        others = [g for g in gpus if g["index"] not in used]
        window = sources["gpu"].detail["window_s"]
        rest = sum(s.joules for k, s in sources.items() if k != "gpu")
        yield {"iteration": r.iteration, "candidate": r.candidate, "machine": machine, "status": "ok",
               "gpus": len(used), "metered": len(r.gpus_metered) or len(gpus), "tok_s": r.metric("output_tokens_per_s"),
               "j_tok_node": r.metric("joules_per_output_token"),
               "own_gpu_j": own, "other_gpu_j": sum(g["joules"] for g in others),
               "other_w": (sum(g["joules"] for g in others) / window / len(others)) if others else 0.0,
               "j_tok_used": (own + rest) / r.metric("output_tokens"),
               "ttft_p99": r.metrics.get("ttft_ms_p99"), "tpot_p99": r.metrics.get("tpot_ms_p99"),
               "slo_met": r.metrics.get("slo_met"),
               "estimated": sorted(k for k, s in sources.items() if s.provenance != MEASURED)}


def main() -> int:
    results = sorted(rows(Path(sys.argv[1])), key=lambda r: (r["iteration"], r["candidate"]))
    several_machines = len({r["machine"] for r in results}) > 1
    online = any(r.get("ttft_p99") is not None for r in results)
    table = []
    for r in results:
        row = {"iter": r["iteration"], "candidate": f"`{r['candidate']}`"}
        if several_machines:
            row["machine"] = r["machine"]
        if r["status"] != "ok":
            table.append({**row, "GPUs": "failed"})
            continue
        row.update({"GPUs": r["gpus"], "out tok/s": f"{r['tok_s']:,.0f}", "GPUs metered": r["metered"],
                    "J/out tok (GPUs metered)": f"{r['j_tok_node']:.4f}",
                    "own GPUs J": f"{r['own_gpu_j']:,.0f}", "idle GPUs J": f"{r['other_gpu_j']:,.0f}",
                    "idle GPU mean W": f"{r['other_w']:.0f}", "J/out tok (own GPUs, used)": f"{r['j_tok_used']:.4f}"})
        if online:
            row.update({"TTFT p99 ms": f"{r['ttft_p99']:.0f}", "TPOT p99 ms": f"{r['tpot_p99']:.1f}",
                        "SLOs met": r["slo_met"]})
        table.append(row)
    print(pd.DataFrame(table).fillna("").to_markdown(index=False))
    estimated = sorted({k for r in results for k in r.get("estimated", [])})
    if estimated:
        print(f"\nJ/out tok includes {', '.join(s.upper() for s in estimated)} energy that was ESTIMATED, not measured "
              "(GPU energy: NVML counters, measured).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
