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


rule all:
    input:
        f"{RESULTS}/observations.csv",
        f"{RESULTS}/pareto.csv",
        f"{RESULTS}/hypervolume.csv",
        f"{RESULTS}/skipped.csv",
        f"{RESULTS}/figures/pareto_front.png",
        f"{RESULTS}/figures/hypervolume.png",
    default_target: True
