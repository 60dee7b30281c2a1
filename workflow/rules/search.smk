# The optimisation loop: one checkpoint per iteration writes the next batch of candidates (or the decision to stop).


rule skipped_configurations:
    output:
        report(
            f"{RESULTS}/skipped.csv",
            caption="../report/skipped.rst",
            category="Search",
            labels={"run": config["run"], "table": "skipped configurations"},
        ),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/skipped_configurations.log",
    localrule: True
    script:
        "../scripts/list_skipped.py"


checkpoint propose:
    input:
        unpack(propose_inputs),
    output:
        proposal=f"{RESULTS}/iter_{{iteration}}/proposal.json",
    params:
        iteration=lambda wildcards: int(wildcards.iteration),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/propose/iter_{{iteration}}.log",
    localrule: True
    script:
        "../scripts/propose.py"
