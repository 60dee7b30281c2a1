"""Online (serving) mode: the end-to-end pipeline on the real vLLM CPU engine, and its failure paths.

The failure paths (port taken, server exit, health timeout, interrupt, a worker killed before its clean-up) run
against a stand-in server (a small Python HTTP server that starts a helper child in its process group, like vLLM's
EngineCore), so they take seconds; one engine test checks a real server that exits on a bad engine argument.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import psutil
import pytest

from conftest import run_snakemake
from vllm_mobo.config import validate_config
from vllm_mobo.measure import load, online, supervisor
from vllm_mobo.measure import server as api_server
from vllm_mobo.measure.failure import BenchmarkFailure
from vllm_mobo.measure.runner import run_candidate
from vllm_mobo.records import observation_row
from vllm_mobo.search.optimizer.observations import to_observations

ROOT = Path(__file__).resolve().parents[1]

FAKE_SERVER = textwrap.dedent('''
    import http.server, os, subprocess, sys, time
    port, mode, child_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    open(os.path.join(os.path.dirname(child_file), "server.pid"), "w").write(str(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stays in our group
    open(child_file, "w").write(str(child.pid))
    print("fake server starting", flush=True)
    if mode == "crash":
        print("ValueError: fake engine failure", flush=True)
        sys.exit(3)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if mode == "ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
''')


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return gone(pid)


@pytest.fixture
def fake_spec(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)

    def make(mode: str, timeout_s: float = 30, port: int = 0) -> dict:
        return {"server_command": [sys.executable, str(script), "{port}", mode, str(tmp_path / "child.pid")],
                "server_log": str(tmp_path / "server.log"),
                "model": "unused", "engine_args": {},
                "online": {"port": port, "server_start_timeout_s": timeout_s, "request_rates": [1], "slo": {}}}

    return make


def child_pid(tmp_path) -> int:
    return int((tmp_path / "child.pid").read_text())


# ------------------------------------------------------------------------------------ ports and the server


def test_choose_port_replaces_a_taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not api_server.port_is_free(taken)
        port, note = api_server.choose_port(taken)
        assert port != taken and api_server.port_is_free(port)
        assert note == f"port {taken} on 127.0.0.1 is taken; using free port {port} instead"
    free = api_server.free_port()
    assert api_server.choose_port(free) == (free, None)


def test_configured_port_taken_server_runs_on_another(fake_spec, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        server, healthy_s, notes = api_server.start_server(fake_spec("ok", port=taken), parser=None)
        try:
            assert server.port != taken and healthy_s < 30
            assert notes and f"port {taken}" in notes[0]
        finally:
            server.stop()
    assert wait_gone(server.pid) and wait_gone(child_pid(tmp_path))


def test_port_taken_at_bind_time_is_retried(fake_spec, tmp_path, monkeypatch):
    """Another process takes the chosen port before the server binds it: the server exits with 'Address already
    in use' and is restarted on another free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        real = api_server.choose_port
        calls = []

        def racing_choose_port(requested, host="127.0.0.1"):
            calls.append(requested)
            return (taken, None) if len(calls) == 1 else real(requested, host)

        monkeypatch.setattr(api_server, "choose_port", racing_choose_port)
        server, _, notes = api_server.start_server(fake_spec("ok"), parser=None)
        try:
            assert server.port != taken
            assert any(f"port {taken} was taken when the server bound it" in n for n in notes)
        finally:
            server.stop()
    assert wait_gone(server.pid)


def test_health_timeout_fails_with_log_tail_and_stops_the_group(fake_spec, tmp_path):
    with pytest.raises(BenchmarkFailure) as info:
        api_server.start_server(fake_spec("never", timeout_s=2), parser=None)
    assert info.value.kind == "server_timeout"
    assert "not healthy after 2 s" in info.value.reason
    assert "fake server starting" in info.value.log_tail
    assert wait_gone(int((tmp_path / "server.pid").read_text())) and wait_gone(child_pid(tmp_path))


def test_server_exit_fails_with_its_error(fake_spec, tmp_path):
    with pytest.raises(BenchmarkFailure) as info:
        api_server.start_server(fake_spec("crash"), parser=None)
    assert info.value.kind == "server_exit"
    assert "exited with status 3" in info.value.reason and "fake engine failure" in info.value.reason
    assert wait_gone(child_pid(tmp_path))  # the crashed server's helper went with its group


def test_sigterm_to_the_worker_stops_the_server(fake_spec, tmp_path):
    spec = fake_spec("never", timeout_s=120)
    spec_path, result_path = tmp_path / "spec.json", tmp_path / "result.json"
    spec_path.write_text(json.dumps(spec))
    worker = subprocess.Popen([sys.executable, "-m", "vllm_mobo.measure.online", str(spec_path), str(result_path)],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        server_pid = int((tmp_path / "server.pid").read_text())
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)  # generous: the machine may be loaded
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert worker.returncode == 128 + signal.SIGTERM, worker.returncode
    assert wait_gone(server_pid, 20), psutil.Process(server_pid).status()
    assert wait_gone(child_pid(tmp_path), 20)
    assert not result_path.exists()  # interrupted: no result


NESTED_SERVER = textwrap.dedent('''
    """A worker that starts a server (not tied to it) with a helper child, records the server's pid and waits."""
    import subprocess, sys, time
    from vllm_mobo.measure import supervisor

    helper = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    server = supervisor.start([sys.executable, "-c", helper], parent_death=None)
    open(sys.argv[1], "w").write(str(server.pid))
    time.sleep(600)
''')


def test_runner_stops_a_server_its_worker_left_behind(tmp_path):
    """The worker was killed (timeout, OOM) before its own clean-up and its server outlived it: the runner's stop
    of the attempt finds the server (it carries the attempt's tag, its session is registered) and its helper."""
    script, pid_file = tmp_path / "worker.py", tmp_path / "server.pid"
    script.write_text(NESTED_SERVER)
    worker = supervisor.start([sys.executable, str(script), str(pid_file)], state_dir=tmp_path / ".attempts",
                              label="candidate stand-in")
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        server = psutil.Process(int(pid_file.read_text()))
        while not server.children() and time.monotonic() < deadline:
            time.sleep(0.1)
        members = [server.pid] + [p.pid for p in server.children(recursive=True)]
        assert len(members) == 2 and os.getsid(server.pid) == server.pid != worker.pid
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        assert not any(gone(p) for p in members)  # left behind
        assert sorted(worker.finish(grace_s=5)) == sorted(members)
        assert all(wait_gone(p) for p in members)
        assert list((tmp_path / ".attempts").iterdir()) == []  # the attempt ended: its files are gone
        assert worker.finish() == []  # again: nothing left, no error
    finally:
        supervisor.terminate(supervisor.attempt_processes(worker.tag), grace_s=1)


FAKE_OPENAI_SERVER = textwrap.dedent('''
    """Streams max_tokens chunks per completion, one request at a time (a lock): latency grows with the load."""
    import http.server, json, os, sys, threading, time
    port, token_s, pid_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    open(pid_file, "w").write(str(os.getpid()))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            n = body["max_tokens"]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            with lock:
                for _ in range(n):
                    time.sleep(token_s)
                    self.wfile.write(b'data: {"choices": [{"text": "t5 "}]}\\n\\n')
                    self.wfile.flush()
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": n}
            self.wfile.write(("data: " + json.dumps({"choices": [], "usage": usage}) + "\\n\\ndata: [DONE]\\n\\n").encode())

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
''')


def test_rates_slos_and_headline_against_a_stand_in_server(tmp_path):
    """The whole worker (warm-up, vLLM's load generator, energy windows, SLOs) against a server that serves one
    request at a time (~5 ms per token): 4 req/s meets a 300 ms p99 TTFT, a burst does not, and the rate above
    the first violating one is not run."""
    script = tmp_path / "fake_openai.py"
    script.write_text(FAKE_OPENAI_SERVER)
    workload = {"num_prompts": 8, "input_len": {"min": 16, "max": 32}, "output_len": {"min": 8, "max": 16},
                "shared_prefix_fraction": 0.0, "seed": 0}
    spec = {"server_command": [sys.executable, str(script), "{port}", "0.005", str(tmp_path / "server.pid")],
            "model": "fake",
            "server_log": str(tmp_path / "server.log"),
            "engine_args": {}, "workload": workload, "vocab_size": 512, "warmup_prompts": 2, "cooldown_s": 0,
            "energy": {"cpu_watts_per_core": 7.5, "ram_watts_per_gb": 0.375},
            "online": {"port": 0, "server_start_timeout_s": 60, "request_rates": ["inf", 4, 1000],
                       "slo": {"ttft_ms_p99": 300, "tpot_ms_p99": 50}, "slo_as_constraint": True, "num_prompts": None}}
    before = time.time()
    result = online.run(spec)
    m = result["measurements"]
    timing = result["timing"]  # the measured windows start after the server start and warm-up, and fit before now
    assert timing["window_started_at"] - before >= timing["engine_init_s"] + timing["warmup_s"]
    assert timing["window_started_at"] + timing["measured_s"] <= time.time()
    assert [r["request_rate"] for r in m["rates"]] == [4.0, 1000.0]
    assert m["rates_not_run"] == ["inf"]
    fast, burst = m["rates"]
    assert fast["slo_met"] and not burst["slo_met"]
    assert burst["ttft_ms_p99"] > 300 and burst["slo_violations"][0].startswith("ttft_ms_p99")
    assert burst["goodput"] < burst["requests_per_s"]
    assert m["request_rate"] == 4.0 and m["slo_met"] is True  # the headline: highest rate within the SLOs
    assert m["completed_requests"] == 8 and m["failed_requests"] == 0
    assert m["output_tokens"] == sum(r.output_len for r in load.make_requests(workload, 512))
    assert 5.0 <= m["tpot_ms_p50"] < 60 and m["ttft_ms_p50"] <= m["ttft_ms_p99"] <= m["e2el_ms_p99"]
    assert 0 <= m["client_overhead_in_window_s"] < m["energy_window_s"]
    assert result["energy"]["sources"] and len(result["energy_per_rate"]) == 2
    phases = result["power_timeline"]["phases"]  # the server's power timeline, every window marked in order
    assert [(p["phase"], p["label"]) for p in phases] == [("warmup", None), ("window", "4 req/s"),
                                                          ("window", "1000 req/s")]
    windows = [p for p in phases if p["phase"] == "window"]
    assert [w["end_s"] - w["start_s"] for w in windows] == pytest.approx(
        [r["energy_window_s"] for r in m["rates"]], abs=0.05)
    assert wait_gone(int((tmp_path / "server.pid").read_text()))


# ---------------------------------------------------------------------------------------- engine arguments


# ------------------------------------------------------------------------------------------ metrics and SLOs


def fake_result(ttfts, latencies, output_lens, errors=None):
    n = len(ttfts)
    return {"ttfts": ttfts, "latencies": latencies, "output_lens": output_lens, "itls": [[0.01] * (k - 1) for k in output_lens],
            "errors": errors or [""] * n}


def test_latency_metrics_follow_vllm_definitions():
    r = fake_result([0.1, 0.2, 0.3, 9.0], [1.1, 1.2, 1.3, 9.9], [11, 11, 11, 0], errors=["", "", "", "boom"])
    m = load.latency_metrics(r)
    assert m["ttft_ms_p50"] == pytest.approx(200.0)
    assert m["tpot_ms_p50"] == pytest.approx(100.0)  # (1.2 - 0.2) / (11 - 1)
    assert m["e2el_ms_p99"] == pytest.approx(1298.0)  # failed request left out
    assert m["itl_ms_mean"] == pytest.approx(10.0)


def test_slo_check_and_headline_rate():
    slo = {"ttft_ms_p99": 100, "tpot_ms_p99": 20}
    ok = {"failed_requests": 0, "num_requests": 10, "ttft_ms_p99": 90.0, "tpot_ms_p99": 19.0}
    assert load.slo_check(ok, slo) == (True, [])
    slow = {**ok, "ttft_ms_p99": 150.0}
    assert load.slo_check(slow, slo) == (False, ["ttft_ms_p99 150.0 > 100"])
    failed = {**ok, "failed_requests": 2}
    assert load.slo_check(failed, {})[0] is False
    assert load.slo_check({**ok, "tpot_ms_p99": math.nan}, slo)[0] is False
    rates = [{"request_rate": 1, "slo_met": True}, {"request_rate": 4, "slo_met": True}, {"request_rate": 8, "slo_met": False}]
    assert online.select_headline(rates, slo)["request_rate"] == 4
    assert online.select_headline(rates[2:], slo)["request_rate"] == 8  # none met: the lowest, slo_met false
    assert online.select_headline(rates, {})["request_rate"] == 8
    assert online.sorted_rates(["inf", 4, 0.5, float("inf")]) == [0.5, 4.0, float("inf")]


def record(name, status="ok", slo_met=True, constraint=True):
    metrics = {"output_tokens_per_s": 100.0, "joules_per_output_token": 0.5, "slo_met": slo_met,
               "slo_as_constraint": constraint, "request_rate": "inf", "ttft_ms_p50": 10.0, "ttft_ms_p99": 20.0,
               "tpot_ms_p99": 5.0, "e2el_ms_p99": 100.0, "goodput": 3.0}
    return {"iteration": 0, "candidate": name, "status": status, "config": {}, "mode": "online",
            "metrics": metrics if status == "ok" else None, "energy": None, "failure": None}


def test_slo_violation_is_infeasible_for_the_optimiser():
    objectives = [{"metric": "output_tokens_per_s", "direction": "maximize"},
                  {"metric": "joules_per_output_token", "direction": "minimize"}]
    obs = to_observations([record("a"), record("b", slo_met=False), record("c", slo_met=False, constraint=False),
                           record("d", status="failed")], objectives)
    assert [o.ok for o in obs] == [True, False, True, False]
    assert obs[1].objectives is None
    row = observation_row(record("b", slo_met=False), [])
    assert row["slo_met"] is False and row["feasible"] is False and row["request_rate"] == math.inf
    assert {"ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p99", "e2el_ms_p99", "goodput"} <= set(row)


def test_online_config_is_valid():
    import yaml

    cfg = validate_config(yaml.safe_load((ROOT / "tests/configs/online_tiny.yaml").read_text()))
    assert cfg["benchmark"]["mode"] == "online"
    assert cfg["benchmark"]["online"]["slo_as_constraint"] is True


# ------------------------------------------------------------------------------------------ the real engine


def api_servers_in(directory: Path) -> list[psutil.Process]:
    """API server processes (and their helpers) started from ``directory``: ours, not other users'."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["cwd"] == str(directory) and ("api_server" in cmd or "vllm_mobo.measure" in cmd):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.engine
@pytest.mark.timeout(1500)
def test_online_mode_end_to_end(tmp_path):
    """snakemake --cores all with mode: online: 2 candidates, each an API server, a capacity search under the SLOs
    and the target rate; objectives capacity and energy per token there (test_capacity checks the search)."""
    (tmp_path / "config.yaml").write_text((ROOT / "tests/configs/online_tiny.yaml").read_text())
    t0 = time.monotonic()
    proc = run_snakemake(tmp_path, "--cores", "all", "--resources", "benchmark_slots=1", check=False, timeout=1500)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"pipeline took {elapsed:.0f} s")
    results = tmp_path / "results/online-tiny"
    obs = pd.read_csv(results / "observations.csv")
    assert len(obs) == 2 and set(obs["mode"]) == {"online"}
    ok = obs[obs["status"] == "ok"]
    assert len(ok) >= 1, obs[["candidate", "failure_kind", "failure_reason"]].to_string()
    for col in ("ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p99", "e2el_ms_p99", "goodput", "output_tokens_per_s",
                "requests_per_s", "joules_per_output_token", "capacity_requests_per_s",
                "capacity_output_tokens_per_s", "joules_per_output_token_at_capacity"):
        assert (ok[col] > 0).all(), col
    assert (ok["ttft_ms_p50"] <= ok["ttft_ms_p99"]).all()
    assert (ok["request_rate"] == ok["capacity_requests_per_s"]).all()  # the headline: the step at the capacity
    assert ok["slo_met"].astype(bool).all()  # the start rate meets the generous SLOs
    assert (ok["elapsed_s"] >= 1).all()  # benchmark.min_window_s
    name = ok["candidate"].iloc[0]
    rec = json.loads((results / f"iter_0/{name}/metrics.json").read_text())
    assert [r["request_rate"] for r in rec["metrics"]["rates"]] == [4.0]  # the target rate
    assert rec["metrics"]["capacity_steps"][0]["completed_requests"] == 12  # max(num_prompts, 8 req/s x 1 s)
    assert rec["energy"]["provenance"] in {"measured", "estimated", "mixed"}
    assert len(rec["energy_per_rate"]) == len(rec["metrics"]["capacity_steps"]) + 1
    assert rec["server"]["command"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    # the power timeline: warm-up, then one window per rate measured, in order; the CPU curve is the estimate
    tl = rec["power_timeline"]
    rates = [4.0] + [s["request_rate"] for s in rec["metrics"]["capacity_steps"]]  # the target comes first
    assert [p["label"] for p in tl["phases"] if p["phase"] == "window"] == [f"{r:g} req/s" for r in rates]
    assert tl["phases"][0]["phase"] == "warmup" and tl["channels"][0]["provenance"] == "estimated"
    assert len(tl["t_s"]) == len(tl["watts"]["cpu"]) + 1 and max(tl["watts"]["cpu"]) > 0
    for name in ("power_timelines", "power_steadiness", "latency"):
        assert mpimg.imread(results / "figures" / f"{name}.png")[..., :3].std() > 0.01, name
    assert api_servers_in(tmp_path) == []


@pytest.mark.engine
@pytest.mark.timeout(900)
def test_server_that_rejects_an_engine_argument_is_a_failed_candidate(tmp_path, monkeypatch):
    import yaml

    from vllm_mobo.measure.model import write_model_dir

    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((ROOT / "tests/configs/online_tiny.yaml").read_text())
    cfg["engine_args"]["no_such_engine_argument"] = 1
    cfg = validate_config(cfg)
    write_model_dir(cfg["workload"]["model"], tmp_path / "model")
    rec = run_candidate(cfg, {"name": "vllm-default", "config": {}}, 0, tmp_path / "metrics.json", tmp_path / "job.log",
                        model_dir=str(tmp_path / "model"))
    assert rec["status"] == "failed"
    assert rec["failure"]["kind"] == "server_exit"
    assert "no-such-engine-argument" in rec["failure"]["reason"] or "no-such-engine-argument" in rec["failure"]["log_tail"]
    assert "API server log" in (tmp_path / "job.log").read_text()
    assert api_servers_in(tmp_path) == []


def test_server_ends_when_its_worker_is_killed(fake_spec, tmp_path):
    """The worker is SIGKILLed (no clean-up possible): the server gets SIGTERM through PR_SET_PDEATHSIG."""
    spec = fake_spec("never", timeout_s=120)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    worker = subprocess.Popen([sys.executable, "-m", "vllm_mobo.measure.online", str(spec_path),
                               str(tmp_path / "result.json")], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        server_pid = int((tmp_path / "server.pid").read_text())
        worker.kill()
        worker.wait(timeout=30)
        assert wait_gone(server_pid, 20)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        if (tmp_path / "child.pid").exists():  # the stand-in's helper is not vLLM: it ignores its parent's death
            try:
                os.kill(child_pid(tmp_path), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_latencies_are_rebuilt_where_vllm_0_26_omits_them():
    """vLLM 0.26's serving benchmark returns no per-request latencies (seen on the GPU machine): they are TTFT plus
    the inter-chunk gaps, which must give the same percentiles as the latencies a newer vLLM reports."""
    from vllm_mobo.measure.online import latency_metrics

    old = {"errors": ["", "", "boom"], "output_lens": [3, 2, 0], "ttfts": [0.1, 0.2, 0.0],
           "itls": [[0.01, 0.02], [0.03], []]}
    new = {**old, "latencies": [0.13, 0.23, 0.0]}
    a, b = latency_metrics(old), latency_metrics(new)
    assert a["e2el_ms_p50"] == pytest.approx(180.0) and a["tpot_ms_p99"] == pytest.approx(b["tpot_ms_p99"])
    assert a == pytest.approx(b)
