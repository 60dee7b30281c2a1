"""The BoTorch strategy ``qlognehvi``: its EHVI agrees with the exact 2-D EHVI on one posterior; it proposes distinct
unevaluated valid configurations, deterministically, for 2-4 objectives; it avoids a region that failed and a region
that missed its SLOs once learnt; the measured noise reaches the GPs. Real BoTorch, small spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from botorch.acquisition.multi_objective.analytic import ExpectedHypervolumeImprovement
from botorch.utils.multi_objective.box_decompositions.non_dominated import NondominatedPartitioning
from scipy.stats import kendalltau

from vllm_mobo.config import ConfigError, validate_config
from vllm_mobo.records import candidate_name
from vllm_mobo.search.optimizer.ehvi import ehvi_2d
from vllm_mobo.search.optimizer.gp_models import fit_outcomes, fit_outcome_gp, noise_variance, tensor
from vllm_mobo.search.optimizer.noise import log_noise_variances
from vllm_mobo.search.optimizer.observations import Observation, reference_point, to_observations
from vllm_mobo.search.optimizer.pareto import pareto_mask
from vllm_mobo.search.optimizer.propose import propose_batch
from vllm_mobo.search.plan import noise_option
from vllm_mobo.search.space import Platform, SearchSpace
from conftest import REPO, load_test_config

SPACE = {
    "max_num_seqs": [32, 64, 128, 256, 512],
    "max_num_batched_tokens": [2048, 4096, 8192],
    "enable_chunked_prefill": [False, True],
    "performance_mode": ["balanced", "interactivity", "throughput"],  # one-hot: the mixed kernel
}
PLATFORM = Platform("cuda", 1, 1024)


def setup():
    space = SearchSpace(SPACE)
    valid, _ = space.split_valid(PLATFORM)
    return space, valid


def synthetic(config: dict, k: int = 2) -> tuple[float, ...]:
    """k positive objectives that trade off: throughput (max), J/token, p99 TTFT and memory (min)."""
    s, b = np.log2(config["max_num_seqs"] / 32) / 4, np.log2(config["max_num_batched_tokens"] / 2048) / 2
    mode = {"balanced": 1.0, "interactivity": 0.9, "throughput": 1.15}[config["performance_mode"]]
    thr = 100 * (1 + 2 * s) * (1 + 0.3 * b) * mode * (1.05 if config["enable_chunked_prefill"] else 1)
    joules = 2.0 * (1 + s ** 2) / (1 + 0.3 * b) * (1.1 if config["performance_mode"] == "throughput" else 1)
    ttft = 50 * (1 + 3 * s * b + 0.5 * s)
    memory = 10 * (1 + b) * (1.2 if config["performance_mode"] == "balanced" else 1)
    return (thr, joules, ttft, memory)[:k]


def directions(k: int) -> list[str]:
    return ["maximize", "minimize", "minimize", "minimize"][:k]


def observations(valid, n: int, seed: int, k: int = 2, fails=lambda c: False) -> list[Observation]:
    idx = np.random.default_rng(seed).choice(len(valid), n, replace=False)
    out = []
    for i in idx:
        c = valid[i]
        ok = not fails(c)
        out.append(Observation(candidate_name(c), c, ok, synthetic(c, k) if ok else None))
    return out


def propose(obs, seed: int = 0, k: int = 2, batch: int = 3, **kw) -> dict:
    space, valid = setup()
    return propose_batch(space, valid, obs, directions(k), iteration=2, initial_design=len(obs),
                         include_vllm_default=False, batch_size=batch, budget=60, seed=seed, strategy="qlognehvi", **kw)


# --- (a) BoTorch's EHVI and the exact 2-D EHVI rank alike on one posterior --------------------------------------

@pytest.mark.parametrize("case", range(4))
def test_botorch_ehvi_and_exact_2d_ehvi_rank_candidates_alike(case):
    """One fitted BoTorch model; its posterior mean and sd fed to :func:`ehvi_2d` (minimisation form) and BoTorch's
    analytic ExpectedHypervolumeImprovement (maximisation form): only the acquisition math differs."""
    rng = np.random.default_rng(case)
    X_all = rng.random((300, 3))
    shift = rng.uniform(0.3, 0.7, 3)
    f1 = np.sum((X_all - shift) ** 2, axis=1) + 0.3 * np.sin(3 * X_all[:, 0] + case)  # minimised
    f2 = np.sum((X_all - (1 - shift)) ** 2, axis=1) + 0.2 * X_all[:, 1] ** case         # minimised
    Y_all = np.column_stack([f1, f2])
    train = rng.choice(len(X_all), 12, replace=False)
    model = fit_outcomes([X_all[train]] * 2, [-Y_all[train, 0], -Y_all[train, 1]], [1e-6, 1e-6])
    Y_train = Y_all[train]
    front, ref = Y_train[pareto_mask(Y_train)], reference_point(Y_train)
    with torch.no_grad():
        post = model.posterior(tensor(X_all))
        mu, sd = -post.mean.numpy(), post.variance.clamp_min(1e-18).sqrt().numpy()
        partitioning = NondominatedPartitioning(ref_point=tensor(-ref), Y=tensor(-front))
        botorch_ehvi = ExpectedHypervolumeImprovement(model, (-ref).tolist(), partitioning)(tensor(X_all)[:, None, :])
    exact, botorch_ehvi = ehvi_2d(mu, sd, front, ref), botorch_ehvi.numpy()
    top = np.argsort(-exact)[:20]
    assert exact[top[0]] > 1e-3, "no candidate improves: the comparison would be vacuous"
    assert int(np.argmax(botorch_ehvi)) == int(np.argmax(exact))
    assert kendalltau(exact[top], botorch_ehvi[top]).statistic > 0.9
    assert botorch_ehvi[top] == pytest.approx(exact[top], rel=1e-4, abs=1e-9)


# --- (b) qlognehvi --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 4])
def test_qlognehvi_proposes_distinct_unevaluated_valid_configurations_deterministically(k):
    space, valid = setup()
    obs = observations(valid, 10, seed=k, k=k)
    first, again = propose(obs, k=k), propose(obs, k=k)
    names = [c["name"] for c in first["candidates"]]
    assert names == [c["name"] for c in again["candidates"]]
    assert len(set(names)) == 3 and not set(names) & {o.name for o in obs}
    assert set(names) <= {candidate_name(c) for c in valid}
    assert first["best_ehvi"] > 0 and first["relative_ehvi"] == pytest.approx(first["best_ehvi"] / first["hypervolume"])
    assert all(len(c["predicted_log_objectives_min"]) == k for c in first["candidates"])


def test_ehvi_with_three_objectives_is_refused_naming_the_strategies_that_handle_them():
    space, valid = setup()
    with pytest.raises(ValueError, match=r"optimizer.strategy 'ehvi' handles exactly 2 objectives, not 3; .*qlognehvi"):
        propose_batch(space, valid, [], directions(3), iteration=0, initial_design=6, include_vllm_default=False,
                      batch_size=2, budget=20, seed=0, strategy="ehvi")


def test_a_region_that_always_failed_gets_low_picks():
    """performance_mode throughput has the best objectives but always crashed: the classifier keeps the picks out."""
    space, valid = setup()
    crashes = lambda c: c["performance_mode"] == "throughput"  # noqa: E731
    obs = observations(valid, 14, seed=1, fails=crashes)
    assert 0 < sum(not o.ok for o in obs) < len(obs)
    p = propose(obs, batch=4)
    assert not any(crashes(c["config"]) for c in p["candidates"])
    assert all(c["p_feasible"] > 0.5 for c in p["candidates"])


def slo_record(config: dict, bound: float, capacity: bool = False) -> dict:
    thr, joules, ttft = synthetic(config, 3)
    metrics = {"output_tokens_per_s": thr, "joules_per_output_token": joules, "ttft_ms_p99": ttft,
               "tpot_ms_p99": 20.0, "slo": {"ttft_ms_p99": bound}, "slo_as_constraint": True,
               "slo_met": bool(ttft <= bound), "failed_requests": 0}
    if capacity:
        metrics["capacity_requests_per_s"] = 3.0
    return {"candidate": candidate_name(config), "config": config, "status": "ok", "mode": "online",
            "metrics": metrics}


def test_slo_misses_become_modelled_constraints_and_the_violating_region_is_avoided():
    space, valid = setup()
    bound = 120.0  # large max_num_seqs x max_num_batched_tokens miss it: also where throughput is highest
    idx = np.random.default_rng(3).choice(len(valid), 16, replace=False)
    records = [slo_record(valid[i], bound) for i in idx]
    objectives = [{"metric": "output_tokens_per_s"}, {"metric": "joules_per_output_token"}]
    obs = to_observations(records, objectives)
    missed = [o for o in obs if not o.ok]
    assert missed and len(missed) < len(obs)
    # the strategies that treat SLO misses as failures still do; qlognehvi gets the values and the bound
    assert all(o.objectives is None and o.slo_missed_objectives and o.constraints["ttft_ms_p99"] > bound
               for o in missed)
    assert all(o.bounds == {"ttft_ms_p99": bound} for o in obs)
    p = propose(obs, batch=4)
    assert p["slo_constraints"] == ["ttft_ms_p99"]
    true_ttft = [synthetic(c["config"], 3)[2] for c in p["candidates"]]
    assert sum(t <= bound for t in true_ttft) >= 3, true_ttft
    assert all(c["predicted_slo_ms"]["ttft_ms_p99"] < 1.5 * bound for c in p["candidates"])
    # capacity mode: the SLOs hold at the capacity by construction, nothing is modelled
    assert all(not o.constraints for o in to_observations([slo_record(valid[i], bound, True) for i in idx], objectives))


@pytest.mark.parametrize("k, noise", [(3, [1e-3, None, None]), (4, [None] * 4)], ids=["3-model-list", "4-batched"])
def test_shared_posterior_scores_as_botorchs_qlognehvi(k, noise):
    """:class:`SharedPosteriorQLogNEHVI` and BoTorch's qLogNEHVI, same GPs and base samples, on every valid
    configuration: the same log values wherever the improvement is not vanishing (below e^-5 of the best, the
    last digits of a near-zero conditional variance differ between the two computations, and they stay there), the
    same best; with a pending point (q = 2 inside) BoTorch's own path."""
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.sampling import SobolQMCNormalSampler

    from vllm_mobo.search.optimizer.observations import encode_observed, log_objectives_min
    from vllm_mobo.search.optimizer.shared_posterior import SharedPosteriorQLogNEHVI

    space, valid = setup()
    obs = observations(valid, 14, seed=3, k=k)
    X = encode_observed(space, obs)
    Y = -log_objectives_min(np.array([o.measured_objectives for o in obs]), directions(k))
    model = fit_outcomes([X] * k, [Y[:, j] for j in range(k)], noise, space.categorical_columns())
    ref = tensor(Y.min(axis=0) - 0.1)

    def acqf(cls):
        return cls(model=model, ref_point=ref, X_baseline=tensor(X), prune_baseline=False, max_iep=2,
                   sampler=SobolQMCNormalSampler(torch.Size([32]), seed=4))

    choices = tensor(space.encode(valid))[:, None, :]
    with torch.no_grad():
        botorch_, shared = acqf(qLogNoisyExpectedHypervolumeImprovement), acqf(SharedPosteriorQLogNEHVI)
        assert shared._shared_path(choices[:5])
        a = torch.cat([botorch_(c) for c in choices.split(40)])
        b = torch.cat([shared(c) for c in choices.split(40)])
        live = a > a.max() - 5
        assert int(live.sum()) >= 10
        assert torch.allclose(a[live], b[live], rtol=0, atol=1e-4)
        assert int(a.argmax()) == int(b.argmax()) and bool((b[~live] < a.max() - 4).all())
        for f in (botorch_, shared):
            f.set_X_pending(choices[int(a.argmax())])
        assert not shared._shared_path(choices[:5])
        assert torch.equal(botorch_(choices[:20]), shared(choices[:20]))


@pytest.mark.parametrize("k", [3, 4])
def test_screening_with_few_samples_keeps_the_full_passs_batch(monkeypatch, k):
    """Where more configurations remain than :data:`nehvi.SCREEN_KEEP`, a pass with :data:`nehvi.SCREEN_SAMPLES`
    QMC samples keeps the best of them for the full-sample pass: the batch (first pick and greedy picks) and the
    first pick's value are those of the full-sample pass over every configuration. (Scaled down: 14 observations of
    the 90-point space, the greedy picks among the 8 best, 19 kept; the gpu space keeps 512 for a pool of 64.)"""
    from vllm_mobo.search.optimizer import nehvi

    monkeypatch.setattr(nehvi, "RESCORE", 8)
    space, valid = setup()
    obs = observations(valid, 14, seed=5, k=k)
    remaining = len(valid) - len(obs)
    samples = []
    acquisition = nehvi._acquisition
    monkeypatch.setattr(nehvi, "_acquisition", lambda *a, **kw: samples.append(a[-1]) or acquisition(*a, **kw))
    full = propose(obs, k=k, batch=3)
    assert samples == [nehvi.MC_SAMPLES[k]]  # everything scored with every sample: no screen
    monkeypatch.setattr(nehvi, "SCREEN_KEEP", remaining // 4)
    samples.clear()
    screened = propose(obs, k=k, batch=3)
    assert samples == [nehvi.MC_SAMPLES[k], nehvi.SCREEN_SAMPLES]
    assert [c["name"] for c in screened["candidates"]] == [c["name"] for c in full["candidates"]]
    assert screened["best_ehvi"] == pytest.approx(full["best_ehvi"], rel=1e-9)


# --- noise --------------------------------------------------------------------------------------------------------

def test_a_fixed_noise_is_the_models_likelihood_noise():
    rng = np.random.default_rng(0)
    X = rng.random((12, 3))
    y = np.log(100 * (1 + X.sum(axis=1))) + rng.normal(0, 0.05, 12)
    var = np.log1p(0.05) ** 2
    assert noise_variance(fit_outcome_gp(X, y, var)) == pytest.approx(var, rel=1e-6)
    mixed = fit_outcome_gp(np.column_stack([X, rng.integers(0, 2, 12)]), y, var, cat_dims=[3])
    assert noise_variance(mixed) == pytest.approx(var, rel=1e-6)
    inferred = noise_variance(fit_outcome_gp(X, y))
    assert inferred[0] > 0 and inferred[0] != pytest.approx(var, rel=1e-3)


def test_outcomes_on_the_same_points_share_one_batched_gp_with_each_its_own_noise():
    """One batched GP where every outcome has the same points and kind of noise; its posterior matches one GP per
    outcome; a known noise stays each outcome's own. Otherwise one GP per outcome."""
    rng = np.random.default_rng(1)
    X = rng.random((14, 3))
    Y = [np.log(100 * (1 + X.sum(axis=1))), np.log(2 + X[:, 0] ** 2), np.log(50 + 20 * X[:, 1])]
    Y = [y + rng.normal(0, 0.03, 14) for y in Y]
    test = tensor(rng.random((20, 3)))
    batched = fit_outcomes([X] * 3, Y, [None] * 3)
    assert batched.num_outputs == 3 and not hasattr(batched, "models")
    single = [fit_outcome_gp(X, y) for y in Y]
    with torch.no_grad():
        mean = batched.posterior(test).mean
        for j, gp in enumerate(single):
            sd = float(tensor(Y[j]).std())
            assert (mean[:, j] - gp.posterior(test).mean[:, 0]).abs().max() < 0.2 * sd
    var = [np.log1p(0.02) ** 2, np.log1p(0.1) ** 2, np.log1p(0.3) ** 2]
    known = noise_variance(fit_outcomes([X] * 3, Y, var))
    assert known.shape == (3, 14) and known[:, 0] == pytest.approx(var, rel=1e-6)
    mixed = fit_outcomes([X] * 3, Y, [var[0], None, None])  # one known, two inferred: one GP each
    assert [m.num_outputs for m in mixed.models] == [1, 1, 1]
    assert noise_variance(mixed.models[0]) == pytest.approx(var[0], rel=1e-6)
    subset = fit_outcomes([X, X, X[:10]], [Y[0], Y[1], Y[2][:10]], [None] * 3)  # an SLO measured on fewer points
    assert [m.num_outputs for m in subset.models] == [1, 1, 1]


def online_config(noise) -> dict:
    cfg = load_test_config("tiny.yaml")
    cfg["benchmark"]["mode"] = "online"
    cfg["benchmark"].setdefault("online", {})["slo"] = {"ttft_ms_p99": 500}
    cfg["optimizer"]["noise"] = noise
    return validate_config(cfg)


def test_noise_from_a_mapping_and_from_the_confirmation_stages_noise_json(tmp_path):
    cfg = online_config({"joules_per_output_token": 0.03, "ttft_ms_p99": 0.1})
    objectives = [o["metric"] for o in cfg["objectives"]]
    assert objectives == ["output_tokens_per_s", "joules_per_output_token"]
    assert noise_option(cfg) == {"objectives": [None, pytest.approx(np.log1p(0.03) ** 2)],
                                 "constraints": {"ttft_ms_p99": pytest.approx(np.log1p(0.1) ** 2)}}
    measured = REPO / "docs/gpu/2026-11-30-h200-offline-gpuspace-confirm/confirm/noise.json"
    sds = {m: v["relative_sd"] for m, v in json.loads(measured.read_text())["objectives"].items()}
    from_file = noise_option(online_config(str(measured)))
    assert from_file["objectives"] == [pytest.approx(np.log1p(sds[m]) ** 2) for m in objectives]
    assert noise_option(online_config(None)) is None
    bad = tmp_path / "noise.json"
    bad.write_text('{"objectives": {"output_tokens_per_s": {"relative_sd": -1}}}')
    with pytest.raises(ConfigError, match="optimizer.noise.output_tokens_per_s: -1"):
        noise_option(online_config(str(bad)))
    with pytest.raises(ConfigError, match="optimizer.noise: .* is not a readable noise.json"):
        noise_option(online_config(str(tmp_path / "missing.json")))


def test_bad_noise_settings_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match="optimizer.noise: e2el_ms_p99 not modelled; allowed metrics: "
                                          "output_tokens_per_s, joules_per_output_token, ttft_ms_p99"):
        online_config({"e2el_ms_p99": 0.1})
    with pytest.raises(ConfigError, match=r"optimizer.noise.output_tokens_per_s: -0.1 violates minimum 0"):
        online_config({"output_tokens_per_s": -0.1})
    assert log_noise_variances({"ttft_ms_p99": 0.1}, ["output_tokens_per_s"]) == {}  # validation refuses it first


def test_the_noise_reaches_the_strategys_gps(monkeypatch):
    from vllm_mobo.search.optimizer import nehvi
    seen = []
    real = nehvi.fit_outcomes
    monkeypatch.setattr(nehvi, "fit_outcomes", lambda X, Y, noise, cat: seen.append(noise) or real(X, Y, noise, cat))
    _, valid = setup()
    propose(observations(valid, 8, seed=5), batch=1, noise={"objectives": [0.01, None], "constraints": {}})
    assert seen == [[0.01, None]]
