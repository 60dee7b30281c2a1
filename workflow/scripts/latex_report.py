"""The LaTeX source of the run's report, from its results (vllm_mobo.report.latex fills the packaged report.tex)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from vllm_mobo.records import load_records
from vllm_mobo.io import read_json
from vllm_mobo.confirm.summary import read_confirmation
from vllm_mobo.profiling.explain import latex_section
from vllm_mobo.report.latex import latex_context, render_latex, rst_caption

inp, params = snakemake.input, snakemake.params
figures = {name: (path, rst_caption(params.captions[name])) for name, path in zip(params.figure_names, inp.figures)}
context = latex_context(
    obs=pd.read_csv(inp.observations),
    pareto=pd.read_csv(inp.pareto),
    records=load_records(inp.metrics),
    proposals=[read_json(p) for p in inp.proposals],
    config=snakemake.config,
    model_dir=params.model_dir,
    figures=figures,
    skipped=pd.read_csv(inp.skipped),
    tradeoffs=pd.read_csv(inp.tradeoffs),
    profile=latex_section(inp.profile_status, inp.profile_breakdown, inp.profile_explanation, inp.profile_figure),
    thermal=Path(inp.thermal).read_text().splitlines(),
    confirm=(read_confirmation(inp, snakemake.config["objectives"], snakemake.config["confirm"]["repeats"])
             if hasattr(inp, "confirm_summary") else None),
)
Path(snakemake.output.tex).write_text(render_latex(inp.template, context))
print(f"{snakemake.output.tex} written", file=sys.stderr)
