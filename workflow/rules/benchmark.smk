# One job per candidate: the real vLLM engine in its own process; every outcome, failure included, is a file.


rule model_config:
    output:
        f"{MODEL_DIR}/config.json",
    params:
        model=config["workload"]["model"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/model_config.log",
    localrule: True
    script:
        "../scripts/write_model_config.py"


rule benchmark:
    input:
        proposal=f"{RESULTS}/iter_{{iteration}}/proposal.json",
        model=model_inputs,
    output:
        metrics=f"{RESULTS}/iter_{{iteration}}/{{candidate}}/metrics.json",
    params:
        iteration=lambda wildcards: int(wildcards.iteration),
        model_dir=MODEL_DIR,
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/benchmark/iter_{{iteration}}/{{candidate}}.log",
    resources:
        # One benchmark at a time on a machine (profiles/default sets benchmark_slots=1): concurrent runs would
        # share CPUs, memory bandwidth and power and spoil each other's measurements.
        benchmark_slots=1,
        gpu=benchmark_gpus,
        runtime=lambda wildcards: int(config["benchmark"]["timeout_s"] / 60) + 5,
    script:
        "../scripts/benchmark_candidate.py"
