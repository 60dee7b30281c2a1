"""Every figure of the run, as PNG (HTML report) and PDF (LaTeX report)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from vllm_mobo.records import load_records
from vllm_mobo.report.analysis import enrich_observations
from vllm_mobo.report.front_plots import parallel_coordinates_figure, pareto_matrix_figure
from vllm_mobo.report.plots import (
    energy_sources_figure,
    hypervolume_figure,
    knob_effects_figure,
    latency_figure,
    pareto_figure,
    tp_pp_figure,
)
from vllm_mobo.report.power import shown_timelines, steadiness_figure, steadiness_table, timelines_figure

out, objectives, keys = snakemake.output, snakemake.params.objectives, snakemake.params.space_keys
title = f"run {snakemake.params.run}"
records = load_records(snakemake.input.metrics)
# TP and PP come from the engine args vLLM resolved when the search space does not set them.
obs = enrich_observations(pd.read_csv(snakemake.input.observations), records,
                          ["tensor_parallel_size", "pipeline_parallel_size"])
# The front: workflow/rules/analysis.smk names pareto_front for two objectives, the scatter matrix and parallel
# coordinates for three or more.
if hasattr(out, "pareto_front"):
    pareto_figure(obs, objectives, out.pareto_front, out.pareto_front_pdf, title=title)
if hasattr(out, "pareto_matrix"):
    pareto_matrix_figure(obs, objectives, out.pareto_matrix, out.pareto_matrix_pdf, title=title)
    parallel_coordinates_figure(obs, objectives, out.parallel_coordinates, out.parallel_coordinates_pdf, title=title)
hypervolume_figure(pd.read_csv(snakemake.input.hypervolume), out.hypervolume, title=title,
                   path_pdf=out.hypervolume_pdf)
energy_sources_figure(obs, out.energy_sources, out.energy_sources_pdf, title=title)
knob_effects_figure(obs, keys, objectives, out.knob_effects, out.knob_effects_pdf, title=title)
# Figures workflow/rules/analysis.smk leaves out when the run cannot have their data.
if hasattr(out, "tp_pp"):
    tp_pp_figure(obs, objectives, out.tp_pp, out.tp_pp_pdf, title=title)
if hasattr(out, "latency"):
    latency_figure(obs, objectives, out.latency, out.latency_pdf, title=title)
if hasattr(out, "power_timelines"):  # workflow/rules/analysis.smk leaves them out without timelines
    shown, roles = shown_timelines(records, obs, objectives)
    timelines_figure(shown, roles, out.power_timelines, out.power_timelines_pdf, title=title)
    steadiness_figure(steadiness_table(records), out.power_steadiness, out.power_steadiness_pdf, title=title)
print(f"figures of {len(obs)} observations written", file=sys.stderr)
