# Tables and figures from every result of the run.


rule observations:
    input:
        metrics=all_metrics,
        proposals=all_proposals,
    output:
        observations=report(
            f"{RESULTS}/observations.csv",
            caption="../report/observations.rst",
            category="Search",
            labels={"run": config["run"], "table": "observations"},
        ),
        pareto=report(
            f"{RESULTS}/pareto.csv",
            caption="../report/pareto_table.rst",
            category="Pareto front",
            labels={"run": config["run"], "table": "Pareto set"},
        ),
        hypervolume=report(
            f"{RESULTS}/hypervolume.csv",
            caption="../report/hypervolume_table.rst",
            category="Search",
            labels={"run": config["run"], "table": "hypervolume per iteration"},
        ),
        thermal=report(
            f"{RESULTS}/thermal_warnings.txt",
            caption="../report/thermal_warnings.rst",
            category="Energy",
            labels={"run": config["run"], "table": "thermal warnings"},
        ),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/observations.log",
    localrule: True
    script:
        "../scripts/aggregate_results.py"


FIGURES = {
    # name: (caption, category, label)
    "pareto_front": ("pareto_front.rst", "Pareto front", "Pareto front"),
    "pareto_matrix": ("pareto_matrix.rst", "Pareto front", "Pareto front: scatter matrix"),
    "parallel_coordinates": ("parallel_coordinates.rst", "Pareto front", "Pareto front: parallel coordinates"),
    "hypervolume": ("hypervolume.rst", "Search", "hypervolume per iteration"),
    "energy_sources": ("energy_sources.rst", "Energy", "energy per source (estimated where hatched)"),
    "knob_effects": ("knob_effects.rst", "Knobs", "knob effects"),
    "tp_pp": ("tp_pp.rst", "Knobs", "TP x PP trade-off"),
    "latency": ("latency.rst", "Latency", "latency percentiles"),
    "power_timelines": ("power_timelines.rst", "Energy", "power over time: the front and vLLM's default"),
    "power_steadiness": ("power_steadiness.rst", "Energy", "power steadiness of every window"),
}
# Figures that can hold no data in this run are not drawn (nor shown in the reports): latency percentiles exist in
# online mode only, the TP x PP figure needs more than one tensor or pipeline parallel size in the search space,
# and the power figures need the power timeline.
if config["benchmark"]["mode"] != "online":
    del FIGURES["latency"]
# The front: two objectives in one scatter with the front as a step line; three or more as a pairwise scatter matrix
# and a parallel-coordinates plot.
for name in ["pareto_matrix", "parallel_coordinates"] if len(config["objectives"]) == 2 else ["pareto_front"]:
    del FIGURES[name]
if all(len(config["search_space"].get(k, [])) < 2 for k in ("tensor_parallel_size", "pipeline_parallel_size")):
    del FIGURES["tp_pp"]
# energy.timeline_interval_s: 0 records no power timeline.
if not config["energy"]["timeline_interval_s"]:
    del FIGURES["power_timelines"], FIGURES["power_steadiness"]


rule tradeoffs:
    input:
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
    output:
        tradeoffs=report(
            f"{RESULTS}/tradeoffs.csv",
            caption="../report/tradeoffs.rst",
            category="Pareto front",
            labels={"run": config["run"], "table": "which objective pairs trade off"},
        ),
    params:
        objectives=config["objectives"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/tradeoffs.log",
    localrule: True
    script:
        "../scripts/tradeoffs.py"


rule figures:
    input:
        observations=f"{RESULTS}/observations.csv",
        hypervolume=f"{RESULTS}/hypervolume.csv",
        metrics=all_metrics,
    output:
        **{
            name: report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/{caption}",
                category=category,
                labels={"run": config["run"], "figure": label},
            )
            for name, (caption, category, label) in FIGURES.items()
        },
        **{f"{name}_pdf": f"{RESULTS}/figures/{name}.pdf" for name in FIGURES},
    params:
        space_keys=list(config["search_space"]),
        objectives=config["objectives"],
        run=config["run"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/figures.log",
    localrule: True
    script:
        "../scripts/plot_results.py"
