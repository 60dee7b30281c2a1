"""The selectable optimiser strategies: validity, determinism and budget of every strategy; cost cooling; the
feasibility model; ParEGO's scalarisation; the stop rule; the config's strategy names. Real code, small spaces."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from conftest import load_test_config
from vllm_mobo.config import ConfigError, validate_config
from vllm_mobo.records import VLLM_DEFAULT, candidate_name
from vllm_mobo.search.optimizer.ehvi_energy import CostModel, cooling_alpha, cost_cooled
from vllm_mobo.search.optimizer.observations import Observation, snap_to_space, to_observations
from vllm_mobo.search.optimizer.parego import augmented_chebyshev, normalise
from vllm_mobo.search.optimizer.pareto import hypervolume, pareto_mask
from vllm_mobo.search.optimizer.propose import propose_batch
from vllm_mobo.search.optimizer.strategies import STRATEGIES
from vllm_mobo.search.optimizer.surrogate import FeasibilityModel
from vllm_mobo.search.plan import plan_iteration
from vllm_mobo.search.space import Platform, SearchSpace

SPACE = {
    "block_size": [16, 24, 32],  # 24 is invalid on CUDA (not a multiple of 16)
    "max_num_seqs": [64, 128, 256],
    "tensor_parallel_size": [1, 2],
    "enable_chunked_prefill": [False, True],
    "max_num_batched_tokens": [4096, 8192],
}
PLATFORM = Platform("cuda", 2, 4096)
DIRECTIONS = ["maximize", "minimize"]
ALL = list(STRATEGIES)
#: What vLLM resolves for its default configuration: max_num_seqs 1024 is outside the searched values.
DEFAULT_RESOLVED = {"block_size": 16, "max_num_seqs": 1024, "tensor_parallel_size": 1,
                    "enable_chunked_prefill": True, "max_num_batched_tokens": 8192}


def outcome(config: dict) -> tuple[tuple[float, float] | None, float]:
    """Synthetic (throughput, J/token) or None for the planted crash (TP=2 without chunked prefill at 4096 batched
    tokens), and the evaluation's energy cost (doubles with TP=2)."""
    seqs, tp, chunk = config["max_num_seqs"], config["tensor_parallel_size"], config["enable_chunked_prefill"]
    mbt, bs = config["max_num_batched_tokens"], config["block_size"]
    cost = 1000.0 * tp * (1 + seqs / 512)
    if tp == 2 and not chunk and mbt == 4096:
        return None, cost
    thr = 100 * (seqs / 64) ** 0.5 * (1.7 if tp == 2 else 1) * (1.1 if chunk else 1) * (mbt / 4096) ** 0.1
    thr *= 1.0 if bs == 16 else 0.95
    return (thr, 500 * tp / thr * (0.9 if chunk else 1)), cost


def observe(name: str, config: dict) -> Observation:
    merged = {**DEFAULT_RESOLVED, **config} if name == VLLM_DEFAULT else config
    y, cost = outcome(merged)
    return Observation(name, config, y is not None, y, DEFAULT_RESOLVED if name == VLLM_DEFAULT else None,
                       cost_j=cost if y is not None else None)


def setup():
    space = SearchSpace(SPACE)
    valid, skipped = space.split_valid(PLATFORM)
    assert skipped and valid  # both kinds exist, or "never invalid" would prove nothing
    return space, valid


def search(strategy: str, seed: int = 0, budget: int = 10, batch: int = 3, initial: int = 4):
    space, valid = setup()
    observations: list[Observation] = []
    batches = []
    for it in range(50):
        p = propose_batch(space, valid, observations, DIRECTIONS, iteration=it, initial_design=initial,
                          include_vllm_default=True, batch_size=batch, budget=budget, seed=seed, strategy=strategy)
        if p["stop"]:
            break
        batches.append(p["candidates"])
        observations += [observe(c["name"], c["config"]) for c in p["candidates"]]
    return space, valid, observations, batches


def fixed_observations(n: int = 10, seed: int = 123) -> list[Observation]:
    _, valid = setup()
    idx = np.random.default_rng(seed).choice(len(valid), n, replace=False)
    return [observe(candidate_name(valid[i]), valid[i]) for i in idx]


def propose(strategy: str, observations: list[Observation], seed: int = 0, iteration: int = 3, **kw) -> dict:
    space, valid = setup()
    args = dict(initial_design=len(observations), include_vllm_default=False, batch_size=3, budget=40, seed=seed)
    args.update(kw)
    return propose_batch(space, valid, observations, DIRECTIONS, iteration=iteration, strategy=strategy, **args)


@pytest.mark.parametrize("strategy", ALL)
def test_every_strategy_proposes_valid_unevaluated_distinct_configurations_within_budget(strategy):
    space, valid, observations, batches = search(strategy)
    valid_names = {candidate_name(c) for c in valid}
    names = [o.name for o in observations]
    assert len(names) == 10, "the budget is spent exactly"
    assert len(set(names)) == len(names), "a configuration was proposed twice"
    assert names[0] == VLLM_DEFAULT and set(names[1:]) <= valid_names, "an invalid configuration was proposed"
    assert [len(b) for b in batches] == [5, 3, 2], "batch_size and budget respected"
    assert all(candidate_name(c["config"]) == c["name"] and c["why"] for b in batches for c in b)


@pytest.mark.parametrize("strategy", ALL)
def test_same_seed_and_observations_give_the_same_candidates(strategy):
    obs = fixed_observations()
    first = [c["name"] for c in propose(strategy, obs, seed=0)["candidates"]]
    again = [c["name"] for c in propose(strategy, obs, seed=0)["candidates"]]
    assert first == again and len(first) == 3
    assert not set(first) & {o.name for o in obs}


@pytest.mark.parametrize("strategy", ["parego", "random", "sobol", "nsga2", "optuna"])
def test_randomised_strategies_differ_between_seeds(strategy):
    # 6 observations: Optuna's TPE is still in its 10 random start-up trials (past them, on a space this small, its
    # pick barely depends on the seed)
    obs = fixed_observations(6)
    runs = {tuple(c["name"] for c in propose(strategy, obs, seed=s)["candidates"]) for s in range(3)}
    assert len(runs) > 1


def test_iteration_zero_is_shared_by_all_strategies_and_depends_on_the_seed():
    space, valid = setup()
    kw = dict(iteration=0, initial_design=4, include_vllm_default=True, batch_size=3, budget=13)
    firsts = {s: [c["name"] for c in propose_batch(space, valid, [], DIRECTIONS, seed=0, strategy=s, **kw)["candidates"]]
              for s in ALL}
    assert len({tuple(v) for v in firsts.values()}) == 1
    other = [c["name"] for c in propose_batch(space, valid, [], DIRECTIONS, seed=1, strategy="ehvi", **kw)["candidates"]]
    assert other != firsts["ehvi"]


@pytest.mark.parametrize("strategy", ALL)
def test_the_last_batch_is_cut_to_the_budget_and_a_spent_budget_stops(strategy):
    obs = fixed_observations()
    p = propose(strategy, obs, budget=len(obs) + 2)
    assert len(p["candidates"]) == 2 and not p["stop"]
    p = propose(strategy, obs, budget=len(obs))
    assert p["stop"] and p["candidates"] == [] and "budget" in p["reason"]


def test_unknown_strategy_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed values: " + ", ".join(STRATEGIES)):
        propose("magic", fixed_observations())


def test_bad_strategy_in_the_config_gives_the_schema_error():
    cfg = load_test_config("tiny.yaml")
    cfg["optimizer"]["strategy"] = "bayes"
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    message = str(exc.value)
    allowed = ", ".join(repr(s) for s in STRATEGIES)  # the schema's enum lists every strategy, in the same order
    assert f"optimizer.strategy: 'bayes' is not allowed; allowed values: {allowed}" in message, message
    cfg["optimizer"].update(strategy="parego", parego_rho=-1)
    assert "optimizer.parego_rho" in str(pytest.raises(ConfigError, validate_config, cfg).value)
    ok = validate_config({**cfg, "optimizer": {**cfg["optimizer"], "parego_rho": 0.1}})
    assert ok["optimizer"]["cost_cooling"] is True  # default filled


# --- cost cooling (ehvi-energy) -------------------------------------------------------------------------------

def test_cooling_alpha_decays_from_one_to_zero_over_the_budget():
    alphas = [cooling_alpha(budget=20, n_done=n, n_initial=5) for n in range(5, 21)]
    assert alphas[0] == 1.0 and alphas[-1] == 0.0
    assert all(a > b for a, b in zip(alphas, alphas[1:]))
    assert cooling_alpha(20, 10, 5) == pytest.approx(10 / 15)
    assert cooling_alpha(5, 5, 5) == 0.0  # no budget beyond the initial design


def test_planted_cost_cheap_configuration_wins_early_and_alpha_zero_is_plain_ehvi():
    space, valid = setup()
    obs = fixed_observations(12)
    X = space.encode([o.config for o in obs])
    costs = np.array([1000.0 * o.config["tensor_parallel_size"] for o in obs])  # TP=2 doubles the cost
    assert len(set(costs)) == 2
    model = CostModel(seed=0).fit(X, costs)
    tp1 = {k: v[0] for k, v in SPACE.items()}
    tp2 = {**tp1, "tensor_parallel_size": 2}
    expected = model.expected(space.encode([tp1, tp2]), normalised=False)
    assert expected[1] / expected[0] == pytest.approx(2.0, rel=0.2)
    equal_ehvi = np.array([0.3, 0.3])
    early = cost_cooled(equal_ehvi, expected, cooling_alpha(20, 5, 5))
    assert early[0] > early[1], "the cheap configuration wins while alpha = 1"
    assert np.array_equal(cost_cooled(equal_ehvi, expected, cooling_alpha(20, 20, 5)), equal_ehvi)


def test_ehvi_energy_prefers_cheap_configurations_and_reports_the_ehvi_before_the_division():
    obs = fixed_observations(12)
    plain = propose("ehvi", obs, initial_design=len(obs))
    energy = propose("ehvi-energy", obs, initial_design=len(obs))  # n_done = n_initial: alpha = 1
    assert energy["alpha"] == 1.0 and energy["cost_model"]
    assert energy["relative_ehvi"] == pytest.approx(plain["relative_ehvi"], rel=1e-9)
    assert energy["best_ehvi"] == pytest.approx(plain["best_ehvi"], rel=1e-9)
    cheap = lambda p: sum(c["config"]["tensor_parallel_size"] == 1 for c in p["candidates"])  # noqa: E731
    assert cheap(energy) >= cheap(plain)
    assert energy["candidates"][0]["config"]["tensor_parallel_size"] == 1
    assert all(c["expected_cost_j"] > 0 for c in energy["candidates"])
    flat = propose("ehvi-energy", obs, initial_design=len(obs), cost_cooling=False, iteration=5, budget=30)
    assert flat["alpha"] == 1.0
    # without known costs there is nothing to divide by: the same picks as ehvi
    no_cost = [Observation(o.name, o.config, o.ok, o.objectives) for o in obs]
    assert [c["name"] for c in propose("ehvi-energy", no_cost)["candidates"]] == \
        [c["name"] for c in propose("ehvi", no_cost)["candidates"]]


def test_to_observations_carries_the_evaluation_energy():
    objectives = [{"metric": "output_tokens_per_s"}, {"metric": "joules_per_output_token"}]
    ok = {"candidate": "a", "config": {"max_num_seqs": 64}, "status": "ok", "timing": {"wall_s": 40.0},
          "metrics": {"output_tokens_per_s": 100.0, "joules_per_output_token": 2.0, "energy_j": 500.0, "elapsed_s": 10.0}}
    failed = {"candidate": "b", "config": {"max_num_seqs": 128}, "status": "failed", "timing": {"wall_s": 12.0},
              "metrics": None, "failure": {"kind": "oom", "reason": "x"}}
    a, b = to_observations([ok, failed], objectives)
    assert a.cost_j == pytest.approx(500.0 / 10.0 * 40.0) and a.known_cost
    assert b.cost_j is None and not b.known_cost and not b.ok


# --- feasibility, hypervolume, ParEGO ---------------------------------------------------------------------------

def test_feasibility_model_learns_that_tensor_parallel_2_fails():
    space, valid = setup()
    idx = np.random.default_rng(1).choice(len(valid), 16, replace=False)
    X = space.encode([valid[i] for i in idx])
    ok = np.array([valid[i]["tensor_parallel_size"] == 1 for i in idx])
    assert 0 < ok.sum() < len(ok)
    p = FeasibilityModel(seed=0).fit(X, ok).probability(space.encode(valid))
    tp2 = np.array([c["tensor_parallel_size"] == 2 for c in valid])
    assert p[tp2].max() < 0.5 < p[~tp2].min()


def test_hypervolume_of_hand_computed_two_dimensional_fronts():
    # two boxes [1,3]x[2,3] and [2,3]x[1,3], overlapping in [2,3]x[2,3]: 2 + 2 - 1 = 3; the dominated point adds 0
    pts = np.array([[1.0, 2.0], [2.0, 1.0], [2.5, 2.5]])
    assert pareto_mask(pts).tolist() == [True, True, False]
    assert hypervolume(pts, np.array([3.0, 3.0])) == pytest.approx(3.0)
    assert hypervolume(np.array([[0.0, 0.0]]), np.array([2.0, 0.5])) == pytest.approx(1.0)
    assert hypervolume(np.array([[1.0, 1.0], [3.0, 0.0]]), np.array([2.0, 2.0])) == pytest.approx(1.0)  # outside


def test_parego_augmented_chebyshev_against_hand_computed_values():
    Z = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    w = np.array([0.3, 0.7])
    # max(w z) + 0.05 sum(w z): 0.7 + 0.035, 0.35 + 0.025, 0.3 + 0.015
    assert augmented_chebyshev(Z, w, 0.05) == pytest.approx([0.735, 0.375, 0.315])
    assert augmented_chebyshev(Z, w, 0.0) == pytest.approx([0.7, 0.35, 0.3])
    assert normalise(np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])).tolist() == [[0, 0], [1, 0], [0.5, 0]]


def test_parego_uses_a_new_weight_per_pick():
    p = propose("parego", fixed_observations())
    weights = [tuple(c["weights"]) for c in p["candidates"]]
    assert len(set(weights)) == len(weights)
    assert all(sum(w) == pytest.approx(1.0) and min(w) >= 0 for w in weights)


def test_observations_outside_the_lists_are_snapped_onto_the_space():
    space, _ = setup()
    snapped = snap_to_space(space, [DEFAULT_RESOLVED, {**DEFAULT_RESOLVED, "max_num_seqs": 128}])
    assert snapped[0]["max_num_seqs"] == 256 and snapped[1]["max_num_seqs"] == 128
    assert all(candidate_name(s) in space.names() for s in snapped)


# --- stop rule, Optuna ----------------------------------------------------------------------------------------

def _records(observations: list[Observation]) -> list[dict]:
    out = []
    for o in observations:
        metrics = {"output_tokens_per_s": o.objectives[0], "joules_per_output_token": o.objectives[1],
                   "energy_j": o.cost_j / 4, "elapsed_s": 10.0} if o.ok else None
        out.append({"candidate": o.name, "config": o.config, "status": "ok" if o.ok else "failed",
                    "metrics": metrics, "timing": {"wall_s": 40.0}})
    return out


@pytest.mark.parametrize("strategy, stops", [("qlognehvi", True), ("ehvi", True), ("ehvi-energy", True),
                                             ("sobol", False)])
def test_stop_rule_applies_to_the_ehvi_strategies_only(strategy, stops):
    cfg = copy.deepcopy(load_test_config("tiny.yaml"))
    cfg["search_space"] = SPACE
    cfg["engine_args"] = {}
    cfg["workload"]["max_model_len"] = 4096
    cfg["optimizer"].update(strategy=strategy, initial_design=4, batch_size=3, budget=40, stop_relative_ehvi=10.0,
                            stop_patience=2)
    cfg = validate_config(cfg)
    records = _records(fixed_observations())
    history = [{"relative_ehvi": None}, {"relative_ehvi": 0.01}]
    p = plan_iteration(cfg, 2, records, history, PLATFORM)
    assert p["stop"] is stops
    if stops:
        assert p["candidates"] == [] and p["reason"].startswith("converged")
    else:
        assert p["relative_ehvi"] is None and len(p["candidates"]) == 3
    loose = plan_iteration({**cfg, "optimizer": {**cfg["optimizer"], "stop_relative_ehvi": 1e-12}}, 2, records,
                           history, PLATFORM)
    assert not loose["stop"]


def test_optuna_default_multi_objective_sampler_is_tpe():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert type(study.sampler) is optuna.samplers.TPESampler  # what the optuna strategy's docstring says


def test_optuna_strategy_without_optuna_names_the_extra():
    code = ("import sys; sys.modules['optuna'] = None\n"  # makes `import optuna` fail as if it were not installed
            "from vllm_mobo.search.optimizer.strategies import get_strategy\n"
            "get_strategy('random')\n"
            "try:\n    get_strategy('optuna')\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "vllm-mobo[optuna]" in out and "optimizer.strategy 'optuna'" in out
