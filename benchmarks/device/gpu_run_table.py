#!/usr/bin/env python3
"""Markdown table of a GPU run's candidates (results/<run> of a finished or partial search, or a docs/gpu folder):
throughput, J/output token with the run's GPU scope, and J/output token recomputed with scope `used` (the
candidate's own GPUs from the per-GPU NVML counters + the CPU/RAM estimates), the idle GPUs' mean power.

    python benchmarks/device/gpu_run_table.py docs/gpu/<date>-<run>
"""

import glob
import json
import sys
from pathlib import Path


def rows(results_dir: Path):
    flattened = sorted(glob.glob(str(results_dir / "metrics" / "*.json")))  # docs/gpu/<date>-<run>/metrics/
    for path in flattened or sorted(glob.glob(str(results_dir / "**" / "metrics.json"), recursive=True)):
        r = json.load(open(path))
        if r["status"] != "ok":
            yield {"iteration": r["iteration"], "candidate": r["candidate"], "status": r["status"]}
            continue
        m, sources = r["metrics"], {s["source"]: s for s in r["energy"]["sources"]}
        gpus = sources["gpu"]["detail"]["gpus"]
        used = set(r["gpus_pinned"])
        own = sum(g["joules"] for g in gpus if g["index"] in used)
        others = [g for g in gpus if g["index"] not in used]
        window = sources["gpu"]["detail"]["window_s"]
        rest = sum(s["joules"] for k, s in sources.items() if k != "gpu")
        yield {"iteration": r["iteration"], "candidate": r["candidate"], "status": "ok",
               "gpus": len(used), "tok_s": m["output_tokens_per_s"], "j_tok_node": m["joules_per_output_token"],
               "own_gpu_j": own, "other_gpu_j": sum(g["joules"] for g in others),
               "other_w": (sum(g["joules"] for g in others) / window / len(others)) if others else 0.0,
               "j_tok_used": (own + rest) / m["output_tokens"],
               "ttft_p99": m.get("ttft_ms_p99"), "tpot_p99": m.get("tpot_ms_p99"), "slo_met": m.get("slo_met"),
               "estimated": sorted(k for k, s in sources.items() if s.get("provenance") != "measured")}


def main() -> int:
    results = list(rows(Path(sys.argv[1])))
    online = any(r.get("ttft_p99") is not None for r in results)
    head = ["iter", "candidate", "GPUs", "out tok/s", "J/out tok (4 GPUs, node)", "own GPUs J", "idle GPUs J",
            "idle GPU mean W", "J/out tok (own GPUs, used)"] + (["TTFT p99 ms", "TPOT p99 ms", "SLOs met"] if online else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        if r["status"] != "ok":
            print(f"| {r['iteration']} | `{r['candidate']}` | failed |")
            continue
        cells = [r["iteration"], f"`{r['candidate']}`", r["gpus"], f"{r['tok_s']:,.0f}", f"{r['j_tok_node']:.4f}",
                 f"{r['own_gpu_j']:,.0f}", f"{r['other_gpu_j']:,.0f}", f"{r['other_w']:.0f}", f"{r['j_tok_used']:.4f}"]
        if online:
            cells += [f"{r['ttft_p99']:.0f}", f"{r['tpot_p99']:.1f}", r["slo_met"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    estimated = sorted({k for r in results for k in r.get("estimated", [])})
    if estimated:
        print(f"\nJ/out tok includes {', '.join(s.upper() for s in estimated)} energy that was ESTIMATED, not measured "
              "(GPU energy: NVML counters, measured).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
