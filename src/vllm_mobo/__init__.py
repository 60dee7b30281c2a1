"""vllm-mobo: multi-objective Bayesian optimisation of vLLM engine configurations.

The package holds all the logic; the Snakemake rules under ``workflow/`` only wire files to it. One folder per
stage of the pipeline, imports pointing down the layers:

- bottom: :mod:`.config` (config.yaml against the schema), :mod:`.records` (the metrics.json record and the metric
  catalogue), :mod:`.engine_args` (vLLM's engine arguments: merge, flags, validation), :mod:`.hardware`,
  :mod:`.io`, :mod:`.resources` (packaged schema and templates);
- :mod:`.search`: the space, its validity rules and one iteration's proposal; ``search.optimizer``: the strategies;
- :mod:`.measure`: one candidate on the real vLLM engine in its own supervised process, and its energy;
- :mod:`.report`: tables, analysis, figures, the LaTeX report and the exported configuration;
- :mod:`.profiling` (Nsight Systems), :mod:`.replay` (measured tables and the strategy comparison),
  :mod:`.slurm` (preflight against sinfo);
- top: :mod:`.cli`, the ``vllm-mobo`` command.
"""

__version__ = "0.1.0"
