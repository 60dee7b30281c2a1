"""Figures, analysis notebook, LaTeX report, knee export and `snakemake --report`, built by the real rules from a
real finished run (tests/fixtures/run_tiny, see its README), plus the analysis functions on edge cases.

The LaTeX tests need latexmk and pdftotext (Debian: latexmk texlive-latex-base texlive-latex-recommended
texlive-fonts-recommended poppler-utils); without latexmk they are skipped and the PDF is not built.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import built_pdf_text, run_snakemake
from vllm_mobo.config import load_schema, validate_config
from vllm_mobo.records import load_records, metric_label, observation_row, record_index
from vllm_mobo.report import analysis, baseline, energy, knobs
from vllm_mobo.report import plots as P
from vllm_mobo.report.latex import latex_context, objectives_phrase, render_latex, rst_caption
from vllm_mobo.report.tables import pareto_table
from vllm_mobo.resources import resource

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run_tiny"
RUN = "tiny"
RESULTS = f"results/{RUN}"
# The fixture ran offline over a space without TP or PP: no latency or TP x PP figure (they would hold no data).
FIGURES = ["pareto_front", "hypervolume", "energy_sources", "knob_effects"]
DOWNSTREAM_RULES = {"figures", "tradeoffs", "analysis_notebook", "notebook_html", "latex_source", "latex_pdf", "export_knee", "all",
                    "profile", "profile_report"}  # profile: Nsight Systems, "not profiled" without nsys/GPU
HAVE_LATEX = shutil.which("latexmk") is not None and shutil.which("pdftotext") is not None
needs_latex = pytest.mark.skipif(not HAVE_LATEX, reason="latexmk or pdftotext not installed (apt-get install latexmk "
                                 "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended poppler-utils)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A copy of the fixture run, every file with the same modification time: a finished search."""
    d = tmp_path_factory.mktemp("run") / "run_tiny"
    shutil.copytree(FIXTURE, d)
    stamp = 1_764_000_000  # one time for every file: no input is newer than an output
    for p in d.rglob("*"):
        os.utime(p, (stamp, stamp))
    return d


@pytest.fixture(scope="module")
def planned_rules(run_dir) -> set[str]:
    res = run_snakemake(run_dir, "--cores", "2", "--dry-run", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return set(re.findall(r"^(?:local)?rule (\w+):", res.stdout + res.stderr, flags=re.M))


@pytest.fixture(scope="module")
def built(run_dir, planned_rules) -> Path:
    """The downstream rules, run for real by Snakemake on the fixture (the PDF only where LaTeX is installed)."""
    targets = [f"{RESULTS}/figures/{n}.{ext}" for n in FIGURES for ext in ("png", "pdf")]
    targets += [f"{RESULTS}/analysis/analysis.html", f"{RESULTS}/export/knee_vllm_serve.txt",
                f"{RESULTS}/export/knee_engine_args.yaml"]
    if HAVE_LATEX:
        targets.append(f"report/{RUN}.pdf")
    res = run_snakemake(run_dir, *targets, "--cores", "2", check=False)
    logs = "\n".join(f"== {p}\n{p.read_text(errors='replace')[-3000:]}" for p in (run_dir / "logs").rglob("*.log"))
    assert res.returncode == 0, res.stderr[-6000:] + logs
    return run_dir


def record_of(records, row):
    """The record of an observation row."""
    return record_index(records)[(int(row["iteration"]), row["candidate"])]


def fixture_tables():
    run = analysis.read_run(FIXTURE / RESULTS)
    cfg = validate_config(yaml.safe_load((FIXTURE / "config.yaml").read_text()),
                          load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return run, cfg


# ------------------------------------------------------------------------------------------ the pipeline


def test_finished_search_reruns_no_benchmark(planned_rules):
    assert planned_rules, "the dry run planned nothing: the downstream rules' outputs already exist?"
    assert planned_rules <= DOWNSTREAM_RULES, f"would rerun search rules: {planned_rules - DOWNSTREAM_RULES}"
    assert {"figures", "analysis_notebook", "latex_pdf", "export_knee"} <= planned_rules


def test_figures_exist_as_png_and_pdf(built):
    import matplotlib.image as mpimg

    for name in FIGURES:
        png, pdf = built / RESULTS / "figures" / f"{name}.png", built / RESULTS / "figures" / f"{name}.pdf"
        img = mpimg.imread(png)
        assert img.shape[0] > 200 and img.shape[1] > 200, name
        assert img[..., :3].std() > 0.01, f"{name}.png is blank"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000, name


def test_notebook_ran_headless_and_says_what_the_data_say(built):
    nb = nbformat.read(built / "logs" / RUN / "notebook" / "analysis.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "a code cell did not run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    html = (built / RESULTS / "analysis" / "analysis.html").read_text()
    run, cfg = fixture_tables()
    knee = baseline.roles(run["pareto"], cfg["objectives"])["knee"]
    assert knee in html
    assert "No online-mode run" in html  # the fixture ran offline
    assert "ESTIMATED" in html  # all of the fixture's energy is estimated
    default = run["observations"].query("candidate == 'vllm-default'").iloc[0]
    assert f"{default['output_tokens_per_s']:.4g} output tokens/s" in html
    assert html.count("data:image/png;base64") >= len(FIGURES)
    for table in ("knob_effects", "default_comparison", "energy_by_source"):
        assert len(pd.read_csv(built / RESULTS / "analysis" / f"{table}.csv")) > 0, table


@needs_latex
def test_pdf_holds_the_pareto_table_and_the_commands(built):
    pdf = built / "report" / f"{RUN}.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pareto = pd.read_csv(FIXTURE / RESULTS / "pareto.csv")
    assert len(pareto) > 0
    for _, row in pareto.iterrows():
        numbers = [f"{row['output_tokens_per_s']:.4g}", f"{row['joules_per_output_token']:.4g}"]
        assert any(l.strip().startswith(row["candidate"] + " ") and all(n in l.split() for n in numbers)
                   for l in text.splitlines()), f"no Pareto-table row {row['candidate']} {numbers}"
    flat = " ".join(text.split())
    knee = json.loads(next((FIXTURE / RESULTS).glob(f"iter_*/{pareto['candidate'][0]}/metrics.json")).read_text())
    for arg, value in knee["engine_args"].items():
        flag = "--" + arg.replace("_", "-")
        if isinstance(value, bool):
            assert (flag if value else "--no-" + arg.replace("_", "-")) in flat
        else:
            assert f"{flag} {value}" in flat, flag
    assert "max_num_seqs" in flat  # underscores escaped for LaTeX, printed as underscores
    assert "ESTIMATED" in flat and "estimated" in flat
    hardware = knee["hardware"]
    assert hardware["cpu_model"] in flat and knee["software"]["vllm"] in flat
    assert "Limitations" in flat


def test_html_report_registers_every_output(built):
    res = run_snakemake(built, "--cores", "2", "--report", "report.html", check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    html = (built / "report.html").read_text()
    expected = [f"{n}.png" for n in FIGURES] + ["analysis.html", "knee_vllm_serve.txt", "knee_engine_args.yaml",
                                                "knob_effects.csv", "default_comparison.csv", "energy_by_source.csv",
                                                "pareto.csv", "observations.csv", "tradeoffs.csv"]
    if HAVE_LATEX:
        expected.append(f"{RUN}.pdf")
    missing = [e for e in expected if e not in html]
    assert not missing, missing


def test_knee_export_is_a_command_vllm_parses(built):
    run, cfg = fixture_tables()
    knee = baseline.roles(run["pareto"], cfg["objectives"])["knee"]
    rec = record_of(run["records"], run["pareto"][run["pareto"]["candidate"] == knee].iloc[0])
    text = (built / RESULTS / "export" / "knee_vllm_serve.txt").read_text()
    command = " ".join(l for l in text.replace("\\\n", " ").splitlines() if not l.startswith("#"))
    tokens = shlex.split(command)
    assert tokens[:3] == ["vllm", "serve", f"{RESULTS}/model"]
    args_yaml = yaml.safe_load((built / RESULTS / "export" / "knee_engine_args.yaml").read_text())
    assert args_yaml == {k.replace("_", "-"): v for k, v in rec.engine_args.items()}

    pytest.importorskip("vllm")
    from vllm.engine.arg_utils import EngineArgs

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older vLLM
        from vllm.utils import FlexibleArgumentParser
    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    from_command = EngineArgs.from_cli_args(parser.parse_args(["--model", tokens[2], *tokens[3:]]))
    from_yaml = EngineArgs.from_cli_args(parser.parse_args(
        ["--model", tokens[2], "--config", str(built / RESULTS / "export" / "knee_engine_args.yaml")]))
    for key, value in rec.engine_args.items():
        assert getattr(from_command, key) == value, key
        assert getattr(from_yaml, key) == value, key


# ---------------------------------------------------------------------------------- the library, edge cases


def test_latex_escaping_survives_a_real_build(tmp_path):
    """Config names and values with LaTeX specials (underscores, &, %, #, $) reach the PDF verbatim."""
    if not HAVE_LATEX:
        pytest.skip("latexmk or pdftotext not installed")
    run, cfg = fixture_tables()
    weird = "odd_name&50%#1$"
    obs = run["observations"].replace({"candidate": {"seqs64-prefix1-mbt1024": weird}})
    pareto = run["pareto"].replace({"candidate": {"seqs64-prefix1-mbt1024": weird}})
    records = [dataclasses.replace(r, candidate=weird) if r.candidate == "seqs64-prefix1-mbt1024" else r
               for r in run["records"]]
    ctx = latex_context(obs, pareto, records, run["proposals"], cfg, "results/tiny/model", figures={})
    source = render_latex(resource("report.tex"), ctx)
    assert r"odd\_name\&50\%\#1\$" in source
    assert weird in built_pdf_text(source, tmp_path)


@needs_latex
@pytest.mark.parametrize("case", ["all failed", "one observation", "no default"])
def test_pdf_builds_for_small_and_failed_runs(tmp_path, case):
    run, cfg = fixture_tables()
    obs = run["observations"]
    if case == "all failed":
        obs = obs.assign(status="failed", failure_kind="oom", failure_reason="killed")
    elif case == "one observation":
        obs = obs[obs["candidate"] == "seqs32-prefix1-mbt1024"].reset_index(drop=True)
    else:
        obs = obs[obs["candidate"] != "vllm-default"].reset_index(drop=True)
    pareto = pareto_table(obs, cfg["objectives"])
    ctx = latex_context(obs, pareto, run["records"], run["proposals"], cfg, "results/tiny/model", figures={})
    text = built_pdf_text(render_latex(resource("report.tex"), ctx), tmp_path)
    expected = {"all failed": "no configuration ran successfully, so there is nothing to recommend",
                "one observation": "Deploy seqs32-prefix1-mbt1024",
                "no default": "was not benchmarked in this run"}[case]
    assert expected.lower() in text.lower()


def _one_observation():
    run, cfg = fixture_tables()
    obs = run["observations"][run["observations"]["candidate"] == "vllm-default"].reset_index(drop=True)
    return obs, cfg, run


def test_figures_and_text_for_a_single_observation_and_missing_knobs(tmp_path):
    obs, cfg, run = _one_observation()
    keys = list(cfg["search_space"]) + ["block_size"]  # a knob the observations have no column for
    objs = cfg["objectives"]
    P.pareto_figure(obs, objs, str(tmp_path / "p.png"), str(tmp_path / "p.pdf"))
    P.energy_sources_figure(obs, str(tmp_path / "e.png"), str(tmp_path / "e.pdf"))
    P.knob_effects_figure(obs, keys, objs, str(tmp_path / "k.png"), str(tmp_path / "k.pdf"))
    P.tp_pp_figure(obs, objs, str(tmp_path / "t.png"), str(tmp_path / "t.pdf"))  # no TP/PP columns
    P.latency_figure(obs, objs, str(tmp_path / "l.png"), str(tmp_path / "l.pdf"))
    for f in tmp_path.iterdir():
        assert f.stat().st_size > 1000, f.name
    text = " ".join(knobs.knob_text(obs, keys, objs))
    assert "block_size" in text and "no knob was evaluated at two or more values" in text
    pareto = obs.copy()
    assert "vLLM's default itself" in " ".join(baseline.default_text(obs, pareto, objs))
    assert energy.energy_qualifier(obs) == "estimated"


def test_all_failed_run_says_so(tmp_path):
    run, cfg = fixture_tables()
    obs = run["observations"].assign(status="failed", failure_kind="oom", failure_reason="killed")
    objs = cfg["objectives"]
    empty = obs.iloc[0:0]
    assert "No configuration ran successfully" in " ".join(baseline.default_text(obs, empty, objs))
    assert energy.energy_by_source(obs).empty
    P.energy_sources_figure(obs, str(tmp_path / "e.png"))
    P.knob_effects_figure(obs, list(cfg["search_space"]), objs, str(tmp_path / "k.png"))
    assert (tmp_path / "e.png").stat().st_size > 1000 and (tmp_path / "k.png").stat().st_size > 1000


def test_tp_pp_filled_from_resolved_engine_args():
    run, _ = fixture_tables()
    assert "tensor_parallel_size" not in run["observations"]
    obs = analysis.enrich_observations(run["observations"], run["records"], ["tensor_parallel_size", "pipeline_parallel_size"])
    for _, row in obs.iterrows():
        rec = record_of(run["records"], row)
        assert row["tensor_parallel_size"] == rec.resolved_engine_args["tensor_parallel_size"]
        assert row["pipeline_parallel_size"] == rec.resolved_engine_args["pipeline_parallel_size"]


def test_limitations_name_the_machines_when_a_run_spans_several():
    # the three-objective GPU table: iterations 0-6, 7-12 and 13-18 each measured on an H200 of its own
    records = load_records(sorted((ROOT / "docs" / "gpu" / "2026-12-03-h200-online3-table" / "metrics").glob("*.json")))
    keys = ["max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill"]
    obs = pd.DataFrame([observation_row(r, keys) for r in records])
    items = analysis.limitations(obs, records, keys, analysis.search_summary(obs, []))
    [machines] = [x for x in items if "machines" in x]
    assert "on 3 machines (8 on vm (GPU 82459392); 6 on vm (GPU d62c0f88); 6 on vm (GPU eb6bae28))" in machines
    # one machine: nothing said
    run, _ = fixture_tables()
    obs = run["observations"]
    assert not [x for x in analysis.limitations(obs, run["records"], keys, analysis.search_summary(obs, []))
                if "machines" in x]


def test_latency_columns_are_found_by_name():
    obs = pd.DataFrame({"status": ["ok", "ok"], "ttft_ms_p50": [1.0, 2.0], "ttft_ms_p99": [3.0, 4.0],
                        "tpot_ms_p99": [np.nan, np.nan], "e2el_ms_p99.9": [5.0, 6.0], "output_tokens_per_s": [1, 2]})
    cols = analysis.latency_columns(obs)
    assert cols == {"e2el": [(99.9, "e2el_ms_p99.9")], "ttft": [(50.0, "ttft_ms_p50"), (99.0, "ttft_ms_p99")]}


def test_improvement_signs_and_knob_spread():
    assert baseline.improvement(110.0, 100.0, "maximize") == pytest.approx(10.0)
    assert baseline.improvement(90.0, 100.0, "minimize") == pytest.approx(10.0)
    assert baseline.improvement(110.0, 100.0, "minimize") == pytest.approx(-10.0)
    run, cfg = fixture_tables()
    imp = knobs.knob_importance(run["observations"], list(cfg["search_space"]), cfg["objectives"]).set_index("knob")
    ok = run["observations"]
    by = ok.groupby("max_num_seqs")["output_tokens_per_s"].mean()
    expected = 100 * (by.max() - by.min()) / ok["output_tokens_per_s"].mean()
    assert imp.loc["max_num_seqs", "spread % output_tokens_per_s"] == pytest.approx(expected)
    assert np.isnan(imp.loc["enable_prefix_caching", "max spread %"])  # one value only in the fixture


def test_captions_shared_with_the_pdf_are_plain_text():
    for name in FIGURES:
        text = rst_caption(ROOT / "workflow" / "report" / f"{name}.rst")
        assert text and "``" not in text and "\n" not in text


def test_method_text_names_the_load_of_each_mode_and_every_strategy():
    from vllm_mobo.records import Record
    from vllm_mobo.report.latex import load_text
    from vllm_mobo.search.optimizer.strategies import DESCRIPTIONS, STRATEGIES

    def runs(mode: str) -> list[Record]:
        return [Record.from_dict({"candidate": "vllm-default", "status": "ok", "mode": mode})]

    assert set(DESCRIPTIONS) == set(STRATEGIES)  # a new strategy gets its sentence in the report
    cfg = validate_config(yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "configs"
                                          / "gpu4_online_llama8b.yaml").read_text()))
    online = load_text(cfg, runs("online"))
    assert online.startswith("online: 400 requests per rate") and "at 20/s (Poisson arrivals)" in online
    assert "1000" not in online  # workload.num_prompts is the offline count, not what the server was sent
    cfg["benchmark"]["online"]["request_rates"] = [5, "inf"]
    assert "server at 5/s and all at once (Poisson arrivals)" in load_text(cfg, runs("online"))
    assert "the capacity under the SLOs: the request rate ramped from 32/s by x2" in load_text(cfg, runs("online"))
    cfg["benchmark"]["online"]["request_rates"] = ["inf"]
    cfg["benchmark"]["online"]["capacity"]["enabled"] = False
    assert load_text(cfg, runs("online")).endswith("server all at once")
    assert load_text(cfg, runs("offline")) == "offline: 1000 prompts submitted at once"


def test_space_sizes_come_from_the_last_proposal_that_proposed_something():
    obs = pd.DataFrame({"status": ["ok"], "iteration": [0]})
    proposals = [{"candidates": [{"name": "a"}], "space_size": 432, "valid_size": 432},
                 {"candidates": [], "stop": True, "reason": "budget reached", "space_size": 432, "valid_size": 0}]
    summary = analysis.search_summary(obs, proposals)
    assert (summary["space_size"], summary["valid_size"]) == (432, 432)
    assert summary["stop_reason"] == "budget reached"


def test_axis_labels_flag_estimated_energy_for_every_energy_metric():
    from vllm_mobo.report.plots import _axis_label

    run, _ = fixture_tables()
    obs = run["observations"]  # CPU and RAM energy estimated on the CPU build
    for metric in ("joules_per_output_token", "joules_per_token", "mean_power_w"):
        assert "ESTIMATED" in _axis_label(metric, obs), metric
    assert "ESTIMATED" not in _axis_label("output_tokens_per_s", obs)
    measured = obs.assign(energy_cpu_provenance="measured", energy_ram_provenance="measured")
    assert "ESTIMATED" not in _axis_label("mean_power_w", measured)


def test_title_and_abstract_name_the_objectives_and_the_method():
    """The title names the run's objectives (2: "A against B"; 3-4: "A, B and C"), and a model-based strategy's
    run says "multi-objective Bayesian optimisation" with the strategy's name."""
    run, cfg = fixture_tables()
    labels = [metric_label(o["metric"]) for o in cfg["objectives"]]
    ctx = latex_context(run["observations"], run["pareto"], run["records"], run["proposals"], cfg,
                        "results/tiny/model", figures={})
    source = render_latex(resource("report.tex"), ctx)
    title = next(line for line in source.splitlines() if line.startswith(r"\title{"))
    assert analysis.latex_escape(f"{labels[0]} against {labels[1]}") in title
    three = cfg["objectives"] + [{"metric": "mean_power_w", "direction": "minimize"}]
    assert objectives_phrase(three) == f"{labels[0]}, {labels[1]} and {metric_label('mean_power_w')}"
    strategy = ctx["summary"]["strategy"]
    assert strategy, "the fixture's proposals name their strategy"
    said = f"multi-objective Bayesian optimisation ({strategy})" in " ".join(source.split())
    assert said == (strategy in {"qlognehvi", "ehvi", "ehvi-energy", "parego", "optuna-gp"}), strategy


def test_knee_export_takes_the_confirmed_knee_where_the_confirmation_ran():
    """With the confirmation stage's front, the exported command is its knee's (with the confirmed means and
    intervals in the comments), not the search front's; vLLM's default as the confirmed knee of a search that left
    it out is exported with the run's fixed arguments alone; without a confirmation the search's knee is exported."""
    from vllm_mobo.report.export import confirmed_knee, knee_export

    run, cfg = fixture_tables()
    objectives = cfg["objectives"]
    search_knee = baseline.roles(run["pareto"], objectives)["knee"]
    other = next(r for r in run["records"] if r.ok and r.candidate not in (search_knee, "vllm-default"))

    def front(candidate):
        row = {"candidate": candidate, "roles": "front", "repeats": 3, "usable": 3}
        for o in objectives:
            row.update({o["metric"]: 1.5, o["metric"] + "_ci_low": 1.25, o["metric"] + "_ci_high": 1.75})
        return pd.DataFrame([row])

    assert confirmed_knee(front(other.candidate), objectives) == other.candidate
    assert confirmed_knee(None, objectives) is None
    command, args_yaml = knee_export(run["pareto"], run["records"], objectives, "m", "tiny", "measured",
                                     front(other.candidate))
    comments = [line for line in command.splitlines() if line.startswith("#")]
    assert comments[0] == f"# knee of the confirmed front of run tiny: {other.candidate}"
    assert "mean of 3 fresh-engine runs" in comments[1] and "(95% CI 1.25-1.75)" in comments[1]
    assert yaml.safe_load(args_yaml) == {k.replace("_", "-"): v for k, v in other.engine_args.items()}

    searched = [r for r in run["records"] if r.candidate != "vllm-default"]
    command, args_yaml = knee_export(run["pareto"], searched, objectives, "m", "tiny", "measured",
                                     front("vllm-default"))
    assert command.startswith("# knee of the confirmed front of run tiny: vllm-default\n")
    fixed = {k: v for k, v in other.engine_args.items() if k not in other.config}
    assert fixed and yaml.safe_load(args_yaml) == {k.replace("_", "-"): v for k, v in fixed.items()}

    fallback, _ = knee_export(run["pareto"], run["records"], objectives, "m", "tiny", "measured",
                              front("never-searched"))
    assert fallback.startswith(f"# knee of the Pareto front of run tiny: {search_knee}")
    plain, _ = knee_export(run["pareto"], run["records"], objectives, "m", "tiny", "measured")
    assert plain == fallback
