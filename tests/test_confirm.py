"""The confirmation stage (vllm_mobo.confirm): the statistics against textbook values, the choice and order of
what is measured again, the same-machine rule on real files, and the stage end to end on the real CPU engine
through Snakemake, including a confirmation resumed after measurements were lost."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_test_config, run_snakemake, write_config

from vllm_mobo.confirm import measure, plan, stats
from vllm_mobo.confirm.summary import comparison_sentences, confirmed_front, default_comparison, means_table
from vllm_mobo.io import write_json_atomic
from vllm_mobo.records import VLLM_DEFAULT, load_records

ROOT = Path(__file__).resolve().parents[1]
RUN_TINY = ROOT / "tests" / "fixtures" / "run_tiny" / "results" / "tiny"
OBJECTIVES = [{"metric": "output_tokens_per_s", "direction": "maximize"},
              {"metric": "joules_per_output_token", "direction": "minimize"}]

# --------------------------------------------------------------------------------------------- statistics


def test_describe_gives_the_student_t_interval():
    d = stats.describe([1.0, 2.0, 3.0])
    t_975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom (tables)
    assert (d["n"], d["mean"], d["sd"]) == (3, 2.0, 1.0)
    assert d["ci_low"] == pytest.approx(2.0 - t_975_2 / math.sqrt(3))
    assert d["ci_high"] == pytest.approx(2.0 + t_975_2 / math.sqrt(3))
    assert d["rel_sd"] == pytest.approx(0.5)
    one = stats.describe([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["sd"]) and math.isnan(one["ci_low"])


def test_difference_verdicts_follow_the_interval_and_the_direction():
    base = [100.0, 101.0, 99.0]
    higher = stats.difference([110.0, 111.0, 109.0], base, "maximize")
    assert higher["verdict"] == "better" and higher["difference_pct"] == pytest.approx(10.0)
    assert 0 < higher["ci_low"] < 10 < higher["ci_high"]
    assert stats.difference([110.0, 111.0, 109.0], base, "minimize")["verdict"] == "worse"
    noisy = stats.difference([100.5, 95.0, 106.0], base, "maximize")
    assert noisy["verdict"] == stats.NOT_DISTINGUISHABLE and noisy["ci_low"] < 0 < noisy["ci_high"]
    few = stats.difference([120.0], base, "maximize")
    assert few["verdict"].startswith(stats.NOT_DISTINGUISHABLE) and "fewer than 2" in few["verdict"]
    # Welch's interval, as a textbook formula: difference +- t(df) * se with Welch-Satterthwaite df
    a, b = np.array([110.0, 111.0, 109.0]), np.array(base)
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    from scipy.stats import t

    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = t.ppf(0.975, df) * math.sqrt(va + vb)
    assert higher["ci_low"] == pytest.approx(10.0 - half) and higher["ci_high"] == pytest.approx(10.0 + half)


def measurements(rows: list[tuple[str, float, float]], roles=None) -> pd.DataFrame:
    """A measurements table as the stage writes it; a configuration's k-th row is its repeat k."""
    out, seen = [], {}
    for c, x, y in rows:
        out.append({"candidate": c, "repeat": seen.get(c, 0), "roles": (roles or {}).get(c, "front"), "feasible": True,
                    "output_tokens_per_s": x, "joules_per_output_token": y})
        seen[c] = seen.get(c, 0) + 1
    return pd.DataFrame(out)


def test_front_comes_from_the_means_and_noise_pools_relative_sd():
    meas = measurements([("a", 100, 1.0), ("b", 50, 2.0), (VLLM_DEFAULT, 90, 0.5),
                         ("a", 110, 1.2), ("b", 52, 2.2), (VLLM_DEFAULT, 92, 0.55)])
    summary = stats.summary_table(meas, [o["metric"] for o in OBJECTIVES])
    means = means_table(meas, summary, OBJECTIVES)
    assert means.set_index("candidate").loc["a", "output_tokens_per_s"] == pytest.approx(105.0)
    front = confirmed_front(means, OBJECTIVES)
    assert set(front["candidate"]) == {"a", VLLM_DEFAULT}  # b is dominated by the default on both means
    noise = stats.noise_level(summary, ["output_tokens_per_s"])["output_tokens_per_s"]
    rel = [np.std(v, ddof=1) / np.mean(v) for v in ([100, 110], [50, 52], [90, 92])]
    assert noise["relative_sd"] == pytest.approx(math.sqrt(np.mean(np.square(rel))))
    comp = default_comparison(meas, OBJECTIVES)
    assert set(comp["candidate"]) == {"a", "b"} and len(comp) == 4


def test_a_configuration_with_an_unusable_repeat_is_not_on_the_confirmed_front():
    meas = measurements([("a", 200, 0.1), (VLLM_DEFAULT, 90, 0.5), ("a", 210, 0.1), (VLLM_DEFAULT, 91, 0.5)])
    meas.loc[2, "feasible"] = False  # e.g. missed its SLOs once
    summary = stats.summary_table(meas, [o["metric"] for o in OBJECTIVES])
    means = means_table(meas, summary, OBJECTIVES)
    assert list(confirmed_front(means, OBJECTIVES)["candidate"]) == [VLLM_DEFAULT]
    row = summary[(summary["candidate"] == "a") & (summary["metric"] == "output_tokens_per_s")].iloc[0]
    assert (row["repeats"], row["n"]) == (2, 1)


def test_a_front_of_vllms_default_alone_is_reported_with_its_interval_not_as_unmeasured():
    meas = measurements([(VLLM_DEFAULT, 10541.1, 0.0584), (VLLM_DEFAULT, 11351.1, 0.0566),
                         (VLLM_DEFAULT, 11261.8, 0.0570)], roles={VLLM_DEFAULT: "vllm default; knee"})
    summary = stats.summary_table(meas, [o["metric"] for o in OBJECTIVES])
    comparison = default_comparison(meas, OBJECTIVES)
    assert comparison.empty
    text = comparison_sentences(summary, comparison, OBJECTIVES, repeats=3)
    assert text[0].startswith("vLLM's default configuration, measured 3 times") and "95% CI" in text[0]
    assert "the search's front was vLLM's default alone" in text[1] and "no usable" not in " ".join(text)
    no_default = measurements([("a", 100, 1.0), ("a", 110, 1.1)])
    assert "no usable confirmation measurement" in comparison_sentences(
        stats.summary_table(no_default, ["output_tokens_per_s"]), default_comparison(no_default, OBJECTIVES),
        OBJECTIVES, repeats=2)[0]


# ------------------------------------------------------------------------------------- what, in which order


def test_plan_takes_the_knee_first_caps_the_front_and_adds_the_default():
    pareto = pd.read_csv(RUN_TINY / "pareto.csv")
    records = load_records(sorted(RUN_TINY.glob("iter_*/*/metrics.json")))
    chosen = plan.select(pareto, records, OBJECTIVES, max_configs=1)
    assert [c["name"] for c in chosen][-1] == VLLM_DEFAULT and chosen[-1]["config"] == {}
    assert len(chosen) == 2 and "knee" in chosen[0]["roles"]
    everything = plan.select(pareto, records, OBJECTIVES, max_configs=50, include_vllm_default=False)
    assert {c["name"] for c in everything} == set(pareto["candidate"]) - {VLLM_DEFAULT}
    order = [(r, c["name"]) for r, c in plan.schedule(chosen, 3)]
    assert order == [(r, c["name"]) for r in range(3) for c in chosen]  # A B A B A B


def write_measurement(path: Path, hostname: str, uuids: list[str]) -> None:
    write_json_atomic(path, {"candidate": path.parent.name, "status": "ok", "iteration": 0,
                             "hardware": {"hostname": hostname, "gpus": [{"uuid": u} for u in uuids]}})


def test_measurements_from_another_machine_are_set_aside(tmp_path):
    here = {"hostname": "node-a", "gpu_uuids": ["GPU-1", "GPU-2"]}
    write_measurement(measure.measurement_path(tmp_path, 0, "x"), "node-a", ["GPU-1"])
    lines = []
    assert measure.set_aside_foreign(tmp_path, here, lines.append) is None and not lines
    write_measurement(measure.measurement_path(tmp_path, 1, "x"), "node-a", ["GPU-7"])  # same host, other GPU
    dest = measure.set_aside_foreign(tmp_path, here, lines.append)
    assert dest is not None and not list(tmp_path.glob("rep_*"))
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("metrics.json")) == \
        ["rep_0/x/metrics.json", "rep_1/x/metrics.json"]
    assert "GPU-7" in lines[0] and "measuring everything again" in lines[0]


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.engine
def test_confirmation_end_to_end_and_resumed(tmp_path):
    cfg = load_test_config("tiny.yaml")
    # vLLM's default left out of the search, so that the front holds a searched configuration whatever the
    # measurements say (with it in, it may dominate everything on 2 cores); the confirmation adds it back
    cfg["optimizer"].update(budget=1, include_vllm_default=False)
    cfg["confirm"] = {"enabled": True, "repeats": 2, "max_configs": 1, "include_vllm_default": True}
    write_config(tmp_path, cfg)
    run_snakemake(tmp_path, "--cores", "2", timeout=1800)
    res = tmp_path / "results" / "tiny"
    plan_ = json.loads((res / "confirm" / "plan.json").read_text())
    names = [c["name"] for c in plan_["configs"]]
    assert names[-1] == VLLM_DEFAULT and len(names) == 2
    meas = pd.read_csv(res / "confirm" / "measurements.csv")
    assert list(zip(meas["repeat"], meas["candidate"])) == [(r, n) for r in range(2) for n in names]
    assert (meas["status"] == "ok").all() and meas["hostname"].nunique() == 1
    # the measuring order in the log is the interleaved one
    log = (tmp_path / "logs" / "tiny" / "confirm.log").read_text()
    steps = re.findall(r"\[confirm \d+/4\] repeat (\d)/2 of (\S+):", log)
    assert steps == [(str(r + 1), n) for r in range(2) for n in names]
    summary = pd.read_csv(res / "confirm" / "summary.csv")
    assert set(summary["candidate"]) == set(names) and (summary["n"] == 2).all()
    for _, row in summary.iterrows():
        values = meas[meas["candidate"] == row["candidate"]][row["metric"]]
        assert row["mean"] == pytest.approx(values.mean()) and row["ci_low"] <= row["mean"] <= row["ci_high"]
    comp = pd.read_csv(res / "confirm" / "default_comparison.csv")
    assert len(comp) == 2 and comp["verdict"].str.match(r"better|worse|not distinguishable").all()
    noise = json.loads((res / "confirm" / "noise.json").read_text())
    assert set(noise["objectives"]) == {o["metric"] for o in OBJECTIVES}
    assert noise["objectives"]["output_tokens_per_s"]["relative_sd"] > 0
    html = (res / "analysis" / "analysis.html").read_text()
    assert "Confirmation: repeats and confidence intervals" in html and "against vLLM's default" in html
    assert (res / "figures" / "confirmed_front.png").stat().st_size > 10_000
    assert not (res / "figures" / "latency.png").exists()  # offline run: no latency page
    # the exported knee is the confirmed front's (vLLM's default too, though this search left it out)
    from vllm_mobo.report.export import confirmed_knee

    knee = confirmed_knee(pd.read_csv(res / "confirm" / "front.csv"), OBJECTIVES)
    export = (res / "export" / "knee_vllm_serve.txt").read_text()
    assert knee in names and export.startswith(f"# knee of the confirmed front of run tiny: {knee}\n"), export[:300]
    import shutil
    import subprocess

    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(tmp_path / "report" / "tiny.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        assert "Confirmation: repeats and confidence intervals" in text
        assert "95% CI" in text and "Confirmed against vLLM" in text

    # resumed: one measurement lost (as if the job had been killed before it): only that one is measured again
    lost = res / "confirm" / "rep_1" / names[0] / "metrics.json"
    kept = {p: p.stat().st_mtime_ns for p in (res / "confirm").glob("rep_*/*/metrics.json") if p != lost}
    lost.unlink()
    (res / "confirm" / "measurements.csv").unlink()
    run_snakemake(tmp_path, "--cores", "2", timeout=1200)
    assert lost.exists() and {p: p.stat().st_mtime_ns for p in kept} == kept
    log = (tmp_path / "logs" / "tiny" / "confirm.log").read_text()
    assert log.count("measured earlier, kept") == 3


def test_the_search_comparison_with_the_default_names_a_change_of_machine():
    from vllm_mobo.report.baseline import default_text

    obs, pareto = pd.read_csv(RUN_TINY / "observations.csv"), pd.read_csv(RUN_TINY / "pareto.csv")
    obs["hostname"], obs["gpu_uuids"] = "node-a", "GPU-1"
    assert not any("Caution" in t for t in default_text(obs, pareto, OBJECTIVES))
    other = next(n for n in pareto["candidate"] if n != VLLM_DEFAULT)
    obs.loc[obs["candidate"] == other, "gpu_uuids"] = "GPU-2"
    caution = [t for t in default_text(obs, pareto, OBJECTIVES) if t.startswith("Caution")]
    assert caution and other in caution[0] and "different hardware" in caution[0]


def test_paired_rounds_cancel_a_drift_that_welch_cannot_see_through():
    # measured shape on an H200 (docs/gpu/2026-11-30-h200-offline-gpuspace-confirm): both configurations slow
    # down ~10% over the stage, the candidate ~5% ahead in every round
    candidate, default = [12595.0, 12400.0, 11190.0], [12000.0, 11700.0, 10750.0]
    welch = stats.difference(candidate, default, "maximize")
    paired = stats.difference(candidate, default, "maximize", paired=True)
    assert welch["method"] == "Welch t" and welch["verdict"] == stats.NOT_DISTINGUISHABLE
    d = np.subtract(candidate, default)
    from scipy.stats import t

    half = t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert paired["method"] == "paired t (by round)" and paired["verdict"] == "better"
    assert paired["ci_low"] == pytest.approx(d.mean() - half) and paired["ci_high"] == pytest.approx(d.mean() + half)
    meas = pd.DataFrame({"candidate": ["a", VLLM_DEFAULT] * 3, "repeat": [0, 0, 1, 1, 2, 2], "roles": "front",
                         "feasible": True, "output_tokens_per_s": [v for pair in zip(candidate, default) for v in pair],
                         "joules_per_output_token": [0.05, 0.055] * 3})
    comp = default_comparison(meas, OBJECTIVES).set_index("metric")
    assert comp.loc["output_tokens_per_s", "method"] == "paired t (by round)"
    assert comp.loc["output_tokens_per_s", "ci_low"] == pytest.approx(paired["ci_low"])
    drift = stats.drift(meas, ["output_tokens_per_s"])["output_tokens_per_s"]
    expected = np.mean([100 * (candidate[-1] - candidate[0]) / np.mean(candidate),
                        100 * (default[-1] - default[0]) / np.mean(default)])
    assert drift["first_to_last_pct"] == pytest.approx(expected) and drift["configurations"] == 2
