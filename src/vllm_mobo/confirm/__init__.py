"""The confirmation stage: the front's configurations and vLLM's default measured again, with repeats."""
