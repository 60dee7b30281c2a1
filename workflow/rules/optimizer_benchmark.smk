# The optimiser benchmark: every strategy x replay table x seed runs the pipeline's own search with each
# candidate answered from a measured table (vllm_mobo.replay) instead of vLLM, then the traces, the summary,
# the figures and report/optimizer-benchmark.pdf (vllm_mobo.replay.compare). Not part of `rule all`:
#   snakemake --cores all optimizer_benchmark
# Settings: the `optimizer_benchmark:` block of the config (defaults in workflow/schemas/config.schema.yaml). The
# same benchmark runs without Snakemake: vllm-mobo compare-strategies.

OB = config["optimizer_benchmark"]
OB_OUT = OB["out"]


rule optimizer_benchmark:
    input:
        tables=[f"{t}/table.csv" for t in OB["tables"]],
        meta=[f"{t}/meta.yaml" for t in OB["tables"]],
        template=resource("optimizer_benchmark.tex"),
    output:
        traces=f"{OB_OUT}/traces.csv",
        summary=f"{OB_OUT}/summary.csv",
        markdown=f"{OB_OUT}/summary.md",
        latex=f"{OB_OUT}/summary.tex",
        target_check=f"{OB_OUT}/target_check.csv",
        settings=f"{OB_OUT}/settings.json",
        figures=[f"{OB_OUT}/figures/hv_vs_{kind}_{name}.{ext}" for name in (Path(t).name for t in OB["tables"])
                 for kind in ("evaluations", "energy") for ext in ("png", "pdf")],
        pdf=OB["pdf"],
    params:
        tables=OB["tables"],
        settings={k: OB[k] for k in ("seeds", "budget", "batch_size", "initial_design", "include_vllm_default",
                                     "front_includes_default", "noise", "strategies")},
        out=lambda wildcards, output: os.path.dirname(output.traces),
    threads: 8  # parallel runs; Snakemake lowers it to --cores (workflow.cores would break runs without --cores)
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        "logs/optimizer_benchmark.log",
    localrule: True
    script:
        "../scripts/optimizer_benchmark.py"
