"""Fronts of 3 and 4 objectives: the knee, the best configurations, the trade-off table, the figures, the LaTeX
report and the config check on synthetic frames and the fixture run; and the real pipeline with three objectives
on the CPU engine (tests/configs/tiny_three.yaml)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from itertools import combinations
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import built_pdf_text, load_test_config, run_snakemake, write_config
from vllm_mobo.config import ConfigError, load_schema, validate_config
from vllm_mobo.confirm.figure import confirmed_front_figure
from vllm_mobo.report import analysis, baseline
from vllm_mobo.report.front_plots import front_figure_names, normalised_objectives, parallel_coordinates_figure, \
    pareto_matrix_figure
from vllm_mobo.report.latex import latex_context, render_latex
from vllm_mobo.report.tables import highlighted_configs, hypervolume_by_iteration, knee_index, pareto_table
from vllm_mobo.report.tradeoffs import MIN_POINTS, THRESHOLD, tradeoff_table, tradeoff_text
from vllm_mobo.resources import resource

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run_tiny"
THREE = [{"metric": "output_tokens_per_s", "direction": "maximize"},
         {"metric": "joules_per_output_token", "direction": "minimize"},
         {"metric": "mean_power_w", "direction": "minimize"}]
FOUR = THREE + [{"metric": "requests_per_s", "direction": "maximize"}]


def frame(columns: dict, default: int | None = 0) -> pd.DataFrame:
    """Observations as observations.csv has them: feasible rows, one candidate each, the first vLLM's default."""
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"iteration": np.arange(n) // 2, "candidate": [f"c{i}" for i in range(n)], "status": "ok",
                         "feasible": True, "is_vllm_default": [i == default for i in range(n)],
                         "energy_cpu_provenance": "estimated", "energy_ram_provenance": "estimated", **columns})


def synthetic(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """Throughput t, energy per token falling with t, mean power rising with t, requests/s with t: energy and
    throughput improve together, power trades off against both."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(10, 100, n)
    return frame({"output_tokens_per_s": t, "joules_per_output_token": 50 / t * rng.uniform(0.8, 1.2, n),
                  "mean_power_w": t * rng.uniform(0.9, 1.1, n), "requests_per_s": t / 12 * rng.uniform(0.9, 1.1, n)})


# -------------------------------------------------------------------------------------------------- the knee


def test_knee_of_three_objectives_is_the_point_nearest_the_ideal():
    # three extremes (best on one objective, worst on the others) and one balanced point, in log space
    logs = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.4, 0.4, 0.4]])
    assert knee_index(logs) == 3
    pareto = frame({"output_tokens_per_s": np.exp(-logs[:, 0]), "joules_per_output_token": np.exp(logs[:, 1]),
                    "mean_power_w": np.exp(logs[:, 2])})
    found = highlighted_configs(pareto, THREE)
    assert found == {"best output_tokens_per_s": "c0", "best joules_per_output_token": "c1",
                     "best mean_power_w": "c2", "knee": "c3"}


def test_knee_of_two_objectives_is_the_farthest_from_the_extremes_line():
    # a convex front already scaled to [0, 1]: the second point bulges farthest towards the ideal
    logs = np.array([[0.0, 1.0], [0.1, 0.3], [0.5, 0.15], [1.0, 0.0]])
    dist = np.abs(logs[:, 0] + logs[:, 1] - 1) / np.sqrt(2)  # to the line x + y = 1 through the extremes
    assert knee_index(logs) == int(np.argmax(dist)) == 1
    assert knee_index(logs[[3, 2, 1, 0]]) == 2  # the same point, whatever the order


def test_best_per_objective_and_knee_for_four_objectives():
    obs = synthetic()
    front = pareto_table(obs, FOUR)
    found = highlighted_configs(front, FOUR)
    assert set(found) == {f"best {o['metric']}" for o in FOUR} | {"knee"}
    assert found["best output_tokens_per_s"] == obs.loc[obs["output_tokens_per_s"].idxmax(), "candidate"]
    assert found["best mean_power_w"] == obs.loc[obs["mean_power_w"].idxmin(), "candidate"]
    assert found["knee"] in set(front["candidate"])


def test_hypervolume_of_three_objectives_grows_with_the_iterations():
    hv = hypervolume_by_iteration(synthetic(), THREE)
    assert len(hv) == 6 and (hv["hypervolume"] > 0).all() and (hv["hypervolume"].diff().dropna() >= 0).all()
    assert (hv["pareto_size"] >= 1).all()


# ---------------------------------------------------------------------------------------------- trade-offs


def test_tradeoffs_name_the_pairs_that_conflict():
    obs = synthetic()
    table = tradeoff_table(obs, pareto_table(obs, THREE), THREE).set_index(["objective_a", "objective_b"])
    assert list(table.index) == [(a["metric"], b["metric"]) for a, b in combinations(THREE, 2)]
    assert table.loc[("output_tokens_per_s", "joules_per_output_token"), "verdict"] == "improve together"
    assert table.loc[("output_tokens_per_s", "mean_power_w"), "verdict"] == "trade off"
    assert table.loc[("joules_per_output_token", "mean_power_w"), "verdict"] == "trade off"
    assert (table["basis"] == "front").all() and (table["n_feasible"] == 12).all()
    assert (table.loc[table["verdict"] == "trade off", "rho_front"] <= -THRESHOLD).all()
    text = " ".join(tradeoff_text(table.reset_index()))
    assert "output tokens/s and mean power (W) trade off on the front" in text
    assert f"rho <= -{THRESHOLD:g}" in text


def test_tradeoffs_say_when_there_are_too_few_points():
    few = synthetic(MIN_POINTS - 1)
    table = tradeoff_table(few, pareto_table(few, THREE), THREE)
    assert (table["verdict"] == "too few points").all() and (table["basis"] == "none").all()
    assert table["rho_front"].isna().all() and table["rho_feasible"].isna().all()
    assert "cannot be judged yet" in " ".join(tradeoff_text(table))
    # a small front falls back to every feasible observation
    obs = synthetic(10)
    one = pareto_table(obs, THREE).iloc[:2]
    fallback = tradeoff_table(obs, one, THREE)
    assert (fallback["basis"] == "feasible observations").all() and fallback["rho_front"].isna().all()


def test_conflicting_front_pairs_are_counted_exactly():
    # throughput and power rise together (every pair conflicts); energy per token conflicts with throughput in one
    # pair (the first two) and with power in two (the third against each of the others)
    front = frame({"output_tokens_per_s": [10.0, 20.0, 30.0], "joules_per_output_token": [1.0, 2.0, 0.5],
                   "mean_power_w": [5.0, 6.0, 7.0]})
    table = tradeoff_table(front, front, THREE).set_index(["objective_a", "objective_b"])["front_pairs_conflicting"]
    assert table[("output_tokens_per_s", "mean_power_w")] == 3
    assert table[("output_tokens_per_s", "joules_per_output_token")] == 1
    assert table[("joules_per_output_token", "mean_power_w")] == 2


def test_tradeoffs_of_an_empty_run():
    obs = synthetic().assign(status="failed")
    table = tradeoff_table(obs, obs.iloc[0:0], THREE)
    assert len(table) == 3 and (table["verdict"] == "too few points").all() and (table["n_feasible"] == 0).all()


# ------------------------------------------------------------------------------------------------- figures


def _not_blank(path: Path) -> bool:
    img = mpimg.imread(path)
    return img.shape[0] > 300 and img.shape[1] > 300 and img[..., :3].std() > 0.01


@pytest.mark.parametrize("objectives", [THREE, FOUR], ids=["three", "four"])
def test_front_figures_of_three_and_four_objectives(tmp_path, objectives):
    obs = synthetic()
    assert front_figure_names(objectives) == ["pareto_matrix", "parallel_coordinates"]
    pareto_matrix_figure(obs, objectives, str(tmp_path / "m.png"), str(tmp_path / "m.pdf"), title="run x")
    parallel_coordinates_figure(obs, objectives, str(tmp_path / "p.png"), str(tmp_path / "p.pdf"), title="run x")
    for name in ("m", "p"):
        assert _not_blank(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    Z = normalised_objectives(obs, objectives)
    best = {o["metric"]: (obs[o["metric"]].idxmax() if o["direction"] == "maximize" else obs[o["metric"]].idxmin())
            for o in objectives}
    assert all(Z.loc[i, m] == 1.0 for m, i in best.items()) and Z.min().min() == 0.0


@pytest.mark.parametrize("case", ["one observation", "all failed", "no default"])
def test_front_figures_cope_with_small_runs(tmp_path, case):
    obs = {"one observation": synthetic().iloc[:1], "all failed": synthetic().assign(status="failed"),
           "no default": synthetic().assign(is_vllm_default=False)}[case]
    pareto_matrix_figure(obs, THREE, str(tmp_path / "m.png"))
    parallel_coordinates_figure(obs, THREE, str(tmp_path / "p.png"))
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "p.png").stat().st_size > 1000


def test_two_objectives_keep_the_single_front_figure():
    assert front_figure_names(THREE[:2]) == ["pareto_front"]


def test_confirmed_front_of_three_objectives_in_pairwise_panels(tmp_path):
    obs = synthetic(4)
    means = obs.assign(candidate=["vllm-default", "c1", "c2", "c3"], feasible=True, usable=3, repeats=3)
    for o in THREE:
        m = o["metric"]
        means[f"{m}_ci_low"], means[f"{m}_ci_high"] = means[m] * 0.95, means[m] * 1.05
    front = pareto_table(means, THREE)
    confirmed_front_figure(means, front, THREE, 3, str(tmp_path / "c.png"), str(tmp_path / "c.pdf"), title="run x")
    assert _not_blank(tmp_path / "c.png") and (tmp_path / "c.pdf").stat().st_size > 5000


# ------------------------------------------------------------------------------------ report text and config


def fixture_with(objectives: list[dict]):
    run = analysis.read_run(FIXTURE / "results" / "tiny")
    cfg = yaml.safe_load((FIXTURE / "config.yaml").read_text())
    cfg["objectives"] = objectives
    return run, validate_config(cfg, load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def test_latex_report_names_three_objectives_and_their_tradeoffs():
    # the fixture run measured total tokens/s too: a third objective over its real observations
    objectives = THREE[:2] + [{"metric": "total_tokens_per_s", "direction": "maximize"}]
    run, cfg = fixture_with(objectives)
    pareto = pareto_table(run["observations"], objectives)
    ctx = latex_context(run["observations"], pareto, run["records"], run["proposals"], cfg, "results/tiny/model",
                        figures={})
    tex = " ".join(render_latex(resource("report.tex"), ctx).split())
    assert "output tokens/s (maximize), J per output token (minimize) and total tokens/s (maximize)" in tex
    assert "beats on all 3 objectives at once" in tex and "nearest the ideal point" in tex
    assert r"\subsection{Which objectives trade off}" in tex and len(ctx["tradeoffs"]["rows"]) == 3
    assert "total tokens/s" in " ".join(baseline.default_text(run["observations"], pareto, objectives))
    assert "and total tokens/s (maximize)" in " ".join(analysis.summary_text(run["observations"],
                                                                              analysis.search_summary(
                                                                                  run["observations"],
                                                                                  run["proposals"]),
                                                                              objectives, "tiny"))


def test_latex_report_of_two_objectives_keeps_its_wording():
    run, cfg = fixture_with(THREE[:2])
    ctx = latex_context(run["observations"], run["pareto"], run["records"], run["proposals"], cfg,
                        "results/tiny/model", figures={})
    tex = " ".join(render_latex(resource("report.tex"), ctx).split())
    assert "output tokens/s (maximize) against J per output token (minimize)" in tex
    assert "beats on both objectives" in tex and "farthest from the line between the best configuration" in tex


def test_config_takes_two_to_four_distinct_objectives():
    good = load_test_config("tiny_three.yaml")
    assert [o["metric"] for o in validate_config(copy.deepcopy(good))["objectives"]] == [o["metric"] for o in THREE]
    five = copy.deepcopy(good)
    five["objectives"] = FOUR + [{"metric": "total_tokens_per_s", "direction": "maximize"}]
    with pytest.raises(ConfigError, match=r"objectives.*maxItems 4"):
        validate_config(five)
    twice = copy.deepcopy(good)
    twice["objectives"][2] = dict(THREE[0])
    with pytest.raises(ConfigError, match=r"the same metric twice: output_tokens_per_s \(objectives\[0\], "
                                          r"objectives\[2\]\)"):
        validate_config(twice)


# ------------------------------------------------------------------------------- the pipeline, three objectives


@pytest.fixture(scope="module")
def three_run(tmp_path_factory) -> Path:
    """The real pipeline (every rule, the CPU engine) on tests/configs/tiny_three.yaml."""
    workdir = tmp_path_factory.mktemp("three")
    write_config(workdir, load_test_config("tiny_three.yaml"))
    run_snakemake(workdir, "--cores", "all", timeout=1500, log=workdir / "snakemake.log")
    return workdir


@pytest.mark.engine
def test_pipeline_fronts_tables_and_figures_of_three_objectives(three_run):
    results = three_run / "results" / "tiny_three"
    metrics = [o["metric"] for o in THREE]
    obs = pd.read_csv(results / "observations.csv")
    assert len(obs) == 4 and set(obs["status"]) == {"ok"} and (obs[metrics] > 0).all().all()
    pareto = pd.read_csv(results / "pareto.csv")
    assert len(pareto) >= 1 and not pareto[metrics].isna().any().any()
    assert set(pareto["candidate"]) == set(pareto_table(obs, THREE)["candidate"])
    hv = pd.read_csv(results / "hypervolume.csv")
    assert (hv["hypervolume"].diff().dropna() >= 0).all() and hv["hypervolume"].iloc[-1] > 0
    last = json.loads((results / "iter_1" / "proposal.json").read_text())
    assert last["strategy"] and len(last["candidates"]) == 1
    tradeoffs = pd.read_csv(results / "tradeoffs.csv")
    assert [tuple(r) for r in tradeoffs[["objective_a", "objective_b"]].to_numpy()] == list(combinations(metrics, 2))
    assert set(tradeoffs["verdict"]) <= {"trade off", "improve together", "no clear relation", "too few points"}
    figures = results / "figures"
    for name in ("pareto_matrix", "parallel_coordinates"):
        assert _not_blank(figures / f"{name}.png"), name
        assert (figures / f"{name}.pdf").stat().st_size > 5000, name
    assert not (figures / "pareto_front.png").exists(), "no two-objective front figure for three objectives"


@pytest.mark.engine
def test_pipeline_reports_name_the_three_objectives(three_run):
    results = three_run / "results" / "tiny_three"
    html = (results / "analysis" / "analysis.html").read_text()
    assert "Which objectives trade off" in html and "Rule: Spearman" in html and "mean power (W)" in html
    assert html.count("data:image/png;base64") >= 2
    tex = " ".join((three_run / "report" / "build" / "tiny_three" / "tiny_three.tex").read_text().split())
    assert "J per output token (minimize) and mean power (W) (minimize)" in tex
    assert "pareto-matrix" in tex and "parallel-coordinates" in tex and "Which objectives trade off" in tex
    if shutil.which("pdftotext"):
        text = " ".join(subprocess.run(["pdftotext", str(three_run / "report" / "tiny_three.pdf"), "-"],
                                       capture_output=True, text=True, check=True).stdout.split())
        assert "Which objectives trade off" in text and "mean power (W)" in text


@pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
                    reason="latexmk or pdftotext not installed")
def test_pdf_of_four_objectives_builds(tmp_path):
    # four objectives the fixture run measured: the knob table then has ten columns
    objectives = THREE[:2] + [{"metric": "total_tokens_per_s", "direction": "maximize"},
                              {"metric": "requests_per_s", "direction": "maximize"}]
    run, cfg = fixture_with(objectives)
    pareto = pareto_table(run["observations"], objectives)
    ctx = latex_context(run["observations"], pareto, run["records"], run["proposals"], cfg, "results/tiny/model",
                        figures={})
    text = built_pdf_text(render_latex(resource("report.tex"), ctx), tmp_path)
    assert "J per output token (minimize), total tokens/s (maximize) and requests/s (maximize)" in text
    assert "Which objectives trade off" in text and "beats on all 4 objectives at once" in text
