"""Benchmark one candidate configuration on the real vLLM engine.

- :mod:`.workload`: the prompts (token ids) and output lengths, from the workload config and its seed.
- :mod:`.model`: the model directory (a config.json for dummy weights, or a path).
- :mod:`.hardware`: which device, how many, and a description of the machine and software.
- :mod:`.offline`: the offline worker: ``vllm.LLM`` + ``generate`` on the batch, energy over the timed window.
- :mod:`.online`: the online worker: vLLM's OpenAI server driven by vLLM's own serving benchmark (Poisson
  arrivals) at the configured request rates; latency percentiles, goodput, energy over the load window.
- :mod:`.runner`: runs the worker in its own process group with a timeout and writes ``metrics.json``
  atomically, a failure record included.
"""
