"""SLURM: the preflight of a run's job requests against what the cluster offers."""
