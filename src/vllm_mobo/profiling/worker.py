"""The profiled worker: the offline benchmark, then a clean engine shutdown so that nsys receives every trace."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def worker_main(argv: list[str]) -> int:
    """``python -m vllm_mobo.profiling.worker SPEC RESULT``: the offline benchmark (with its NVTX ranges), then a
    clean engine shutdown so that nsys receives the trace of every process (offline.py's own ``os._exit`` would
    leave the EngineCore to be killed). A watchdog exits anyway if vLLM's shutdown hangs."""
    import gc
    import threading

    from ..measure.offline import run

    spec_path, result_path = Path(argv[0]), Path(argv[1])
    result = run(json.loads(spec_path.read_text()))
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, result_path)
    print(f"[vllm-mobo] profile run: {result['measurements']['output_tokens_per_s']:.1f} output tok/s",
          flush=True)
    watchdog = threading.Timer(90.0, lambda: os._exit(0))
    watchdog.daemon = True
    watchdog.start()
    gc.collect()  # the LLM is gone with run()'s frame: vLLM shuts its engine processes down here
    time.sleep(2.0)
    # Whatever is left (an EngineCore or TP/PP worker vLLM did not stop) gets SIGTERM, so it exits through its
    # own handlers and its CUDA trace reaches nsys; SIGKILL only after 20 s. nsys ends when all have exited.
    import psutil

    from ..measure.supervisor import terminate

    terminate(psutil.Process().children(recursive=True), grace_s=20)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3:
        sys.exit(worker_main(sys.argv[1:]))
    print("usage: python -m vllm_mobo.profiling.worker SPEC.json RESULT.json", file=sys.stderr)
    sys.exit(2)
