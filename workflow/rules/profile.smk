# Nsight Systems profiles of the highlighted configurations after the search (vllm_mobo.profiling).
# `profile` runs the energy-optimal, throughput-optimal and knee configurations and vLLM's default once more under
# `nsys profile` (profile.* in the config) and reduces the `nsys stats` exports to a per-GPU breakdown; without
# nsys or a GPU it profiles nothing and status.csv says why ("not profiled: nsys not found"), so the pipeline goes
# on. `profile_report` draws the figure and writes the explanation both reports show. The .nsys-rep files and CSV
# exports stay under results/<run>/profiles/<candidate>/ (not declared outputs: which candidates is data).

PROFILES = f"{RESULTS}/profiles"
# The profile job's time limit: per configuration, the profiled run's limit plus 10 minutes of `nsys stats`.
PROFILE_RUNTIME = int(len(config["profile"]["configs"]) * (
    (config["profile"]["timeout_s"] or config["benchmark"]["timeout_s"] + 300) / 60 + 10)) + 5


rule profile:
    input:
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
        metrics=all_metrics,
        model=model_inputs,
    output:
        status=report(
            f"{PROFILES}/status.csv",
            caption="../report/profile_status.rst",
            category="Profiles",
            labels={"run": config["run"], "table": "profiling status"},
        ),
        breakdown=report(
            f"{PROFILES}/breakdown.csv",
            caption="../report/profile_breakdown_table.rst",
            category="Profiles",
            labels={"run": config["run"], "table": "GPU time breakdown per GPU"},
        ),
    params:
        model_dir=MODEL_DIR,
        device=lambda wildcards: device(),
        profiles_dir=lambda wildcards, output: os.path.dirname(output.status),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/profile.log",
    resources:
        # Never beside a benchmark: the profile is a benchmark run too.
        benchmark_slots=1,
        gpu=profile_gpus,
        runtime=PROFILE_RUNTIME,
    script:
        "../scripts/profile_configs.py"


rule profile_report:
    input:
        status=f"{PROFILES}/status.csv",
        breakdown=f"{PROFILES}/breakdown.csv",
        observations=f"{RESULTS}/observations.csv",
    output:
        png=report(
            f"{RESULTS}/figures/profile_breakdown.png",
            caption="../report/profile_breakdown.rst",
            category="Profiles",
            labels={"run": config["run"], "figure": "GPU time breakdown (Nsight Systems)"},
        ),
        pdf=f"{RESULTS}/figures/profile_breakdown.pdf",
        explanation=report(
            f"{PROFILES}/explanation.txt",
            caption="../report/profile_explanation.rst",
            category="Profiles",
            labels={"run": config["run"], "document": "why TP or PP wins (from the profiles)"},
        ),
    params:
        objectives=config["objectives"],
        run=config["run"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/profile_report.log",
    localrule: True
    script:
        "../scripts/profile_report.py"
