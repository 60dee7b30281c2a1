"""Nsight Systems profiles of the highlighted configurations, reduced to where the GPU time goes.

After the search, the ``profile`` rule runs the offline benchmark of a few configurations again under
``nsys profile``: the energy-optimal, throughput-optimal and knee configurations of the Pareto front and vLLM's
default (``profile.configs``; one run per distinct configuration). The worker (:func:`worker_main`, which runs
:func:`vllm_mobo.measure.offline.run` and then shuts the engine down cleanly) marks the warm-up and the measured ``generate`` call with the NVTX ranges :data:`NVTX_WARMUP` and
:data:`NVTX_MEASURE` (see offline.py). Everything is kept under ``results/<run>/profiles/<candidate>/``:
``profile.nsys-rep``, the ``nsys stats`` exports as CSV and the worker's result.

Every process's trace
    nsys writes a process's CUDA trace when the process ends cleanly or calls ``cudaProfilerStop``; vLLM's
    shutdown may kill an EngineCore or TP/PP worker first, and its kernels would then be missing. So the engine
    is built with
    ``profiler_config={"profiler": "cuda"}`` and the measured ``generate`` is wrapped in ``llm.start_profile()``
    / ``llm.stop_profile()``: every worker calls cudaProfilerStart/Stop, and nsys flushes at the stop
    (``--flush-on-cudaprofilerstop``, its default). Workers are spawned (``VLLM_WORKER_MULTIPROC_METHOD=spawn``),
    as vLLM's profiling guide advises under nsys.

The measured window
    vLLM runs its kernels in other processes (EngineCore, and one worker per TP/PP rank) than the one that pushes
    the NVTX ranges, and ``nsys stats --filter-nvtx`` keeps only the events of the process that owns the range.
    So the window is read from ``nvtx_pushpop_trace`` (start and end of the last ``vllm-mobo:measure`` range, in
    the session's nanoseconds, which every process shares) and applied to every GPU: the per-GPU breakdown clips
    the ``cuda_gpu_trace`` rows (kernels, memcpy, memset) to it. The summaries ``cuda_gpu_kern_sum`` and
    ``cuda_gpu_mem_time_sum`` are exported with ``--filter-time <start>/<end>`` (falling back to the unfiltered
    summary, which then includes start-up, if this nsys refuses the filter; ``stats_filter`` in status.csv says
    which).

The breakdown (per GPU, over the window)
    Each kernel name is put in one category by the first matching pattern of :data:`KERNEL_PATTERNS` (checked in
    order, case-insensitive): communication (NCCL and vLLM's custom all-reduce), attention (FlashAttention
    ``flash``/``fmha``/``attention``, KV-cache writes), GEMM (cuBLAS ``nvjet``, ``gemm``, ``cutlass``,
    ``sm90_xmma`` ...), memory (memcpy/memset operations and copy kernels), else other (Triton-fused
    elementwise/norm kernels, sampling, ...). Idle is the part of the window in which no kernel or copy ran on
    that GPU (window minus the union of their intervals). Where kernels of several streams overlap, the category
    times add up to more than the busy time; they are then scaled by ``overlap_scale`` = busy / sum so that the
    categories plus idle make up the window (the raw sums are kept in ``*_raw_ns``).

Where nsys or a GPU is absent (``profile.enabled: false`` too) nothing runs and ``status.csv`` says plainly why
("not profiled: nsys not found"); the rest of the pipeline and both reports go on.
"""
