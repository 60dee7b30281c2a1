"""Multi-objective optimisation over an enumerable space: Bayesian (qLogNEHVI, EHVI, ParEGO) and baseline strategies.

- :mod:`.design`: the space-filling initial design (greedy maximin), iteration 0 of every strategy.
- :mod:`.pareto`: objective orientation, non-dominated sorting and hypervolume (pymoo).
- :mod:`.ehvi`: exact expected hypervolume improvement for two objectives.
- :mod:`.surrogate`: one Gaussian process per objective and a feasibility classifier (scikit-learn).
- :mod:`.gp_models`: BoTorch GPs per objective and per modelled SLO; :mod:`.noise`: ``optimizer.noise`` as variances.
- :mod:`.shared_posterior`: BoTorch's qLogNEHVI values with one posterior per chunk of configurations;
  :mod:`.fused_kernel`: BoTorch's fused qLogEHVI kernel, loaded so that a killed load cannot hang later ones.
- :mod:`.observations`: the observations and the transforms strategies share; :mod:`.state`: one iteration's state.
- :mod:`.strategies`: the strategies by name, one module each: :mod:`.nehvi` (``qlognehvi``, the default),
  :mod:`.ehvi_search` (``ehvi``),
  :mod:`.ehvi_energy` (``ehvi-energy``), :mod:`.parego`, :mod:`.random_search` (``random``), :mod:`.sobol`,
  :mod:`.nsga2`, :mod:`.optuna_tpe` (``optuna``).
- :mod:`.propose`: one iteration's batch, from every observation so far.
"""
