"""The measurement noise the GPs are given (``optimizer.noise``), as variances on the log scale they model.

A relative standard deviation ``r`` of one measurement (sd / mean, as the confirmation stage's repeats give it)
is, on a log scale, a standard deviation of ``log(1 + r)`` (exact for a lognormal with multiplicative spread
``1 + r``; ``~ r`` for small ``r``): the variance handed to the GP is ``log(1 + r)^2``.

``optimizer.noise`` is null (every GP infers its own homoscedastic noise), a mapping metric -> relative sd, or the
path of a ``noise.json`` the confirmation stage wrote (``{"objectives": {metric: {"relative_sd": r, ...}}}``).
Metrics of the file that the search does not model are ignored; a mapping may name only objectives and modelled
SLO constraints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...config import ConfigError

KEY = "optimizer.noise"


def _relative_sds(setting: dict | str | None) -> dict[str, float]:
    if setting is None:
        return {}
    if isinstance(setting, dict):
        return dict(setting)
    try:
        data = json.loads(Path(setting).read_text())
        return {m: v["relative_sd"] for m, v in data["objectives"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"{KEY}: {setting!r} is not a readable noise.json with "
                          f'{{"objectives": {{metric: {{"relative_sd": r}}}}}} ({e})') from None


def log_noise_variances(setting: dict | str | None, metrics: list[str]) -> dict[str, float]:
    """metric -> variance of one measurement on the log scale, for the ``metrics`` the search models (others are
    ignored: a mapping naming them is refused when the config is validated, :func:`vllm_mobo.config.validate_config`).

    Raises :class:`ConfigError` naming ``optimizer.noise`` for a negative or non-numeric value (the file form is
    checked only here) and for an unreadable file."""
    sds = _relative_sds(setting)
    out = {}
    for metric, r in sds.items():
        if metric not in metrics:
            continue
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ConfigError(f"{KEY}.{metric}: {r!r} is not a relative standard deviation (a number >= 0)")
        out[metric] = math.log1p(float(r)) ** 2
    return out
