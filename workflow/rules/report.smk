# The run's readable results: the analysis notebook (HTML), the LaTeX report (report/<run>.pdf) and the knee
# configuration exported as a `vllm serve` command and a YAML file of engine args. FIGURES is in analysis.smk.

REPORT_BUILD = f"report/build/{config['run']}"


rule analysis_notebook:
    input:
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
        hypervolume=f"{RESULTS}/hypervolume.csv",
        tradeoffs=f"{RESULTS}/tradeoffs.csv",
        metrics=all_metrics,
        proposals=all_proposals,
        figures=[f"{RESULTS}/figures/{name}.png" for name in FIGURES],
        **confirm_outputs(),
    output:
        knob_effects=report(
            f"{RESULTS}/analysis/knob_effects.csv",
            caption="../report/knob_effects_table.rst",
            category="Knobs",
            labels={"run": config["run"], "table": "knob effects (marginal means)"},
        ),
        default_comparison=report(
            f"{RESULTS}/analysis/default_comparison.csv",
            caption="../report/default_comparison.rst",
            category="Pareto front",
            labels={"run": config["run"], "table": "best configurations vs vLLM's default"},
        ),
        energy_by_source=report(
            f"{RESULTS}/analysis/energy_by_source.csv",
            caption="../report/energy_by_source.rst",
            category="Energy",
            labels={"run": config["run"], "table": "energy per source (with provenance)"},
        ),
    params:
        space_keys=list(config["search_space"]),
        objectives=config["objectives"],
        run=config["run"],
        figure_names=list(FIGURES),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        # The executed notebook; notebook_html renders it.
        notebook=f"{LOGS}/notebook/analysis.ipynb",
    localrule: True
    notebook:
        "../notebooks/analysis.py.ipynb"


rule notebook_html:
    input:
        notebook=f"{LOGS}/notebook/analysis.ipynb",
        # The notebook's tables too: a failed notebook run leaves its (empty) log behind but not these, so the
        # notebook is run again rather than an empty log rendered.
        tables=rules.analysis_notebook.output,
    output:
        html=report(
            f"{RESULTS}/analysis/analysis.html",
            caption="../report/analysis_notebook.rst",
            category="Analysis",
            labels={"run": config["run"], "document": "analysis notebook (HTML)"},
        ),
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/notebook_html.log",
    localrule: True
    script:
        "../scripts/render_notebook.py"


rule latex_source:
    input:
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
        tradeoffs=f"{RESULTS}/tradeoffs.csv",
        skipped=f"{RESULTS}/skipped.csv",
        metrics=all_metrics,
        proposals=all_proposals,
        figures=[f"{RESULTS}/figures/{name}.pdf" for name in FIGURES],
        template=resource("report.tex"),
        # The profiling section (workflow/rules/profile.smk).
        profile_status=f"{RESULTS}/profiles/status.csv",
        profile_breakdown=f"{RESULTS}/profiles/breakdown.csv",
        profile_explanation=f"{RESULTS}/profiles/explanation.txt",
        profile_figure=f"{RESULTS}/figures/profile_breakdown.pdf",
        thermal=f"{RESULTS}/thermal_warnings.txt",
        # The confirmation stage (workflow/rules/confirm.smk), when enabled.
        **confirm_outputs(),
    output:
        tex=f"{REPORT_BUILD}/{config['run']}.tex",
    params:
        figure_names=list(FIGURES),
        captions={name: workflow.source_path(f"../report/{caption}") for name, (caption, _, _) in FIGURES.items()},
        model_dir=MODEL_DIR,
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/latex_source.log",
    localrule: True
    script:
        "../scripts/latex_report.py"


rule latex_pdf:
    input:
        tex=f"{REPORT_BUILD}/{config['run']}.tex",
        figures=[f"{RESULTS}/figures/{name}.pdf" for name in FIGURES],
        confirm_figure=[confirm_outputs()["confirm_figure"]] if config["confirm"]["enabled"] else [],
    output:
        pdf=report(
            f"report/{config['run']}.pdf",
            caption="../report/latex_report.rst",
            category="Report",
            labels={"run": config["run"], "document": "LaTeX report (PDF)"},
        ),
    params:
        outdir=lambda wildcards, input: os.path.dirname(input.tex),
        built=lambda wildcards, input: os.path.splitext(input.tex)[0] + ".pdf",
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/latex_pdf.log",
    localrule: True
    shell:
        "latexmk -gg -pdf -interaction=nonstopmode -halt-on-error -outdir={params.outdir:q} {input.tex:q} > {log:q} 2>&1"
        " && cp {params.built:q} {output.pdf:q}"


rule export_knee:
    input:
        unpack(confirmed_front),
        observations=f"{RESULTS}/observations.csv",
        pareto=f"{RESULTS}/pareto.csv",
        metrics=all_metrics,
    output:
        command=report(
            f"{RESULTS}/export/knee_vllm_serve.txt",
            caption="../report/knee_command.rst",
            category="Export",
            labels={"run": config["run"], "file": "knee config: vllm serve command"},
        ),
        engine_args=report(
            f"{RESULTS}/export/knee_engine_args.yaml",
            caption="../report/knee_engine_args.rst",
            category="Export",
            labels={"run": config["run"], "file": "knee config: engine args (YAML)"},
        ),
    params:
        objectives=config["objectives"],
        model_dir=MODEL_DIR,
        run=config["run"],
    conda:
        "../envs/vllm_mobo.yaml"
    log:
        f"{LOGS}/export_knee.log",
    localrule: True
    script:
        "../scripts/export_knee.py"
