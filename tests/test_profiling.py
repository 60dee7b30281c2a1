"""Nsight Systems profiling (src/vllm_mobo/profiling/, workflow/rules/profile.smk).

- The stats parsing and the breakdown on a real `nsys stats` export of vLLM on an H100 (tests/fixtures/nsys).
- The per-GPU breakdown of a `cuda_gpu_trace` cut to the NVTX measure window (exact numbers on a small table with
  nsys's real header), and the explanation of TP vs PP it leads to.
- The GPU path's orchestration (commands, exports, status) with a stand-in `nsys` executable, since neither nsys
  nor a GPU exists here: it checks the command lines we would run and what we make of nsys's output.
- The missing-nsys path through the real Snakemake rules on the committed finished run (tests/fixtures/run_tiny):
  "not profiled: nsys not found" in status.csv, in the explanation, in the LaTeX PDF and in `snakemake --report`,
  and nothing fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_snakemake
from vllm_mobo.config import load_schema, validate_config
from vllm_mobo.profiling import breakdown, configs, explain, nsys, run
from vllm_mobo.records import load_records

ROOT = Path(__file__).resolve().parents[1]
KERN_SUM = ROOT / "tests" / "fixtures" / "nsys" / "nsys-vllm0.26-llama8b-h100-cuda_gpu_kern_sum.csv"
RUN_TINY = ROOT / "tests" / "fixtures" / "run_tiny"
HAVE_LATEX = shutil.which("latexmk") is not None and shutil.which("pdftotext") is not None

TRACE_HEADER = ("Start (ns),Duration (ns),CorrId,GrdX,GrdY,GrdZ,BlkX,BlkY,BlkZ,Reg/Trd,StcSMem (MB),DymSMem (MB),"
                "Bytes (MB),Throughput (MB/s),SrcMemKd,DstMemKd,Device,Ctx,GreenCtx,Strm,Name")
NVTX_HEADER = ("Start (ns),End (ns),Duration (ns),DurChild (ns),DurNonChild (ns),Name,PID,TID,Lvl,NumChild,RangeId,"
               "ParentId,RangeStack,NameTree")
GEMM = "nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_TNN"
ATTN = "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<...>>>(T1::Params)"
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<(unsigned long)4096>)"
AR = "void vllm::cross_device_reduce_1stage<__nv_bfloat16, (int)2>(vllm::RankData *, ...)"
OTHER = "triton_poi_fused_mul_silu_slice_1"


def trace_csv(rows: list[tuple[int, int, str, str]]) -> str:
    """A cuda_gpu_trace export: (start, duration, device, name) rows, the other columns as nsys leaves them."""
    lines = [TRACE_HEADER]
    for start, dur, dev, name in rows:
        lines.append(f'{start},{dur},1,1,1,1,128,1,1,32,0,0,,,,,"{dev}",1,,7,"{name}"')
    return "\n".join(lines) + "\n"


def nvtx_csv(ranges: list[tuple[int, int, str]]) -> str:
    lines = [NVTX_HEADER]
    for i, (s, e, name) in enumerate(ranges, 1):
        lines.append(f"{s},{e},{e - s},0,{e - s},:{name},100,100,0,0,{i},,:{i},:{name}")
    return "\n".join(lines) + "\n"


def gpu(i: int) -> str:
    return f"NVIDIA H100 80GB HBM3 ({i})"


# ----------------------------------------------------------------------------- the real fixture, parsed


def test_real_kern_sum_parses_and_categories_sum_to_the_total():
    df = breakdown.read_stats_csv(KERN_SUM)
    assert len(df) == 217 and {"Time (%)", "Total Time (ns)", "Instances", "Name"} <= set(df.columns)
    b = breakdown.kernel_breakdown(df)
    assert set(b) == set(breakdown.CATEGORIES)
    assert sum(b.values()) == pytest.approx(float(df["Total Time (ns)"].sum()), rel=0, abs=0.5)
    # GEMMs (nvjet + cuBLAS split-K) and Triton-fused elementwise/norm kernels dominate this start-up-heavy run
    assert b["gemm"] > b["attention"] > 0 and b["other"] > b["attention"] and b["communication"] == 0
    row = breakdown.summary_breakdown(df).iloc[0]
    shares = sum(row[f"{c}_pct"] for c in breakdown.CATEGORIES)
    assert shares == pytest.approx(100.0) and np.isnan(row["idle_pct"])


@pytest.mark.parametrize("pattern, category", [
    ("^triton_poi_fused_mul_silu_slice_1$", "other"),
    ("^nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_TNN$", "gemm"),
    ("^triton_red_fused_fused_add_rms_norm_2$", "other"),
    ("FillFunctor<int>", "other"),
    ("FlashAttnFwdSm90", "attention"),
    ("FlashAttnFwdCombine", "attention"),
    ("reshape_and_cache_flash_kernel", "attention"),
    ("cublasLt::splitKreduce_kernel", "gemm"),
    ("direct_copy_kernel_cuda", "memory"),
    ("^_topk_topp_kernel$", "other"),
])
def test_known_kernels_of_the_real_export_land_in_their_category(pattern, category):
    names = breakdown.read_stats_csv(KERN_SUM)["Name"]
    hits = names[names.str.contains(pattern, regex=True)]
    assert len(hits) >= 1, pattern
    assert {breakdown.classify_kernel(n) for n in hits} == {category}


def test_communication_and_memory_names():
    for name in (NCCL, AR, "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<(unsigned long)4096>)",
                 "void at::native::multimem_all_reduce_kernel<...>"):
        assert breakdown.classify_kernel(name) == "communication", name
    for name in ("[CUDA memcpy Host-to-Device]", "[CUDA memcpy Device-to-Device]", "[CUDA memset]"):
        assert breakdown.classify_kernel(name) == "memory", name
    mem = breakdown.read_stats_csv("Time (%),Total Time (ns),Count,Avg (ns),Med (ns),Min (ns),Max (ns),StdDev (ns),"
                           "Operation\n80.0,800,2,400,400,300,500,141.4,[CUDA memcpy Host-to-Device]\n"
                           "20.0,200,1,200,200,200,200,0.0,[CUDA memset]\n")
    b = breakdown.kernel_breakdown(pd.DataFrame(), mem)
    assert b["memory"] == 1000 and sum(b.values()) == 1000


def test_stats_output_with_nsys_progress_lines_and_empty_reports():
    text = ("\nNOTICE: Existing SQLite export found: x.sqlite\n\nProcessing [x.sqlite] with "
            "[/opt/nsys/reports/cuda_gpu_kern_sum.py]... \n" + KERN_SUM.read_text())
    assert len(breakdown.read_stats_csv(text)) == 217
    skipped = "Processing [x.sqlite] with [cuda_gpu_mem_time_sum.py]... \nSKIPPED: x.sqlite does not contain GPU memory data.\n"
    assert breakdown.read_stats_csv(skipped).empty and breakdown.read_stats_csv("").empty


# ----------------------------------------------------------------------------------- window and per GPU


def test_measure_window_is_the_last_measure_range_in_the_default_domain():
    nvtx = breakdown.read_stats_csv(nvtx_csv([(100, 900, "vllm-mobo:warmup"), (1_000, 5_000, "vllm-mobo:measure"),
                                      (6_000, 9_000, "other")]))
    assert breakdown.measure_window(nvtx) == (1_000, 5_000)
    assert breakdown.measure_window(breakdown.read_stats_csv(nvtx_csv([(1, 2, "vllm-mobo:warmup")]))) is None


def test_per_gpu_breakdown_clips_to_the_window_and_counts_idle():
    w = (1_000_000, 2_000_000)  # 1 ms
    rows = [
        (900_000, 200_000, gpu(0), GEMM),  # starts before the window: 100 us inside
        (1_100_000, 300_000, gpu(0), GEMM),
        (1_200_000, 100_000, gpu(0), OTHER),  # overlaps the GEMM (another stream): busy time counted once
        (1_500_000, 200_000, gpu(0), NCCL),
        (1_700_000, 50_000, gpu(0), "[CUDA memcpy Device-to-Host]"),
        (2_500_000, 100_000, gpu(0), GEMM),  # after the window: ignored
        (1_000_000, 400_000, gpu(1), ATTN),
        (1_600_000, 100_000, gpu(1), AR),
    ]
    bd = breakdown.per_gpu_breakdown(breakdown.read_stats_csv(trace_csv(rows)), w, devices=2).set_index("gpu")
    g0, g1 = bd.loc[gpu(0)], bd.loc[gpu(1)]
    assert g0["gemm_raw_ns"] == 400_000 and g0["other_raw_ns"] == 100_000
    assert g0["communication_raw_ns"] == 200_000 and g0["memory_raw_ns"] == 50_000
    assert g0["busy_ns"] == 650_000 and g0["idle_ns"] == 350_000 and g0["window_ns"] == 1_000_000
    assert g0["overlap_scale"] == pytest.approx(650 / 750)
    for g in (g0, g1):  # categories + idle make up the window
        assert sum(g[f"{c}_pct"] for c in (*breakdown.CATEGORIES, "idle")) == pytest.approx(100.0)
    assert g1["attention_pct"] == pytest.approx(40.0) and g1["communication_pct"] == pytest.approx(10.0)
    assert g1["idle_pct"] == pytest.approx(50.0) and g1["overlap_scale"] == 1.0


def test_a_gpu_without_captured_kernels_is_unknown_not_idle():
    """Seen on 4 H200s: nsys captured no kernel of some engine processes; that is no evidence of idle GPUs."""
    bd = breakdown.per_gpu_breakdown(breakdown.read_stats_csv(trace_csv([(0, 10, gpu(0), GEMM)])), (0, 100), devices=2)
    assert len(bd) == 2 and np.isnan(bd.iloc[1]["idle_pct"]) and bd.iloc[0]["idle_pct"] == pytest.approx(90.0)
    status, note = breakdown.capture_status(bd)
    assert status == "profiled" and "1 of 2 GPUs captured" in note
    none = breakdown.per_gpu_breakdown(breakdown.read_stats_csv(trace_csv([(200, 10, gpu(0), GEMM)])), (0, 100), devices=2)
    assert breakdown.capture_status(none)[0] == "no kernels captured"


# ------------------------------------------------------------------------------------- selection, explanation


def _tiny():
    cfg = validate_config(yaml.safe_load((RUN_TINY / "config.yaml").read_text()),
                          load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    res = RUN_TINY / "results" / "tiny"
    return cfg, pd.read_csv(res / "pareto.csv"), load_records(sorted(res.glob("iter_*/*/metrics.json"))), \
        pd.read_csv(res / "observations.csv")


def test_selection_deduplicates_roles_and_takes_explicit_configs():
    cfg, pareto, records, _ = _tiny()
    assert cfg["profile"] == {"enabled": True, "configs": list(configs.ROLES), "num_prompts": 200, "nsys": None,
                              "cuda_graph_trace": "node", "timeout_s": None, "reuse": True}
    sel = configs.select_configs(pareto, records, cfg["objectives"],
                           list(configs.ROLES) + [{"tensor_parallel_size": 2}, {"max_num_seqs": 64}])
    names = [e["candidate"] for e in sel]
    assert names == ["seqs64-prefix1-mbt1024", "vllm-default", "tp2", "seqs64"]
    assert sel[0]["roles"] == ["energy_optimal", "throughput_optimal", "knee"]  # one run for three roles
    assert sel[1]["config"] == {} and sel[2]["config"] == {"tensor_parallel_size": 2} and sel[2]["record"] is None
    assert configs.parallel_sizes(sel[2]) == (2, 1) and configs.parallel_sizes(sel[0]) == (1, 1)
    empty = configs.select_configs(pareto.iloc[0:0], [], cfg["objectives"], ["knee", "vllm_default"])
    assert empty[0]["candidate"] is None and empty[1]["candidate"] == "vllm-default"


def test_unavailable_reasons_are_plain():
    assert nsys.unavailable_reason(True, None, "cpu") == "not profiled: nsys not found and no GPU"
    assert nsys.unavailable_reason(True, None, "cuda") == "not profiled: nsys not found"
    assert nsys.unavailable_reason(True, "/usr/bin/nsys", "cpu") == "not profiled: no GPU"
    assert nsys.unavailable_reason(True, "/usr/bin/nsys", "cuda") is None
    assert "profile.enabled: false" in nsys.unavailable_reason(False, "/usr/bin/nsys", "cuda")
    assert nsys.find_nsys("/nonexistent/nsys") is None


def _status(rows):
    base = {"iteration": 0, "report": "x.nsys-rep", "window_s": 0.001, "stats_filter": "",
            "reason": "profiled under nsys", "status": "profiled", "profiled_output_tokens_per_s": np.nan}
    return pd.DataFrame([{**base, **r} for r in rows], columns=run.STATUS_COLUMNS)


def _bd(cand, tp, pp, per_gpu):
    parts = []
    for i, (cats, busy) in enumerate(per_gpu):
        raw = {c: float(cats.get(c, 0)) for c in breakdown.CATEGORIES}
        parts.append({"candidate": cand, "roles": "requested", "tensor_parallel_size": tp,
                      "pipeline_parallel_size": pp, "gpu": gpu(i), **breakdown._breakdown_row(raw, 1_000_000.0, busy)})
    return pd.DataFrame(parts)


def test_explanation_compares_tp_communication_with_pp_bubbles():
    _, _, _, obs = _tiny()
    status = _status([
        {"candidate": "tp2", "roles": "requested", "tensor_parallel_size": 2, "pipeline_parallel_size": 1,
         "profiled_output_tokens_per_s": 100.0},
        {"candidate": "pp2", "roles": "requested", "tensor_parallel_size": 1, "pipeline_parallel_size": 2,
         "profiled_output_tokens_per_s": 120.0},
    ])
    bd = pd.concat([_bd("tp2", 2, 1, [({"gemm": 400e3, "communication": 300e3, "other": 100e3}, 800e3)] * 2),
                    _bd("pp2", 1, 2, [({"gemm": 500e3, "attention": 100e3, "communication": 50e3}, 650e3)] * 2)])
    text = " ".join(explain.explain(status, bd, obs, [{"metric": "output_tokens_per_s", "direction": "maximize"},
                                                {"metric": "joules_per_output_token", "direction": "minimize"}]))
    assert "Under TP=2 (tp2) each GPU spends 30.0% of its time in communication kernels" in text
    assert "is idle 20.0% of the measured window" in text
    assert "Under PP=2 (pp2) each GPU spends 5.0%" in text and "is idle 35.0%" in text
    assert "PP wins on output tokens per s (measured under nsys) for this workload (pp2: 120 vs tp2: 100), " \
           "consistent with the profiles: its GPUs lose 40.0% of their time to communication + idle, against 50.0%" \
           in text


def test_explanation_says_plainly_when_no_tp_or_pp_was_profiled():
    _, _, _, obs = _tiny()
    objs = [{"metric": "output_tokens_per_s", "direction": "maximize"}]
    one = _status([{"candidate": "vllm-default", "roles": "vLLM default", "tensor_parallel_size": 1,
                    "pipeline_parallel_size": 1}])
    text = " ".join(explain.explain(one, _bd("vllm-default", 1, 1, [({"gemm": 500e3}, 500e3)]), obs, objs))
    assert "None of the profiled configurations uses TP > 1 or PP > 1" in text
    assert "vllm-default (TP=1, PP=1; 954.4 output tokens per s)" in text or "vllm-default (TP=1, PP=1;" in text
    tp_only = _status([{"candidate": "tp2", "roles": "requested", "tensor_parallel_size": 2,
                        "pipeline_parallel_size": 1}])
    text = " ".join(explain.explain(tp_only, _bd("tp2", 2, 1, [({"communication": 100e3}, 100e3)] * 2), obs, objs))
    assert "No PP > 1 configuration was profiled, so the profiles cannot compare TP with PP here." in text
    none = _status([{"candidate": "vllm-default", "roles": "vLLM default", "tensor_parallel_size": 1,
                     "pipeline_parallel_size": 1, "status": "not profiled",
                     "reason": "not profiled: nsys not found"}])
    text = " ".join(explain.explain(none, pd.DataFrame(columns=breakdown.BREAKDOWN_COLUMNS), obs, objs))
    assert text.startswith("not profiled: nsys not found") and "no TP > 1 or PP > 1 configuration" in text


# ------------------------------------------------------------------ the GPU path with a stand-in nsys


FAKE_NSYS = r'''#!{python}
"""Stands in for nsys: records its argv; `profile` writes a report and the worker's result, `stats` prints the
CSV prepared for the report's candidate (with nsys's progress line first)."""
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_NSYS_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\n")
data = pathlib.Path(os.environ["FAKE_NSYS_DATA"])
if args[0] == "profile":
    out = pathlib.Path(args[args.index("-o") + 1])
    with open(os.environ["FAKE_NSYS_LOG"] + ".env", "a") as fh:
        fh.write(json.dumps({{"VLLM_WORKER_MULTIPROC_METHOD": os.environ.get("VLLM_WORKER_MULTIPROC_METHOD")}}) + "\n")
    cand = out.parent.name
    if (data / cand / "crash").exists():
        sys.exit(3)
    out.with_suffix(".nsys-rep").write_bytes(b"NSYS")
    result = pathlib.Path(args[args.index("vllm_mobo.profiling.worker") + 2])
    tps = float((data / cand / "tps").read_text())
    result.write_text(json.dumps({{"measurements": {{"output_tokens_per_s": tps}}}}))
elif args[0] == "stats":
    report, rep = args[args.index("--report") + 1], pathlib.Path(args[-1])
    if report != "cuda_gpu_trace" and any(a.startswith("--filter-time") for a in args) \
            and (data / "refuse_filter_time").exists():
        print("unrecognised option --filter-time", file=sys.stderr)
        sys.exit(1)
    print(f"Processing [{{rep.with_suffix('.sqlite')}}] with [{{report}}.py]... ")
    src = data / rep.parent.name / f"{{report}}.csv"
    print(src.read_text() if src.exists() else f"SKIPPED: {{rep}} does not contain {{report}} data.")
'''


@pytest.fixture
def fake_nsys(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "nsys"
    exe.parent.mkdir()
    exe.write_text(FAKE_NSYS.format(python=sys.executable))
    exe.chmod(0o755)
    data = tmp_path / "data"
    monkeypatch.setenv("FAKE_NSYS_LOG", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("FAKE_NSYS_DATA", str(data))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as under a scheduler: no GPU lock files taken
    # No GPU here: the worker spec and environment are those of the runner minus the GPU pinning.
    import vllm_mobo.measure.runner as R

    monkeypatch.setattr(R, "build_spec", lambda config, cand, model_dir: {
        "engine_args": cand["config"], "device": "cuda", "gpus_pinned": [0], "gpu_indices": [0]})
    monkeypatch.setattr(R, "worker_environment", lambda spec: dict(os.environ))
    return exe, data, tmp_path / "argv.jsonl"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_gpu_path_commands_exports_and_status(fake_nsys, tmp_path):
    exe, data, argv_log = fake_nsys
    cfg, pareto, records, obs = _tiny()
    cfg["profile"]["nsys"] = str(exe)
    cfg["profile"]["configs"] = ["knee", "vllm_default", {"tensor_parallel_size": 2}, {"pipeline_parallel_size": 2}]
    w = (2_000_000, 3_000_000)
    for cand, tps, rows in (
        ("tp2", 100, [(2_000_000, 400_000, gpu(i), GEMM) for i in (0, 1)]
         + [(2_500_000, 300_000, gpu(i), NCCL) for i in (0, 1)]),
        ("pp2", 120, [(2_000_000, 500_000, gpu(0), GEMM), (2_500_000, 50_000, gpu(0), "ncclDevKernel_SendRecv"),
                      (2_400_000, 600_000, gpu(1), GEMM)]),
    ):
        _write(data / cand / "tps", str(tps))
        _write(data / cand / "nvtx_pushpop_trace.csv",
               nvtx_csv([(1_000_000, 1_500_000, "vllm-mobo:warmup"), (*w, "vllm-mobo:measure")]))
        _write(data / cand / "cuda_gpu_trace.csv", trace_csv(rows + [(500_000, 100_000, gpu(0), OTHER)]))
        _write(data / cand / "cuda_gpu_kern_sum.csv", KERN_SUM.read_text())
    # the knee: a report without the measure range -> the summaries, no idle time; vLLM's default: nsys fails
    _write(data / "seqs64-prefix1-mbt1024" / "tps", "950")
    _write(data / "seqs64-prefix1-mbt1024" / "nvtx_pushpop_trace.csv", nvtx_csv([(1, 2, "vllm-mobo:warmup")]))
    _write(data / "seqs64-prefix1-mbt1024" / "cuda_gpu_kern_sum.csv", KERN_SUM.read_text())
    _write(data / "vllm-default" / "crash", "")

    with open(tmp_path / "profile.log", "w") as log:
        status, bd = run.profile_all(cfg, pareto, records, "cuda", tmp_path / "profiles", "model", log)
    st = status.set_index("candidate")
    assert list(status["candidate"]) == ["seqs64-prefix1-mbt1024", "vllm-default", "tp2", "pp2"]
    assert st.loc["tp2", "status"] == "profiled" and st.loc["pp2", "status"] == "profiled"
    assert st.loc["tp2", "window_s"] == pytest.approx(0.001)
    assert st.loc["tp2", "stats_filter"].startswith("--filter-time 2000000/3000000")
    assert st.loc["vllm-default", "status"] == "failed" and "nsys wrote no report" in st.loc["vllm-default", "reason"]
    assert st.loc["seqs64-prefix1-mbt1024", "status"] == "profiled"
    assert "no NVTX range vllm-mobo:measure" in st.loc["seqs64-prefix1-mbt1024", "reason"]
    assert (tmp_path / "profiles" / "tp2" / "profile.nsys-rep").exists()
    assert (tmp_path / "profiles" / "tp2" / "cuda_gpu_trace.csv.gz").exists()
    kern = pd.read_csv(tmp_path / "profiles" / "tp2" / "cuda_gpu_kern_sum.csv")  # progress line stripped
    assert len(kern) == 217

    calls = [json.loads(l) for l in argv_log.read_text().splitlines()]
    prof = next(c for c in calls if c[0] == "profile" and "tp2" in c[c.index("-o") + 1])
    joined = " ".join(prof)
    for flag in ("-s none", "--cpuctxsw none", "-t cuda,nvtx", "--trace-fork-before-exec=true",
                 "--cuda-graph-trace=node", "-m vllm_mobo.profiling.worker"):
        assert flag in joined, flag
    assert prof[prof.index("-m") - 1] == sys.executable
    # each worker flushes its trace at the window's end (cudaProfilerStop), and vLLM spawns rather than forks
    assert json.loads((tmp_path / "profiles" / "tp2" / "spec.json").read_text())["cuda_profiler"] is True
    envs = [json.loads(l) for l in Path(str(argv_log) + ".env").read_text().splitlines()]
    assert envs and all(e["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn" for e in envs)
    stats = [c for c in calls if c[0] == "stats" and "/tp2/" in c[-1]]
    assert [c[c.index("--report") + 1] for c in stats] == list(nsys.STATS_REPORTS)
    assert all(["--format", "csv", "--output", "-"] == c[3:7] for c in stats)
    assert "--filter-time=2000000/3000000" in stats[1]

    g = bd.set_index(["candidate", "gpu"])
    assert g.loc[("tp2", gpu(0)), "communication_pct"] == pytest.approx(30.0)
    assert g.loc[("tp2", gpu(1)), "idle_pct"] == pytest.approx(30.0)
    assert g.loc[("pp2", gpu(0)), "idle_pct"] == pytest.approx(45.0)
    assert g.loc[("pp2", gpu(1)), "idle_pct"] == pytest.approx(40.0)
    knee = bd[bd["candidate"] == "seqs64-prefix1-mbt1024"].iloc[0]
    assert knee["gpu"] == "all GPUs" and np.isnan(knee["idle_pct"]) and knee["source"].startswith("cuda_gpu_kern_sum")

    text = " ".join(explain.explain(status, bd, obs, cfg["objectives"]))
    assert "PP wins on output tokens per s (measured under nsys) for this workload (pp2: 120 vs tp2: 100)" in text

    # a second run of the rule keeps the profiles taken with the same settings; the failed one is tried again
    n_before = len(argv_log.read_text().splitlines())
    with open(tmp_path / "profile.log", "a") as log:
        again, bd2 = run.profile_all(cfg, pareto, records, "cuda", tmp_path / "profiles", "model", log)
    new = [json.loads(l) for l in argv_log.read_text().splitlines()[n_before:]]
    assert [c[c.index("-o") + 1].split("/")[-2] for c in new if c[0] == "profile"] == ["vllm-default"]
    pd.testing.assert_frame_equal(again.drop(columns="reason"), status.drop(columns="reason"), check_dtype=False)
    assert np.allclose(bd2["idle_pct"].fillna(-1), bd["idle_pct"].fillna(-1))
    explain.breakdown_figure(status, bd, str(tmp_path / "f.png"), str(tmp_path / "f.pdf"))
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"


def test_summaries_fall_back_to_unfiltered_when_filter_time_is_refused(fake_nsys, tmp_path):
    exe, data, _ = fake_nsys
    _write(data / "refuse_filter_time", "")
    rep = tmp_path / "p" / "profile.nsys-rep"
    _write(rep, "NSYS")
    _write(data / "p" / "nvtx_pushpop_trace.csv", nvtx_csv([(10, 20, "vllm-mobo:measure")]))
    _write(data / "p" / "cuda_gpu_kern_sum.csv", KERN_SUM.read_text())
    with open(tmp_path / "log", "w") as log:
        info = nsys.export_stats(str(exe), rep, rep.parent, log)
    assert info["window"] == (10, 20) and info["stats_filter"].startswith("none (this nsys refused --filter-time")
    assert len(pd.read_csv(info["paths"]["cuda_gpu_kern_sum"])) == 217


# --------------------------------------------------------------- the real rules without nsys (this machine, CI)


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # nsys must be missing whatever this machine has: a path that does not exist
    return run_snakemake(workdir, *args, "--cores", "2", "--config", "profile={nsys: /nonexistent/nsys}",
                         check=False, timeout=600)


def test_missing_nsys_through_the_rules_and_both_reports(tmp_path):
    d = tmp_path / "run_tiny"
    shutil.copytree(RUN_TINY, d)
    for p in d.rglob("*"):  # a finished search: no input newer than an output
        os.utime(p, (1_764_000_000, 1_764_000_000))
    res = "results/tiny"
    targets = [f"{res}/profiles/status.csv", f"{res}/profiles/breakdown.csv", f"{res}/profiles/explanation.txt",
               f"{res}/figures/profile_breakdown.png"] + (["report/tiny.pdf"] if HAVE_LATEX else [])
    proc = _snakemake(d, *targets)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in (d / "logs").rglob("*.log"))
    assert proc.returncode == 0, proc.stderr[-5000:] + logs
    assert not re.search(r"rule (benchmark|propose|observations):", proc.stdout + proc.stderr)  # nothing re-measured

    status = pd.read_csv(d / res / "profiles" / "status.csv")
    assert set(status["status"]) == {"not profiled"}
    assert all(r.startswith("not profiled: nsys not found") for r in status["reason"])
    assert list(status["candidate"]) == ["seqs64-prefix1-mbt1024", "vllm-default"]
    assert pd.read_csv(d / res / "profiles" / "breakdown.csv").empty
    explanation = (d / res / "profiles" / "explanation.txt").read_text()
    assert explanation.startswith("not profiled: nsys not found")
    assert (d / res / "figures" / "profile_breakdown.png").stat().st_size > 5_000

    if HAVE_LATEX:
        text = subprocess.run(["pdftotext", str(d / "report" / "tiny.pdf"), "-"], capture_output=True,
                              text=True, check=True).stdout
        flat = " ".join(text.split())
        assert "Where the GPU time goes (Nsight Systems)" in flat
        assert "not profiled: nsys not found" in flat

    # the HTML report of the profiling outputs (the whole report would also need the notebook, tested elsewhere)
    rep = _snakemake(d, "--report", "report.html", *targets[:4])
    assert rep.returncode == 0, rep.stderr[-4000:]
    html = (d / "report.html").read_text()
    for name in ("status.csv", "breakdown.csv", "explanation.txt", "profile_breakdown.png"):
        assert name in html, name
    # the files are embedded base64-encoded: the sentence is in the embedded status table and explanation
    blobs = [base64.b64decode(b + "=" * (-len(b) % 4), validate=False)
             for b in re.findall(r"base64,([A-Za-z0-9+/=]{40,})", html)]
    assert any(b"not profiled: nsys not found" in b for b in blobs)


REAL_4X = Path(__file__).parent / "fixtures" / "nsys" / "h200-4x-2026-11-26"


@pytest.mark.parametrize("name, devices, expected, captured_gpus", [
    ("tp2", 2, "profiled", 2), ("pp2", 2, "profiled", 1), ("vllm-default", 1, "no kernels captured", 0)])
def test_real_4xh200_exports_give_honest_breakdowns(tmp_path, name, devices, expected, captured_gpus):
    out = tmp_path / name
    shutil.copytree(REAL_4X / name, out)
    window = breakdown.measure_window(breakdown.read_stats_csv(out / "nvtx_pushpop_trace.csv"))
    assert window is not None and 1e9 < window[1] - window[0] < 5e9  # the measured generate call: 1-5 s
    bd = breakdown.breakdown_from_exports(out, window, devices)
    status, _ = breakdown.capture_status(bd)
    assert status == expected
    busy = bd[bd["busy_ns"].fillna(0) > 0]
    assert len(busy) == captured_gpus
    for _, g in busy.iterrows():
        assert sum(g[f"{c}_pct"] for c in (*breakdown.CATEGORIES, "idle")) == pytest.approx(100.0, abs=0.01)
        assert g["gemm_pct"] > 10 and g["communication_pct"] > 1  # TP all-reduces / PP sends are on the GPU
