"""vllm-mobo: multi-objective Bayesian optimisation of vLLM engine configurations.

The package holds all the logic; the Snakemake rules under ``workflow/`` only wire files to it.

- :mod:`vllm_mobo.config`: load and validate ``config.yaml`` against the JSON schema.
- :mod:`vllm_mobo.search.space`: the enumerable search space, its encoding and the validity rules.
- :mod:`vllm_mobo.search.optimizer`: initial design, surrogates, exact 2-D EHVI, batch proposal.
- :mod:`vllm_mobo.measure`: one candidate on the real vLLM engine, in its own process.
- :mod:`vllm_mobo.measure.energy`: GPU (NVML), CPU (RAPL or estimate) and RAM (estimate) meters.
- :mod:`vllm_mobo.report.tables`: observations, Pareto set, hypervolume; :mod:`vllm_mobo.report.plots`: figures.
"""

__version__ = "0.1.0"
