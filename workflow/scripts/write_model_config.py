"""config.json of an architecture run with dummy weights."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from vllm_mobo.measure.model import write_model_dir

write_model_dir(snakemake.params.model, Path(snakemake.output[0]).parent)
