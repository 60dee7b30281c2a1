"""The Pareto-front and hypervolume figures of the run."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from vllm_mobo.plots import hypervolume_figure, pareto_figure

obs = pd.read_csv(snakemake.input.observations)
run = snakemake.config["run"]
pareto_figure(obs, snakemake.config["objectives"], snakemake.output.pareto, snakemake.output.pareto_pdf,
              title=f"run {run}")
hypervolume_figure(pd.read_csv(snakemake.input.hypervolume), snakemake.output.hypervolume, title=f"run {run}")
