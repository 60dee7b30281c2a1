"""The optimiser: exact EHVI, pymoo hypervolume, determinism, failures, and finding a known front."""

from __future__ import annotations

import numpy as np
import pytest

from vllm_mobo.records import candidate_name
from vllm_mobo.search.optimizer.ehvi import ehvi_2d
from vllm_mobo.search.optimizer.observations import Observation
from vllm_mobo.search.optimizer.pareto import hypervolume, pareto_mask
from vllm_mobo.search.optimizer.propose import propose_batch
from vllm_mobo.search.optimizer.surrogate import FeasibilityModel
from vllm_mobo.search.space import Platform, SearchSpace

SPACE = {
    "block_size": [32, 64, 128],
    "max_num_seqs": [64, 128, 256],
    "tensor_parallel_size": [1, 2],
    "pipeline_parallel_size": [1, 2],
    "enable_chunked_prefill": [False, True],
    "enable_prefix_caching": [False, True],
    "max_num_batched_tokens": [4096, 8192, 12288],
}
DIRECTIONS = ["maximize", "minimize"]


def test_hypervolume_of_a_hand_computed_front():
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # staircase against (4, 4): 3x1 + 2x1 + 1x1 = 6
    assert hypervolume(front, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 5.0]]), np.array([4.0, 4.0])) == 0.0
    mask = pareto_mask(np.array([[1, 3], [2, 2], [2, 3], [3, 1], [3, 3]]))
    assert mask.tolist() == [True, True, False, True, False]


def test_ehvi_is_the_improvement_for_a_certain_point():
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    ref = np.array([4.0, 4.0])
    y = np.array([[1.5, 1.5]])
    exact = hypervolume(np.vstack([front, y]), ref) - hypervolume(front, ref)
    assert ehvi_2d(y, np.full((1, 2), 1e-12), front, ref)[0] == pytest.approx(exact, rel=1e-9)
    assert ehvi_2d(np.array([[3.5, 3.5]]), np.full((1, 2), 1e-12), front, ref)[0] == pytest.approx(0.0, abs=1e-12)


def test_ehvi_matches_monte_carlo():
    rng = np.random.default_rng(0)
    front = np.array([[0.2, 0.9], [0.5, 0.5], [0.8, 0.1]])
    ref = np.array([1.0, 1.0])
    mu, sd = np.array([[0.4, 0.4], [0.9, 0.9]]), np.array([[0.2, 0.1], [0.3, 0.3]])
    exact = ehvi_2d(mu, sd, front, ref)
    for k in range(2):
        samples = rng.normal(mu[k], sd[k], size=(20000, 2))
        hv0 = hypervolume(front, ref)
        mc = np.mean([hypervolume(np.vstack([front, s]), ref) - hv0 for s in samples[:4000]])
        assert exact[k] == pytest.approx(mc, rel=0.08, abs=2e-3)


def synthetic_objectives(config: dict) -> tuple[float, float] | None:
    """A cheap stand-in for a benchmark with a known front: throughput grows with batch and parallelism,
    energy per token grows with the GPUs used; TP=2 with PP=2 'crashes'."""
    tp, pp = config["tensor_parallel_size"], config["pipeline_parallel_size"]
    if tp == 2 and pp == 2:
        return None
    seqs, mbt = config["max_num_seqs"], config["max_num_batched_tokens"]
    thr = 1000 * (seqs / 64) ** 0.5 * (mbt / 4096) ** 0.2 * (1.7 * tp if tp > 1 else 1) * (1.8 if pp > 1 else 1)
    thr *= 1.1 if config["enable_prefix_caching"] else 1.0
    thr *= 1.0 if config["block_size"] == 64 else 0.93
    gpus = tp * pp
    joules = 700 * gpus / thr * (0.95 if config["enable_chunked_prefill"] else 1.0)
    return thr, joules


def run_search(seed: int, budget: int = 30, batch: int = 4, strategy: str = "ehvi"):
    space = SearchSpace(SPACE)
    valid, _ = space.split_valid(Platform("cuda", 4, 4096))
    observations: list[Observation] = []
    proposals = []
    it = 0
    while True:
        p = propose_batch(space, valid, observations, DIRECTIONS, iteration=it, initial_design=6,
                          include_vllm_default=False, batch_size=batch, budget=budget, seed=seed, strategy=strategy)
        proposals.append([c["name"] for c in p["candidates"]])
        if p["stop"]:
            break
        for c in p["candidates"]:
            y = synthetic_objectives(c["config"])
            observations.append(Observation(c["name"], c["config"], y is not None, y))
        it += 1
    return space, valid, observations, proposals


def true_front_hv(valid):
    ys = [synthetic_objectives(c) for c in valid]
    Y = np.array([[-np.log(t), np.log(j)] for t, j in (y for y in ys if y)])
    return Y


def hv_ratio(observations, Y_all):
    ref = Y_all.max(axis=0) + 0.1 * (Y_all.max(axis=0) - Y_all.min(axis=0))
    Y = np.array([[-np.log(o.objectives[0]), np.log(o.objectives[1])] for o in observations if o.ok])
    return hypervolume(Y[pareto_mask(Y)], ref) / hypervolume(Y_all[pareto_mask(Y_all)], ref)


def test_same_seed_same_candidates_and_budget_respected():
    _, _, obs_a, prop_a = run_search(seed=3, budget=18)
    _, _, obs_b, prop_b = run_search(seed=3, budget=18)
    assert prop_a == prop_b
    assert len(obs_a) == 18
    names = [o.name for o in obs_a]
    assert len(set(names)) == len(names), "a configuration was proposed twice"
    _, _, _, prop_c = run_search(seed=4, budget=18)
    assert prop_c[0] != prop_a[0]


def test_failed_configurations_are_never_proposed_again():
    _, _, obs, _ = run_search(seed=0, budget=30)
    assert any(not o.ok for o in obs), "the planted crash region was never tried: the test would prove nothing"
    assert len({o.name for o in obs}) == len(obs)


def test_feasibility_model_learns_a_planted_infeasible_region():
    space = SearchSpace(SPACE)
    configs = space.configs()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(configs), 24, replace=False)
    ok = np.array([synthetic_objectives(configs[i]) is not None for i in idx])
    assert 0 < ok.sum() < len(ok)
    model = FeasibilityModel(seed=0).fit(space.encode([configs[i] for i in idx]), ok)
    p = model.probability(space.encode(configs))
    planted = np.array([synthetic_objectives(c) is None for c in configs])
    assert p[planted].mean() < 0.5 < p[~planted].mean()
    assert p[planted].mean() < p[~planted].mean() - 0.3


def test_ehvi_finds_the_known_front_better_than_random():
    space, valid, _, _ = run_search(seed=0, budget=6)
    Y_all = true_front_hv(valid)
    ehvi = [hv_ratio(run_search(seed=s, budget=26)[2], Y_all) for s in range(3)]
    rand = [hv_ratio(run_search(seed=s, budget=26, strategy="random")[2], Y_all) for s in range(3)]
    assert np.median(ehvi) > 0.9, ehvi
    assert np.median(ehvi) > np.median(rand), (ehvi, rand)


def test_initial_design_includes_vllm_default_and_is_spread_out():
    space = SearchSpace(SPACE)
    valid, _ = space.split_valid(Platform("cuda", 4, 4096))
    p = propose_batch(space, valid, [], DIRECTIONS, iteration=0, initial_design=5, include_vllm_default=True,
                      batch_size=4, budget=20, seed=0)
    names = [c["name"] for c in p["candidates"]]
    assert names[0] == "vllm-default" and len(names) == 6
    X = space.encode([c["config"] for c in p["candidates"][1:]])
    d = np.linalg.norm(X[:, None] - X[None], axis=2)[np.triu_indices(5, 1)]
    assert d.min() > 0.9  # maximin in the unit cube: no two design points close together
    assert all(candidate_name(c["config"]) == c["name"] for c in p["candidates"][1:])
