"""Measuring one candidate: the runner and its supervised worker (offline or online), the API server and load
generator of online mode, the workload, the model directory, GPU claims and energy meters."""
