"""The executed analysis notebook as a standalone HTML page (code cells hidden: the logic is in vllm_mobo)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import nbformat
from nbconvert import HTMLExporter

notebook = nbformat.read(snakemake.input.notebook, as_version=4)
exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
html, _ = exporter.from_notebook_node(notebook)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
print(f"{snakemake.output.html}: {len(html)} characters", file=sys.stderr)
