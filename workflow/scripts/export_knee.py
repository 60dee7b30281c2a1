"""The knee configuration as a ready `vllm serve` command and a YAML file of its engine args: the confirmed
front's knee where the confirmation stage ran, else the search front's."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

import pandas as pd

from vllm_mobo.records import load_records
from vllm_mobo.report.energy import energy_qualifier
from vllm_mobo.report.export import knee_export

command, engine_args = knee_export(
    pd.read_csv(snakemake.input.pareto),
    load_records(snakemake.input.metrics),
    snakemake.params.objectives,
    snakemake.params.model_dir,
    snakemake.params.run,
    energy_qualifier(pd.read_csv(snakemake.input.observations)),
    confirmed=pd.read_csv(snakemake.input.confirm_front) if "confirm_front" in snakemake.input.keys() else None,
)
Path(snakemake.output.command).write_text(command)
Path(snakemake.output.engine_args).write_text(engine_args)
print(command, file=sys.stderr)
