"""Multi-objective Bayesian optimisation over an enumerable space.

- :mod:`.design`: the space-filling initial design (greedy maximin).
- :mod:`.pareto`: objective orientation, non-dominated sorting and hypervolume (pymoo).
- :mod:`.ehvi`: exact expected hypervolume improvement for two objectives.
- :mod:`.surrogate`: one Gaussian process per objective and a feasibility classifier (scikit-learn).
- :mod:`.propose`: one iteration's batch, from every observation so far.
"""
