# vllm-mobo: multi-objective Bayesian optimisation of vLLM engine configurations.
#   snakemake --cores all             run the search with config.yaml
#   snakemake --report report.html    the HTML report of the last run
# The rules live in workflow/rules/*.smk; the logic in the vllm_mobo package (src/vllm_mobo).

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/confirm.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/profile.smk"
# The optimiser benchmark (replayed tables; not part of rule all): snakemake --cores all optimizer_benchmark
include: "workflow/rules/optimizer_benchmark.smk"


rule all:
    input:
        f"{RESULTS}/observations.csv",
        f"{RESULTS}/pareto.csv",
        f"{RESULTS}/hypervolume.csv",
        f"{RESULTS}/tradeoffs.csv",
        f"{RESULTS}/skipped.csv",
        [f"{RESULTS}/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")],
        f"{RESULTS}/analysis/analysis.html",
        f"report/{config['run']}.pdf",
        f"{RESULTS}/export/knee_vllm_serve.txt",
        f"{RESULTS}/export/knee_engine_args.yaml",
        f"{RESULTS}/profiles/status.csv",
        f"{RESULTS}/profiles/breakdown.csv",
        f"{RESULTS}/profiles/explanation.txt",
        f"{RESULTS}/figures/profile_breakdown.png",
        # the confirmation stage (confirm.enabled)
        list(confirm_outputs().values()),
    default_target: True
