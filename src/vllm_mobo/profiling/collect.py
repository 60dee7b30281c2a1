"""Assemble ``profiles/status.csv`` and ``breakdown.csv`` of a search from per-configuration profiles taken on the
GPU machine, when the device call ended before the ``profile`` rule wrote them (the rule writes both only at the
end of its job).

    vllm-mobo collect-profiles WORKDIR

WORKDIR as set up by ``restore_search.py`` (config.yaml with the ``profile.configs`` that were profiled, and the
fetched ``results/<run>/profiles/<candidate>/`` folders). Nothing is measured or run here: every selected
configuration must have a finished profile with the same settings (its ``profiled.json``), which
:func:`vllm_mobo.profiling.run.profile_all` then reuses (``profile.reuse``); a configuration without one is an error
naming it, so that no row says "profiled" for a profile that was not taken.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from ..config import load_config
from ..records import load_records
from .configs import select_configs
from .run import profile_all, profile_key


def collect(work: Path) -> int:
    """Write the tables; 1 (with a message naming them) when a selected configuration has no finished profile."""
    config = load_config(work / "config.yaml")
    run_dir = work / "results" / config["run"]
    pareto = pd.read_csv(run_dir / "pareto.csv")
    records = load_records(sorted(str(p) for p in run_dir.glob("iter_*/*/metrics.json")))
    profiles = run_dir / "profiles"
    entries = select_configs(pareto, records, config["objectives"], config["profile"]["configs"])
    missing = []
    for e in entries:
        done = profiles / (e["candidate"] or "?") / "profiled.json"
        if not done.exists() or json.loads(done.read_text()).get("key") != profile_key(config, e):
            missing.append(e["candidate"] or ", ".join(e["roles"]))
    if missing:
        print(f"no finished profile with this config's settings for: {', '.join(missing)} (take them out of "
              "profile.configs, or profile them on the GPU machine)", file=sys.stderr)
        return 1
    never = shutil.which("false")  # stands in for nsys: reached only if a profile were not reused (checked above)
    with open(work / "collect_profiles.log", "w") as log:
        status, breakdown = profile_all({**config, "profile": {**config["profile"], "nsys": never}}, pareto,
                                        records, "cuda", profiles, None, log)
    status.to_csv(profiles / "status.csv", index=False)
    breakdown.to_csv(profiles / "breakdown.csv", index=False)
    print(status[["candidate", "roles", "status", "reason"]].to_string(index=False))
    return 0

