"""The strategy-comparison benchmark (vllm_mobo.replay.compare, `vllm-mobo compare-strategies`, the Snakemake
target optimizer_benchmark) on SYNTHETIC replay tables (made-up numbers, built by tests/test_replay.py's helpers).
Small budgets and 2 seeds: seconds, not minutes."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_replay import write_planted_table, write_synthetic_table
from test_yardstick import write_three_objective_table

from conftest import VLLM_MOBO, load_test_config, run_snakemake, write_config
from vllm_mobo.records import VLLM_DEFAULT, candidate_name
from vllm_mobo.replay import compare, scoring
from vllm_mobo.replay.table import ReplayTable


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    return write_synthetic_table(tmp_path_factory.mktemp("sb") / "synthetic-test")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> ReplayTable:
    return ReplayTable.load(write_planted_table(tmp_path_factory.mktemp("sb") / "planted"))


def test_hv_ratio_of_a_planted_three_point_front(planted):
    # log space: P1 (-3, 1), P2 (-2, 0), P3 (-1, -1); all-rows reference point (0.3, 1.75) (see write_planted_table)
    assert planted.reference_point() == pytest.approx([0.3, 1.75])
    assert set(planted.true_front()["candidate"]) == {"seqs16-tp1", "seqs32-tp1", "seqs64-tp1"}
    full = 1 * 0.75 + 1 * 1.75 + 1.3 * 2.75  # strips between the front's y1 values and the reference
    assert planted.true_hypervolume(reference="all_rows") == pytest.approx(full)
    p1_p3 = 2 * 0.75 + 1.3 * 2.75
    assert planted.hypervolume_of(["seqs16-tp1", "seqs64-tp1"], reference="all_rows") == pytest.approx(p1_p3)
    p2 = 2.3 * 1.75
    assert planted.hypervolume_of(["seqs32-tp1", "seqs128-tp1", VLLM_DEFAULT], reference="all_rows") == pytest.approx(p2)
    assert planted.hypervolume_of(["seqs256-tp1"], reference="all_rows") == 0.0  # a failure adds nothing
    # judging reference: the front's nadir (-1, 1) + 1% of its range (2, 2) = (-0.98, 1.02)
    assert planted.front_reference_point() == pytest.approx([-0.98, 1.02])
    front = 1 * 0.02 + 1 * 1.02 + 0.02 * 2.02
    assert planted.true_hypervolume() == pytest.approx(front)
    assert planted.hypervolume_of(["seqs32-tp1"]) == pytest.approx(1.02 * 1.02)
    # D1 (-1.5, 1.5) and vLLM's default (0, 0.5) lie beyond the front's nadir: nothing (the old box gave them a lot)
    assert planted.hypervolume_of(["seqs128-tp1", VLLM_DEFAULT]) == 0.0
    assert planted.hypervolume_of(["seqs128-tp1", VLLM_DEFAULT], reference="all_rows") == pytest.approx(0.75)


def test_a_search_that_finds_the_whole_front_has_ratio_one(planted, synth_dir):
    trace = compare.run_search(planted, "random", 0, compare.Settings(budget=20, batch_size=2, initial_design=2))
    assert len(trace) == len(planted.candidates()) == 6  # stops when every candidate is evaluated
    assert trace["hv_ratio"].iloc[-1] == pytest.approx(1.0, abs=1e-12)
    assert trace["pareto_found_share"].iloc[-1] == 1.0
    assert trace["hv_ratio"].is_monotonic_increasing
    # vLLM's default is evaluated first by every strategy, not searched for: it is not counted as found
    assert trace["candidate"].iloc[0] == VLLM_DEFAULT and trace["hv_ratio"].iloc[0] == 0.0
    with_default = compare.run_search(planted, "random", 0, compare.Settings(budget=20, batch_size=2, initial_design=2,
                                                                   front_includes_default=True))
    assert with_default["hv_ratio_all_rows_ref"].iloc[0] == pytest.approx(
        planted.hypervolume_of([VLLM_DEFAULT], reference="all_rows") / (1 * 0.75 + 1 * 1.75 + 1.3 * 2.75))
    assert with_default["hv_ratio"].iloc[0] == 0.0  # the default is beyond the front's nadir
    assert with_default["hv_ratio"].iloc[-1] == pytest.approx(1.0) == with_default["hv_ratio_all_rows_ref"].iloc[-1]
    t = ReplayTable.load(synth_dir)
    trace = compare.run_search(t, "random", 1, compare.Settings(budget=100, batch_size=8, initial_design=3))
    assert len(trace) == 49 and trace["hv_ratio"].iloc[-1] == pytest.approx(1.0, abs=1e-12)


def test_search_energy_counts_failures_with_the_median_power(planted):
    trace = compare.run_search(planted, "random", 0, compare.Settings(budget=20, batch_size=2, initial_design=2))
    power = planted.median_power_per_device_w()
    # every ok row of the planted table: 1000 tokens, energy_j = J/token x 1000, wall 60 s
    ok = planted.rows[planted.rows["status"] == "ok"]
    assert power == pytest.approx(float((ok["energy_j"] / ok["elapsed_s"]).median()))
    fail = trace[trace["status"] == "failed"].iloc[0]
    assert fail["eval_energy_j"] == pytest.approx(20.0 * power * 1)
    assert fail["eval_energy_method"] == compare.EST_FAILURE
    row = trace[trace["candidate"] == "seqs16-tp1"].iloc[0]
    r = planted.rows.loc["seqs16-tp1"]
    assert row["eval_energy_j"] == pytest.approx(r["energy_j"] / r["elapsed_s"] * r["wall_s"])
    assert trace["cumulative_energy_j"].iloc[-1] == pytest.approx(trace["eval_energy_j"].sum())


def _hand_trace(ratios, energies=None, strategy="s", seed=0, table="t"):
    n = len(ratios)
    return pd.DataFrame({"table": table, "strategy": strategy, "seed": seed, "evaluation": range(1, n + 1),
                         "hv_ratio": ratios, "cumulative_energy_j": energies or [10.0 * (i + 1) for i in range(n)],
                         "pareto_found_share": np.linspace(0, 1, n), "true_pareto_size": 3, "noise": False,
                         "budget": n})


def test_evaluations_to_95_on_a_hand_made_trace():
    assert scoring.reach(_hand_trace([0.2, 0.5, 0.94, 0.951, 1.0])) == (4.0, 40.0)
    assert scoring.reach(_hand_trace([0.2, 0.95, 0.97])) == (2.0, 20.0)  # exactly 95% counts
    assert scoring.reach(_hand_trace([0.2, 0.5, 0.9])) == (math.inf, math.inf)
    assert scoring.value_at(_hand_trace([0.2, 0.5, 0.9]), 2) == 0.5
    assert scoring.value_at(_hand_trace([0.2, 0.5, 0.9]), 10) == 0.9  # a run that ended early keeps its last value


def test_summary_medians_iqr_and_censoring():
    traces = pd.concat([
        _hand_trace([0.5, 0.96, 1, 1], seed=0),     # reaches at 2
        _hand_trace([0.5, 0.6, 0.96, 1], seed=1),   # at 3
        _hand_trace([0.5, 0.6, 0.7, 0.97], seed=2),  # at 4
        _hand_trace([0.5, 0.6, 0.7, 0.8], seed=3),  # never
    ])
    s = scoring.summarize(traces, budget=4, check_at=2).iloc[0]
    assert s["seeds"] == 4 and s["reached_95_share"] == 0.75
    assert s["evals_to_95_median"] == 3.5 and s["evals_to_95_q25"] == 2.75 and math.isinf(s["evals_to_95_q75"])
    assert s["hv_ratio_median"] == pytest.approx(np.median([1, 1, 0.97, 0.8]))
    assert s["hv_ratio_at_2_median"] == pytest.approx(np.median([0.96, 0.6, 0.6, 0.6]))
    assert s["energy_to_95_j_median"] == 35.0
    assert scoring.quantiles([math.inf, math.inf, 3.0]) == [math.inf, math.inf, math.inf]
    assert scoring.quantiles([1.0, 2.0, 3.0, math.inf])[1] == 2.5


def _summary_row(table, strategy, ev, hv12, hv25, hv=1.0, budget=50):
    return {"table": table, "strategy": strategy, "budget": budget, "evals_to_95_median": ev,
            "reached_95_share": 1.0 if np.isfinite(ev) else 0.0, "hv_ratio_at_12_median": hv12,
            "hv_ratio_at_25_median": hv25, "hv_ratio_median": hv}


def test_target_check_clauses(planted):
    summary = pd.DataFrame([_summary_row("planted", "new", 18, 0.90, 0.99), _summary_row("planted", "ehvi", 22, 0.92, 0.99),
                            _summary_row("planted", "random", math.inf, 0.50, 0.80, 0.9),
                            _summary_row("planted", "nsga2", 30, 0.85, 0.99)])
    checks = scoring.target_check(summary, {"planted": planted}, ours="new", skipped={"optuna": "unavailable: no optuna"})
    by = {c["clause"]: c for c in checks}
    assert [c["met"] for c in checks] == ["yes", "no", "no", "no"]
    reach_ = by["new reaches 95% within 20 evaluations (median)"]
    assert "median 18 evaluations" in reach_["numbers"] and "0.900 at 12, 0.990 at 25" in reach_["numbers"]
    at12 = by["new ahead of every baseline at 12 evaluations (median HV ratio)"]["numbers"]
    assert "behind ehvi (0.920) by 0.020" in at12 and "not run: optuna (unavailable: no optuna)" in at12
    assert "a tie, not a lead" in by["new ahead of every baseline at 25 evaluations (median HV ratio)"]["numbers"]
    exact = by["new no worse than ehvi (2-objective table)"]["numbers"]
    assert "0.020 lower at 12" in exact and "more evaluations" not in exact  # 18 < 22 evaluations to 95%
    # ours ahead everywhere; 95% not reached: short by more than budget - 20
    summary = pd.DataFrame([_summary_row("planted", "new", math.inf, 0.95, 0.99, 0.94),
                            _summary_row("planted", "ehvi", math.inf, 0.90, 0.98, 0.93)])
    checks = scoring.target_check(summary, {"planted": planted}, ours="new")
    assert [c["met"] for c in checks] == ["no", "yes", "yes", "yes"]
    assert "short of the target by more than 30 evaluations" in checks[0]["numbers"]
    assert "ahead of the best baseline (ehvi 0.900) by 0.050" in checks[1]["numbers"]
    # the default not run: every clause says so
    checks = scoring.target_check(summary, {"planted": planted}, ours="absent", skipped={"absent": "FAILED"})
    assert {c["met"] for c in checks} == {"not run"} and all("FAILED" in c["numbers"] for c in checks)


def test_target_check_on_three_objectives(tmp_path):
    table = ReplayTable.load(write_three_objective_table(tmp_path / "three"))
    summary = pd.DataFrame([_summary_row("three", "new", 10, 1.0, 1.0), _summary_row("three", "random", 30, 0.5, 0.9)])
    checks = scoring.target_check(summary, {"three": table}, ours="new")
    assert [c["met"] for c in checks] == ["yes", "yes", "yes", "n/a"]
    assert "3-objective table" in checks[-1]["numbers"]
    assert scoring.target_wording("new").startswith("median of at least 10 seeds, batch 4")


def test_target_check_refuses_a_partial_table(tmp_path):
    from test_replay import RUN_TINY

    from vllm_mobo.replay.from_run import table_from_run

    t = table_from_run(RUN_TINY, tmp_path / "tiny")
    summary = pd.DataFrame([_summary_row(t.name, "ehvi", 2.0, 1.0, 1.0)])
    first = scoring.target_check(summary, {t.name: t}, ours="ehvi")[0]
    assert first["met"] == "no" and "PARTIAL table" in first["numbers"]


def test_missing_strategies_are_skipped_loudly():
    run, skipped = compare.split_strategies(["ehvi", "random", "simulated-annealing"])
    assert run == ["ehvi", "random"]
    assert "unknown strategy" in skipped["simulated-annealing"]


def test_cli_end_to_end(synth_dir, tmp_path):
    out = tmp_path / "out"
    pdf = tmp_path / "report" / "optimizer-benchmark.pdf"
    proc = subprocess.run(
        [str(VLLM_MOBO), "compare-strategies", "--table", str(synth_dir),
         "--strategies", "ehvi,random,simulated-annealing", "--seeds", "2", "--budget", "6", "--batch-size", "2",
         "--initial-design", "3", "--noise", "--out", str(out), "--pdf", str(pdf), "--jobs", "2"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[4/4]" in proc.stdout and "SKIPPING strategy 'simulated-annealing'" in proc.stdout
    assert "Target check" in proc.stdout
    for f in ("traces.csv", "summary.csv", "summary.md", "summary.tex", "target_check.csv", "settings.json"):
        assert (out / f).stat().st_size > 0, f
    for kind in ("evaluations", "energy"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"hv_vs_{kind}_synthetic-test.{ext}").stat().st_size > 1000
    traces = pd.read_csv(out / "traces.csv")
    assert set(traces["strategy"]) == {"ehvi", "random"} and set(traces["seed"]) == {0, 1}
    assert traces.groupby(["strategy", "seed"])["evaluation"].max().eq(6).all()
    assert traces["noise"].all()
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and summary["seeds"].eq(2).all()
    md = (out / "summary.md").read_text()
    assert "SYNTHETIC" in md
    # both yardsticks: the judging one (reference beyond the true front's nadir) and the old all-rows one
    assert {"hv_ratio", "hv_ratio_all_rows_ref"} <= set(traces)
    for col in ("hv_ratio_median", "hv_ratio_at_12_median", "hv_ratio_at_25_median", "evals_to_95_median",
                "hv_ratio_all_rows_ref_median", "hv_ratio_all_rows_ref_at_25_median", "evals_to_95_all_rows_ref_median"):
        assert summary[col].notna().all(), col
    assert "HV ratio at 6 (old ref.)" in md and "evals to 95% (old ref.)" in md and "Target: median of at least 10" in md
    settings = yaml.safe_load((out / "settings.json").read_text())
    refs = settings["reference_points_log_min"]["synthetic-test"]
    assert len(refs["front"]) == len(refs["all_rows"]) == 2
    if shutil.which("latexmk"):
        assert pdf.stat().st_size > 10000
        tex = (out / "latex" / "optimizer-benchmark.tex").read_text()
        assert "SYNTHETIC" in tex and "The target, checked" in tex
        assert "old ref." in tex and "beyond the true front's nadir" in tex
    else:
        assert "PDF not built" in proc.stdout


def _snakemake_workdir(tmp_path: Path, table: Path) -> Path:
    config = load_test_config("tiny.yaml")
    config["optimizer_benchmark"] = {"tables": [str(table)], "strategies": ["random"], "seeds": 2, "budget": 6,
                                     "batch_size": 2, "initial_design": 3, "out": "ob", "pdf": "ob/report.pdf"}
    write_config(tmp_path, config)
    return tmp_path


def test_snakemake_target(synth_dir, tmp_path):
    """A tiny real run of the target where latexmk is present (CI), else a dry run (the target builds the PDF)."""
    work = _snakemake_workdir(tmp_path / "work", synth_dir)
    if not shutil.which("latexmk"):
        dry = run_snakemake(work, "-n", "optimizer_benchmark")
        assert "optimizer_benchmark" in dry.stdout
        assert "rule benchmark:" not in dry.stdout  # no vLLM benchmark is planned
        pytest.skip("latexmk missing: dry run only")
    proc = run_snakemake(work, "--cores", "1", "optimizer_benchmark", timeout=600)
    assert "rule benchmark:" not in proc.stdout + proc.stderr
    assert (work / "ob" / "report.pdf").stat().st_size > 10000
    assert len(pd.read_csv(work / "ob" / "traces.csv")) == 12
    for kind in ("evaluations", "energy"):
        assert (work / "ob" / "figures" / f"hv_vs_{kind}_synthetic-test.png").is_file()
    settings = yaml.safe_load((work / "ob" / "settings.json").read_text())
    assert settings["strategies_run"] == ["random"] and settings["budget"] == 6
    log = (work / "logs" / "optimizer_benchmark.log").read_text()
    assert "[2/2] random seed" in log and "Target check" in log


def _gp_sampler_problem() -> str | None:
    from vllm_mobo.search.optimizer.optuna_gp import require_gp_sampler

    try:
        require_gp_sampler()
    except ImportError as err:
        return str(err)
    return None


def test_optuna_gp_proposes_distinct_unevaluated_valid_configurations_deterministically():
    if _gp_sampler_problem():
        pytest.skip(_gp_sampler_problem())
    from test_strategies import fixed_observations, observe, propose, setup

    _, valid = setup()
    crash = next(c for c in valid if c["tensor_parallel_size"] == 2 and not c["enable_chunked_prefill"]
                 and c["max_num_batched_tokens"] == 4096)  # the planted failure of test_strategies.outcome
    obs = [o for o in fixed_observations(8) if o.name != candidate_name(crash)] + [observe(candidate_name(crash), crash)]
    assert not obs[-1].ok
    first = propose("optuna-gp", obs, seed=3, batch_size=2)
    again = propose("optuna-gp", obs, seed=3, batch_size=2)
    names = [c["name"] for c in first["candidates"]]
    assert names == [c["name"] for c in again["candidates"]]
    assert len(set(names)) == 2 and not set(names) & {o.name for o in obs}
    assert set(names) <= {candidate_name(c) for c in valid}
    assert "failures as a constraint" in first["reason"]  # the failure was told as a violated constraint


def test_optuna_gp_without_a_fitting_optuna_is_refused_and_skipped(monkeypatch):
    import optuna

    monkeypatch.setattr(optuna, "__version__", "4.0.0")
    assert "needs Optuna >= 4.5" in _gp_sampler_problem()
    assert compare.strategy_problem("optuna-gp").startswith("unavailable: optimizer.strategy 'optuna-gp' needs")
    run, skipped = compare.split_strategies(["random", "optuna-gp"])
    assert run == ["random"] and "needs Optuna >= 4.5" in skipped["optuna-gp"]


def test_a_known_noise_reaches_the_replayed_search(planted):
    """optimizer.noise set in the benchmark's settings reaches the replayed qlognehvi search (the replay's pipeline
    config carries the benchmark mode that planning reads beside the noise)."""
    settings = compare.Settings(budget=8, batch_size=2, initial_design=2,
                                optimizer={"noise": {o["metric"]: 0.05 for o in planted.objectives}})
    trace = compare.run_search(planted, "qlognehvi", 0, settings)
    assert (trace["iteration"] > 0).any() and trace["status"].notna().all()  # model-based picks were made
