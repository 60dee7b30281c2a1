"""The profiling figure and the explanation text shared by the HTML and LaTeX reports."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from vllm_mobo.profiling.explain import breakdown_figure, explain, read_tables

inp, out, params = snakemake.input, snakemake.output, snakemake.params
status, breakdown = read_tables(inp.status, inp.breakdown)
breakdown_figure(status, breakdown, out.png, out.pdf, title=f"run {params.run}")
text = explain(status, breakdown, pd.read_csv(inp.observations), params.objectives)
Path(out.explanation).write_text("\n\n".join(text) + "\n")
print("\n\n".join(text), file=sys.stderr)
