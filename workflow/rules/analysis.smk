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
    log:
        f"{LOGS}/observations.log",
    localrule: True
    script:
        "../scripts/aggregate_results.py"


rule figures:
    input:
        observations=f"{RESULTS}/observations.csv",
        hypervolume=f"{RESULTS}/hypervolume.csv",
    output:
        pareto=report(
            f"{RESULTS}/figures/pareto_front.png",
            caption="../report/pareto_front.rst",
            category="Pareto front",
            labels={"run": config["run"], "figure": "Pareto front"},
        ),
        pareto_pdf=f"{RESULTS}/figures/pareto_front.pdf",
        hypervolume=report(
            f"{RESULTS}/figures/hypervolume.png",
            caption="../report/hypervolume.rst",
            category="Search",
            labels={"run": config["run"], "figure": "hypervolume per iteration"},
        ),
    log:
        f"{LOGS}/figures.log",
    localrule: True
    script:
        "../scripts/plot_results.py"
