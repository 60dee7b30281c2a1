# The confirmation stage (vllm_mobo.confirm; `confirm:` in the config): after the search, the front's configurations
# and vLLM's default are measured again, `confirm.repeats` times each with a fresh engine, interleaved (A B C A B C),
# in ONE job so that every measurement compared comes from the same machine and GPUs. The measurements are files
# under results/<run>/confirm/rep_<r>/<candidate>/ (not declared outputs: a job killed midway keeps them, and the
# next run goes on from there). `confirm_summary` computes means, 95% intervals, the confirmed front, the difference
# of each configuration to vLLM's default and the noise level the optimiser can use (confirm/noise.json).

CONFIRM = f"{RESULTS}/confirm"


def confirm_outputs(wildcards=None):
    """What the reports and `rule all` need from the confirmation stage: nothing when it is off."""
    if not config["confirm"]["enabled"]:
        return {}
    return {
        "confirm_measurements": f"{CONFIRM}/measurements.csv",
        "confirm_summary": f"{CONFIRM}/summary.csv",
        "confirm_front": f"{CONFIRM}/front.csv",
        "confirm_comparison": f"{CONFIRM}/default_comparison.csv",
        "confirm_noise": f"{CONFIRM}/noise.json",
        "confirm_figure": f"{RESULTS}/figures/confirmed_front.pdf",
        "confirm_figure_png": f"{RESULTS}/figures/confirmed_front.png",
    }


def confirmed_front(wildcards=None):
    """The confirmed front for the knee export: nothing when the confirmation stage is off."""
    return {k: v for k, v in confirm_outputs().items() if k == "confirm_front"}


def confirm_gpus(wildcards):
    """GPUs the confirmation job holds (it measures one configuration at a time): the most any configuration of
    the search can use."""
    if device() != "cuda":
        return 0
    return max_devices_requested(config)[0]


rule confirm:
    input:
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
        metrics=all_metrics,
        model=model_inputs,
    output:
        plan=f"{CONFIRM}/plan.json",
        measurements=report(
            f"{CONFIRM}/measurements.csv",
            caption="../report/confirm_measurements.rst",
            category="Confirmation",
            labels={"run": config["run"], "table": "every repeat"},
        ),
    params:
        confirm_dir=CONFIRM,
        log_dir=f"{LOGS}/confirm",
        model_dir=MODEL_DIR,
        space_keys=list(config["search_space"]),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/confirm.log",
    resources:
        benchmark_slots=1,  # never beside a benchmark: these are benchmarks
        gpu=confirm_gpus,
        runtime=(config["confirm"]["max_configs"] + 1) * config["confirm"]["repeats"]
        * (int(config["benchmark"]["timeout_s"] / 60) + 2) + 5,
    script:
        "../scripts/confirm_measure.py"


rule confirm_summary:
    input:
        measurements=f"{CONFIRM}/measurements.csv",
    output:
        summary=report(
            f"{CONFIRM}/summary.csv",
            caption="../report/confirm_summary.rst",
            category="Confirmation",
            labels={"run": config["run"], "table": "mean, sd and 95% CI per configuration"},
        ),
        front=report(
            f"{CONFIRM}/front.csv",
            caption="../report/confirm_front.rst",
            category="Confirmation",
            labels={"run": config["run"], "table": "confirmed front"},
        ),
        comparison=report(
            f"{CONFIRM}/default_comparison.csv",
            caption="../report/confirm_comparison.rst",
            category="Confirmation",
            labels={"run": config["run"], "table": "difference to vLLM's default (95% CI)"},
        ),
        noise=f"{CONFIRM}/noise.json",
        png=report(
            f"{RESULTS}/figures/confirmed_front.png",
            caption="../report/confirmed_front.rst",
            category="Confirmation",
            labels={"run": config["run"], "figure": "confirmed front with 95% intervals"},
        ),
        pdf=f"{RESULTS}/figures/confirmed_front.pdf",
    params:
        objectives=config["objectives"],
        repeats=config["confirm"]["repeats"],
        run=config["run"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/confirm_summary.log",
    localrule: True
    script:
        "../scripts/confirm_summary.py"
