"""The optimiser benchmark's yardstick: the HV ratio with the reference point just beyond the true front's nadir
(and the lenient all-rows one kept beside it), on SYNTHETIC hand-made tables whose true fronts are planted, with 2
and 3 objectives."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_replay import OBJECTIVES, make_record, write_meta

from vllm_mobo.records import candidate_name, observation_row
from vllm_mobo.replay import compare
from vllm_mobo.replay.table import FRONT_MARGIN, ReplayTable
from vllm_mobo.search.space import Platform, SearchSpace

OBJECTIVES_3 = [*OBJECTIVES, {"metric": "ttft_ms_p99", "direction": "minimize"}]
SEQS = [8, 16, 32, 64, 128, 256, 512, 1024]
#: Log-space points (minimisation: -ln tokens/s, ln J/token[, ln p99 TTFT]) by max_num_seqs. The front: F; points
#: dominated by a front point yet beyond the front's nadir in one objective: FAR; one very bad row, BAD, that
#: stretches the all-rows nadir (as a slow TP=2 or tiny-batch configuration does on a real table).
PLANTED_2 = {"F": {8: (-3, -1), 16: (-2, -2), 32: (-1, -3)},
             "FAR": {64: (-2.9, -0.9), 128: (-0.95, -0.95), 256: (-0.9, -2.9)},
             "BAD": {512: (2, 2)}}
PLANTED_3 = {"F": {8: (-3, -1, -2), 16: (-1, -3, -2), 32: (-2, -2, -3)},
             "FAR": {64: (-2.9, -0.9, -1.9), 128: (-0.9, -2.9, -1.9), 256: (-1.9, -1.9, -1.95)},
             "BAD": {512: (2, 2, 2)}}


def _name(seqs: int) -> str:
    return candidate_name({"max_num_seqs": seqs, "tensor_parallel_size": 1})


def write_planted(out: Path, planted: dict, objectives: list[dict]) -> Path:
    """A SYNTHETIC table over max_num_seqs (one device) with the log-space points of ``planted``; 1024 fails."""
    space = {"max_num_seqs": SEQS, "tensor_parallel_size": [1]}
    ss = SearchSpace(space)
    points = {s: y for group in planted.values() for s, y in group.items()}
    rows = []
    for c in ss.split_valid(Platform("cpu", 1, 1024), {})[0]:
        y = points.get(c["max_num_seqs"])
        if y is None:
            r = make_record(candidate_name(c), c, "failed", failure={"kind": "crash", "reason": "SYNTHETIC"})
        else:
            r = make_record(candidate_name(c), c, "ok", math.exp(-y[0]), math.exp(y[1]))
            if len(y) > 2:
                r["metrics"]["ttft_ms_p99"] = math.exp(y[2])
        rows.append(observation_row(r, ss.keys))
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    write_meta(out, space, {"device": "cpu", "num_devices": 1, "max_model_len": 1024}, objectives=objectives)
    return out


def write_three_objective_table(out: Path) -> Path:
    return write_planted(out, PLANTED_3, OBJECTIVES_3)


def box_union(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of the boxes [p, ref] by inclusion-exclusion (independent of pymoo; few points only)."""
    points = [p for p in np.asarray(points, float) if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            total += (-1) ** (k + 1) * float(np.prod(ref - np.max(subset, axis=0)))
    return total


@pytest.fixture(scope="module", params=[2, 3], ids=["2-objectives", "3-objectives"])
def planted(request, tmp_path_factory):
    p, obj = (PLANTED_2, OBJECTIVES) if request.param == 2 else (PLANTED_3, OBJECTIVES_3)
    return ReplayTable.load(write_planted(tmp_path_factory.mktemp("yard") / f"planted-{request.param}", p, obj)), p


def test_the_true_front_is_the_planted_one_and_scores_one(planted):
    table, p = planted
    front = [_name(s) for s in p["F"]]
    assert set(table.true_front()["candidate"]) == set(front)
    F = np.array(list(p["F"].values()), float)
    ref = F.max(axis=0) + FRONT_MARGIN * np.ptp(F, axis=0)
    assert table.front_reference_point() == pytest.approx(ref)
    assert table.true_hypervolume() == pytest.approx(box_union(F, ref))
    assert table.hypervolume_of(front) / table.true_hypervolume() == pytest.approx(1.0)
    everything = table.candidates()
    assert table.hypervolume_of(everything) == pytest.approx(table.true_hypervolume())  # dominated rows add nothing
    for ref_kind in ("front", "all_rows"):  # a front point missing: below 1 with either reference point
        assert table.hypervolume_of(front[:-1], reference=ref_kind) < table.true_hypervolume(reference=ref_kind)


def test_picks_far_from_the_front_score_nothing_under_the_new_reference_and_much_under_the_old(planted):
    table, p = planted
    far = [_name(s) for s in p["FAR"]] + [_name(s) for s in p["BAD"]]
    new = table.hypervolume_of(far) / table.true_hypervolume()
    old = table.hypervolume_of(far, reference="all_rows") / table.true_hypervolume(reference="all_rows")
    assert new == 0.0
    A = np.array([y for g in p.values() for y in g.values()], float)
    old_ref = A.max(axis=0) + 0.1 * np.ptp(A, axis=0)
    F = np.array(list(p["F"].values()), float)
    D = np.array(list(p["FAR"].values()), float)
    assert old == pytest.approx(box_union(D, old_ref) / box_union(F, old_ref))
    assert old > 0.8  # the lenient yardstick: dominated picks nearly "find" the front


def test_a_search_trace_holds_both_yardsticks(planted):
    table, _ = planted
    trace = compare.run_search(table, "random", 0, compare.Settings(budget=20, batch_size=2, initial_design=2,
                                                                    include_vllm_default=False))
    assert len(trace) == len(table.candidates()) == len(SEQS)
    assert {"hv_ratio", "hv_ratio_all_rows_ref", "hypervolume", "hypervolume_all_rows_ref"} <= set(trace)
    assert trace["hv_ratio"].iloc[-1] == pytest.approx(1.0) == trace["hv_ratio_all_rows_ref"].iloc[-1]
    assert trace["hv_ratio"].is_monotonic_increasing and trace["hv_ratio_all_rows_ref"].is_monotonic_increasing


def test_an_unknown_reference_is_refused(planted):
    table, _ = planted
    with pytest.raises(ValueError, match="allowed values front, all_rows"):
        table.hypervolume_of(table.candidates(), reference="nadir")
