"""The benchmark workload: prompts as token ids, so dummy weights need neither tokenizer nor download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Token ids below this are left out of prompts (special tokens of common vocabularies live there).
FIRST_ORDINARY_TOKEN = 10
#: Seed offset of the warm-up batch (untimed); the timed window's batches use :func:`window_seed_offset`.
WARMUP_SEED_OFFSET = 1


@dataclass
class Request:
    prompt_token_ids: list[int]
    output_len: int


def make_requests(workload: dict, vocab_size: int, count: int | None = None, seed_offset: int = 0) -> list[Request]:
    """Requests with uniform input and output lengths, each prompt starting with a share of one common prefix.

    Prompt ``i`` has length ``L_i ~ U[input_len.min, input_len.max]``; its first ``round(f * L_i)`` tokens
    (``f = shared_prefix_fraction``) come from one prefix shared by every prompt, the rest are random, so prefix
    caching has something to reuse exactly when ``f > 0``. Deterministic in ``workload.seed``.
    """
    rng = np.random.default_rng([workload.get("seed", 0), seed_offset])
    n = workload["num_prompts"] if count is None else count
    lo_in, hi_in = workload["input_len"]["min"], workload["input_len"]["max"]
    lo_out, hi_out = workload["output_len"]["min"], workload["output_len"]["max"]
    fraction = float(workload.get("shared_prefix_fraction", 0.0))
    shared = rng.integers(FIRST_ORDINARY_TOKEN, vocab_size, size=hi_in)
    requests = []
    for _ in range(n):
        length = int(rng.integers(lo_in, hi_in + 1))
        n_shared = int(round(fraction * length))
        tail = rng.integers(FIRST_ORDINARY_TOKEN, vocab_size, size=length - n_shared)
        ids = np.concatenate([shared[:n_shared], tail]).astype(int).tolist()
        requests.append(Request(ids, int(rng.integers(lo_out, hi_out + 1))))
    return requests


def window_seed_offset(batch: int) -> int:
    """Seed offset of batch ``batch`` (0, 1, ...) of a timed window: 0 for the first (the workload itself), then
    2, 3, ...: fresh requests from the same generator that never repeat the warm-up's (:data:`WARMUP_SEED_OFFSET`)."""
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    return 0 if batch == 0 else batch + WARMUP_SEED_OFFSET
