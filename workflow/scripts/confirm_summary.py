"""Means, intervals, the confirmed front, the difference to vLLM's default and the noise level (vllm_mobo.confirm)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from vllm_mobo.confirm.figure import confirmed_front_figure
from vllm_mobo.confirm.stats import summary_table
from vllm_mobo.confirm.summary import (
    confirmed_front,
    default_comparison,
    machines,
    means_table,
    noise_record,
)
from vllm_mobo.io import write_json_atomic
from vllm_mobo.report.plots import energy_provenance_note

out, objectives, repeats = snakemake.output, snakemake.params.objectives, snakemake.params.repeats
meas = pd.read_csv(snakemake.input.measurements)
machine = machines(meas)
if len(machine) > 1:
    print(f"WARNING: the confirmation measurements come from {len(machine)} machines ({'; '.join(machine)}): "
          "differences between them are not comparisons on the same hardware", file=sys.stderr)
summary = summary_table(meas, [o["metric"] for o in objectives])
summary.to_csv(out.summary, index=False)
means = means_table(meas, summary, objectives)
front = confirmed_front(means, objectives)
front.to_csv(out.front, index=False)
default_comparison(meas, objectives).to_csv(out.comparison, index=False)
write_json_atomic(out.noise, noise_record(summary, meas, objectives, repeats, machine))
confirmed_front_figure(means, front, objectives, repeats, out.png, out.pdf, title=f"run {snakemake.params.run}",
                       energy_note=energy_provenance_note(meas))
print(f"{len(means)} configurations, {len(front)} on the confirmed front", file=sys.stderr)
