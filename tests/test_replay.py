"""The replay backend (vllm_mobo.replay): exact values, failures, partial tables, noise, table_from_run.

Tables here are SYNTHETIC (made-up numbers, labelled so in their meta.yaml) except the one converted from the real
tiny pipeline run of tests/fixtures/run_tiny."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vllm_mobo.records import VLLM_DEFAULT, candidate_name, observation_row
from vllm_mobo.replay.from_run import table_from_run
from vllm_mobo.replay.table import ReplayError, ReplayTable
from vllm_mobo.search.optimizer.observations import to_observations
from vllm_mobo.search.plan import plan_iteration
from vllm_mobo.search.space import Platform, SearchSpace

REPO = Path(__file__).resolve().parents[1]
RUN_TINY = REPO / "tests" / "fixtures" / "run_tiny" / "results" / "tiny"
OBJECTIVES = [{"metric": "output_tokens_per_s", "direction": "maximize"},
              {"metric": "joules_per_output_token", "direction": "minimize"}]
SYNTH_SPACE = {"max_num_seqs": [16, 32, 64, 128], "tensor_parallel_size": [1, 2, 4],
               "enable_prefix_caching": [False, True], "max_num_batched_tokens": [1024, 2048, 4096]}
SYNTH_SD = {"output_tokens_per_s": 0.05, "joules_per_output_token": 0.08}


def make_record(name, config, status, tps=None, jpt=None, wall=60.0, devices=1, failure=None, resolved=None):
    """A metrics.json-like record with SYNTHETIC numbers (schema of runner.run_candidate's output)."""
    r = {"iteration": 0, "candidate": name, "config": config, "status": status, "mode": "offline", "device": "cpu",
         "devices_used": devices, "software": {"vllm": "synthetic"}, "failure": failure,
         "timing": {"wall_s": wall, "engine_init_s": wall / 2}}
    if resolved:
        r["resolved_engine_args"] = resolved
    if status == "ok":
        out = 1000.0
        r["metrics"] = {"output_tokens_per_s": tps, "joules_per_output_token": jpt, "energy_j": jpt * out,
                        "elapsed_s": out / tps, "output_tokens": out, "num_requests": 16}
        r["energy"] = {"sources": [{"source": "cpu", "joules": 0.9 * jpt * out, "provenance": "estimated"},
                                   {"source": "ram", "joules": 0.1 * jpt * out, "provenance": "estimated"}]}
    return r


def write_meta(out: Path, space: dict, platform: dict, **extra) -> None:
    meta = {"name": out.name, "synthetic": True,
            "description": "SYNTHETIC table for tests: made-up numbers, not a measurement", "date": "2026-11-26",
            "hardware": {"cpu_model": "none (synthetic)"}, "software": {"vllm": "synthetic"},
            "workload": {"model": "none (synthetic)"}, "search_space": space, "engine_args": {},
            "platform": platform, "objectives": OBJECTIVES, "measurement": "none: SYNTHETIC numbers",
            "energy_provenance": {"cpu": "synthetic", "ram": "synthetic"}, **extra}
    (out / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def _synth_values(c: dict, rng) -> tuple[float, float]:
    s, tp, pre, mbt = (c["max_num_seqs"], c["tensor_parallel_size"], c["enable_prefix_caching"],
                       c["max_num_batched_tokens"])
    tps = 200 * math.log2(s) * (1.6 if tp == 2 else 1.0) * (1.15 if pre else 1.0) * (1 + 0.05 * math.log2(mbt / 1024))
    jpt = 30.0 / tps * (2.0 if tp == 2 else 1.0) * (1 + 0.12 * math.log2(mbt / 1024))
    return tps * math.exp(rng.normal(0, 0.03)), jpt * math.exp(rng.normal(0, 0.03))


def write_synthetic_table(out: Path, seed: int = 0, repeats: bool = True, own_repeat_zero: bool = False) -> Path:
    """A SYNTHETIC replay table: 72 configurations (48 valid on 2 devices; seqs128 with mbt1024 'fail' with OOM,
    TP 4 is invalid), vLLM's default, and 5 repeats of 12 candidates with lognormal noise of SYNTH_SD."""
    rng = np.random.default_rng(seed)
    space = SearchSpace(SYNTH_SPACE)
    valid, skipped = space.split_valid(Platform("cpu", 2, 1024), {})
    rows = []
    for c in valid:
        name = candidate_name(c)
        if c["max_num_seqs"] == 128 and c["max_num_batched_tokens"] == 1024:
            r = make_record(name, c, "failed", wall=30.0, devices=c["tensor_parallel_size"],
                            failure={"kind": "oom", "reason": "SYNTHETIC out of memory"})
        else:
            r = make_record(name, c, "ok", *_synth_values(c, rng), devices=c["tensor_parallel_size"])
        rows.append(observation_row(r, space.keys))
    resolved = {"max_num_seqs": 256, "tensor_parallel_size": 1, "enable_prefix_caching": True,
                "max_num_batched_tokens": 2048}
    tps, jpt = _synth_values({**resolved, "max_num_seqs": 64}, rng)
    rows.append(observation_row(make_record(VLLM_DEFAULT, {}, "ok", tps, jpt, resolved=resolved), space.keys))
    for c, reason in skipped:
        rows.append({"iteration": 0, "candidate": candidate_name(c), **c, "status": "invalid",
                     "failure_kind": "invalid", "failure_reason": reason, "is_vllm_default": False, "feasible": False})
    table = pd.DataFrame(rows).sort_values("candidate")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False)
    if repeats:
        base = table[table["status"] == "ok"].set_index("candidate", drop=False)
        reps = []
        for name in sorted(base.index)[:12]:
            if own_repeat_zero:
                reps.append({**base.loc[name].to_dict(), "repeat": 0})
            for k in range(1, 6):
                row = {**base.loc[name].to_dict(), "repeat": k}
                row["output_tokens_per_s"] *= math.exp(rng.normal(0, SYNTH_SD["output_tokens_per_s"]))
                row["joules_per_output_token"] *= math.exp(rng.normal(0, SYNTH_SD["joules_per_output_token"]))
                reps.append(row)
        pd.DataFrame(reps).to_csv(out / "repeats.csv", index=False)
    write_meta(out, SYNTH_SPACE, {"device": "cpu", "num_devices": 2, "max_model_len": 1024})
    return out


def write_planted_table(out: Path) -> Path:
    """A SYNTHETIC table with a planted front, in log space (y1 = -ln tokens/s, y2 = ln J/token):
    front P1 (-3, 1), P2 (-2, 0), P3 (-1, -1); dominated D1 (-1.5, 1.5) and vLLM's default D2 (0, 0.5);
    one failure; TP 2 invalid on one device. Reference point: nadir (0, 1.5) + 10% of range (3, 2.5) = (0.3, 1.75)."""
    space = {"max_num_seqs": [16, 32, 64, 128, 256], "tensor_parallel_size": [1, 2]}
    logs = {16: (-3, 1), 32: (-2, 0), 64: (-1, -1), 128: (-1.5, 1.5)}
    rows = []
    ss = SearchSpace(space)
    valid, skipped = ss.split_valid(Platform("cpu", 1, 1024), {})
    for c in valid:
        s = c["max_num_seqs"]
        if s in logs:
            y1, y2 = logs[s]
            r = make_record(candidate_name(c), c, "ok", math.exp(-y1), math.exp(y2))
        else:
            r = make_record(candidate_name(c), c, "failed", wall=20.0, failure={"kind": "crash", "reason": "SYNTHETIC"})
        rows.append(observation_row(r, ss.keys))
    rows.append(observation_row(make_record(VLLM_DEFAULT, {}, "ok", math.exp(0), math.exp(0.5),
                                            resolved={"max_num_seqs": 256, "tensor_parallel_size": 1}), ss.keys))
    for c, reason in skipped:
        rows.append({"candidate": candidate_name(c), **c, "status": "invalid", "failure_kind": "invalid",
                     "failure_reason": reason, "is_vllm_default": False})
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    write_meta(out, space, {"device": "cpu", "num_devices": 1, "max_model_len": 1024})
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> ReplayTable:
    return ReplayTable.load(write_synthetic_table(tmp_path_factory.mktemp("replay") / "synthetic-test"))


def _csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {r["candidate"]: r for r in csv.DictReader(fh)}


def test_replay_returns_exactly_the_tables_values(synth):
    raw = _csv_rows(synth.path / "table.csv")
    numeric = ["output_tokens_per_s", "joules_per_output_token", "energy_j", "elapsed_s", "wall_s", "engine_init_s",
               "energy_cpu_j", "energy_ram_j", "total_tokens_per_s"]
    checked = 0
    for name in synth.candidates():
        rec = synth.record(name, iteration=3)
        assert rec["iteration"] == 3 and rec["candidate"] == name
        row = observation_row(rec, synth.space.keys)
        text = raw[name]
        assert row["status"] == text["status"]
        for col in numeric:
            if text[col] == "":
                assert row[col] is None or (isinstance(row[col], float) and math.isnan(row[col]))
            else:
                assert row[col] == float(text[col]), (name, col)  # bit for bit: the CSV's decimal text
        for col in ("energy_cpu_provenance", "energy_provenance", "failure_kind", "failure_reason"):
            assert str(row[col]) == text[col], (name, col)
        for k in synth.space.keys:
            assert str(row[k]) == text[k]
        if text["status"] == "ok":
            (obs,) = to_observations([rec], OBJECTIVES)
            assert obs.ok and obs.objectives == (float(text["output_tokens_per_s"]), float(text["joules_per_output_token"]))
            checked += 1
    assert checked > 30


def test_vllm_default_is_replayed_with_its_resolved_arguments(synth):
    rec = synth.record(VLLM_DEFAULT, 0)
    assert rec["config"] == {}
    assert rec["resolved_engine_args"] == {"max_num_seqs": 256, "tensor_parallel_size": 1,
                                           "enable_prefix_caching": True, "max_num_batched_tokens": 2048}
    assert VLLM_DEFAULT in synth.candidates()


def test_failed_and_invalid_rows_come_back_as_failures(synth):
    failed = synth.record("seqs128-tp2-prefix0-mbt1024", 1)
    assert failed["status"] == "failed" and failed["failure"] == {"kind": "oom", "reason": "SYNTHETIC out of memory"}
    assert failed["metrics"] is None and failed["devices_used"] == 2
    invalid_name = "seqs16-tp4-prefix0-mbt1024"
    assert invalid_name not in synth.candidates()
    invalid = synth.record(invalid_name, 1)
    assert invalid["status"] == "failed" and invalid["failure"]["kind"] == "invalid"
    assert "exceeds the 2" in invalid["failure"]["reason"]
    assert [o.ok for o in to_observations([failed, invalid], OBJECTIVES)] == [False, False]
    with pytest.raises(ReplayError, match="not a row"):
        synth.record("seqs999-tp1-prefix0-mbt1024", 0)


def test_candidates_are_the_non_invalid_rows(synth):
    cands = synth.candidates()
    assert len(cands) == 48 + 1 and not synth.partial
    assert synth.valid_size() == 48
    assert all(synth.rows.at[n, "status"] in ("ok", "failed") for n in cands)


def test_partial_table_restricts_the_search(tmp_path):
    t = table_from_run(RUN_TINY, tmp_path / "tiny-partial")
    assert t.partial and sorted(t.candidates()) == ["seqs32-prefix1-mbt1024", "seqs64-prefix1-mbt1024", VLLM_DEFAULT]
    config = t.pipeline_config({"strategy": "random", "seed": 0, "budget": 10, "batch_size": 2, "initial_design": 1,
                                "include_vllm_default": True, "stop_relative_ehvi": 0.0, "stop_patience": 2})
    # without the restriction the search would propose configurations nobody measured
    free = plan_iteration(config, 0, [], [], t.platform)
    records, history, proposed = [], [], []
    for it in range(6):
        p = plan_iteration(config, it, records, history, t.platform, set(t.candidates()))
        history.append(p)
        if p["stop"]:
            break
        for c in p["candidates"]:
            proposed.append(c["name"])
            records.append(t.record(c["name"], it))
    assert sorted(proposed) == sorted(t.candidates())
    assert p["stop"] and "every valid configuration" in p["reason"]
    assert free["valid_size"] == 12 and p["valid_size"] == 2


def test_noise_is_seeded_and_has_the_repeats_sd(synth):
    sd = synth.noise_sd()
    for m, true_sd in SYNTH_SD.items():  # 12 candidates x 6 measurements: 60 degrees of freedom
        assert sd[m] == pytest.approx(true_sd, rel=0.35)
    name = "seqs64-tp1-prefix1-mbt2048"
    a = synth.record(name, 0, rng=np.random.default_rng(5), noise=True)
    b = synth.record(name, 0, rng=np.random.default_rng(5), noise=True)
    c = synth.record(name, 0, rng=np.random.default_rng(6), noise=True)
    assert a == b and a["metrics"] != c["metrics"]
    truth = synth.record(name, 0)
    rng = np.random.default_rng(1)
    draws = [synth.record(name, 0, rng=rng, noise=True)["metrics"] for _ in range(3000)]
    for m in SYNTH_SD:
        logs = np.log([d[m] / truth["metrics"][m] for d in draws])
        assert abs(logs.mean()) < 4 * sd[m] / math.sqrt(len(logs))
        assert logs.std() == pytest.approx(sd[m], rel=0.06)
    # the energy moves with J/token, the time with throughput: the evaluation's energy stays consistent
    d = synth.record(name, 0, rng=np.random.default_rng(2), noise=True)
    f = d["metrics"]["joules_per_output_token"] / truth["metrics"]["joules_per_output_token"]
    assert d["metrics"]["energy_j"] == pytest.approx(truth["metrics"]["energy_j"] * f)
    assert sum(s["joules"] for s in d["energy"]["sources"]) == pytest.approx(d["metrics"]["energy_j"])
    with pytest.raises(ValueError, match="rng"):
        synth.record(name, 0, noise=True)


def test_repeat_zero_is_the_tables_own_row(tmp_path):
    implicit = ReplayTable.load(write_synthetic_table(tmp_path / "a", own_repeat_zero=False)).noise_sd()
    explicit = ReplayTable.load(write_synthetic_table(tmp_path / "b", own_repeat_zero=True)).noise_sd()
    assert implicit == pytest.approx(explicit, rel=1e-12)


def test_no_repeats_no_noise(tmp_path):
    t = ReplayTable.load(write_synthetic_table(tmp_path / "norep", repeats=False))
    with pytest.raises(ReplayError, match="no repeats.csv"):
        t.record("seqs64-tp1-prefix1-mbt2048", 0, rng=np.random.default_rng(0), noise=True)


def test_table_from_run_of_the_tiny_fixture(tmp_path):
    t = table_from_run(RUN_TINY, tmp_path / "tiny", meta={"description": "the tiny fixture run"})
    meta = yaml.safe_load((tmp_path / "tiny" / "meta.yaml").read_text())
    assert meta["description"] == "the tiny fixture run" and meta["synthetic"] is False
    assert meta["hardware"]["cpu_model"] == "AMD EPYC" and meta["software"]["vllm"] == "0.32.0"
    assert meta["platform"] == {"device": "cpu", "num_devices": 2, "max_model_len": 1024}
    assert meta["coverage"] == {"valid_configurations": 12, "measured": 2, "partial": True,
                                "source_run": str(RUN_TINY)}
    assert meta["energy_provenance"] == {"cpu": "estimated", "ram": "estimated"}
    obs = pd.read_csv(RUN_TINY / "observations.csv",
                      **({"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}))
    for _, o in obs.iterrows():
        rec = t.record(o["candidate"], 0)
        assert rec["status"] == "ok"
        assert rec["metrics"]["output_tokens_per_s"] == o["output_tokens_per_s"]
        assert rec["metrics"]["joules_per_output_token"] == o["joules_per_output_token"]
        assert rec["timing"]["wall_s"] == o["wall_s"]
    assert t.record(VLLM_DEFAULT, 0)["resolved_engine_args"]["max_num_seqs"] == 256
    assert t.true_front()["candidate"].tolist() == ["seqs64-prefix1-mbt1024"]
    assert t.hardware_label() == "2-core AMD EPYC, no GPU"
    with pytest.raises(ReplayError, match="config"):
        shutil.copytree(RUN_TINY, tmp_path / "elsewhere" / "results" / "tiny")
        table_from_run(tmp_path / "elsewhere" / "results" / "tiny", tmp_path / "x")


def test_broken_tables_are_refused_clearly(tmp_path, synth):
    with pytest.raises(ReplayError, match="no table.csv"):
        ReplayTable.load(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(synth.path, bad)
    meta = yaml.safe_load((bad / "meta.yaml").read_text())
    del meta["platform"]
    (bad / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ReplayError, match="platform"):
        ReplayTable.load(bad)


def test_table_from_a_two_gpu_run_counts_the_platforms_gpus(tmp_path):
    """The committed two-H200 online run, restored into a results folder: its first record (vLLM's default) used
    one GPU, the platform searched had two, and the table's hardware says two."""
    import subprocess
    import sys

    src = REPO / "docs" / "gpu" / "2026-11-30-2xh200-online-capacity-search"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "device" / "restore_search.py"),
                    str(src / "config.yaml"), str(tmp_path / "w"), str(src), "--resume"], check=True,
                   capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    run = yaml.safe_load((src / "config.yaml").read_text())["run"]
    table_from_run(tmp_path / "w" / "results" / run, tmp_path / "table", config=src / "config.yaml")
    meta = yaml.safe_load((tmp_path / "table" / "meta.yaml").read_text())
    assert meta["platform"]["num_devices"] == 2
    assert meta["hardware"]["gpu_count"] == 2 and meta["hardware"]["gpu_model"] == "NVIDIA H200"
