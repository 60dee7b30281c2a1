"""The run record: every committed metrics.json (schema version 1, GPU runs, fixtures, replay-table records) loads
through the one reader, and feasibility has one definition."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import REPO
from vllm_mobo.records import (
    METRIC_COLUMNS,
    Record,
    candidate_name,
    load_record,
    observation_row,
    provenance_summary,
)


def committed_metrics_files() -> list[Path]:
    found = []
    for root in ("docs/gpu", "tests/fixtures", "benchmarks/replay/tables"):
        for path in sorted((REPO / root).rglob("*.json")):
            if path.name in ("metrics.json",) or "/metrics/" in path.as_posix() or "/records/" in path.as_posix() \
                    or "/repeats/" in path.as_posix():
                found.append(path)
    return found


FILES = committed_metrics_files()


def test_there_are_committed_records():
    assert len(FILES) > 200, len(FILES)
    assert any("docs/gpu" in p.as_posix() for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_committed_record_loads(path):
    raw = json.loads(path.read_text())
    r = load_record(path)
    assert r.schema_version == raw.get("schema_version", 1)
    assert r.candidate == raw["candidate"] and r.status == raw["status"]
    assert r.candidate == candidate_name(r.config)
    if r.ok:
        assert r.metric("output_tokens_per_s") > 0
        assert r.energy is not None and r.energy.sources
        assert r.energy.total_j == pytest.approx(sum(s.joules for s in r.energy.sources), rel=1e-6)
        assert {s.provenance for s in r.energy.sources} <= {"measured", "estimated"}
    else:
        assert r.failure is not None and r.failure.kind
    row = observation_row(r, list(r.config))
    assert set(METRIC_COLUMNS) <= set(row)
    assert row["feasible"] == r.feasible


def _record(**changes) -> Record:
    base = {"run": "t", "iteration": 0, "candidate": "seqs8", "config": {"max_num_seqs": 8}, "status": "ok",
            "metrics": {"output_tokens_per_s": 10.0, "joules_per_output_token": 0.5}}
    return Record.from_dict({**base, **changes})


def test_feasible_is_ok_and_within_the_slos_when_they_are_constraints():
    assert _record().feasible
    assert not _record(status="failed", metrics=None, failure={"kind": "oom", "reason": "x"}).feasible
    missed = {"output_tokens_per_s": 1.0, "slo_met": False}
    assert not _record(metrics={**missed, "slo_as_constraint": True}).feasible
    assert _record(metrics={**missed, "slo_as_constraint": False}).feasible


def test_metric_of_an_absent_value_is_nan():
    assert math.isnan(_record().metric("ttft_ms_p99"))


def test_provenance_summary():
    assert provenance_summary(["measured", "measured"]) == "measured"
    assert provenance_summary(["estimated"]) == "estimated"
    assert provenance_summary(["measured", "estimated"]) == "partly estimated"
    assert provenance_summary([]) == "unavailable"
