"""The process supervisor (vllm_mobo.measure.supervisor): stop everything an attempt started, and after a
``kill -9`` of the runner, stop what it left behind at the next start.

Stand-in processes play vLLM's parts in the fast tests: a grandchild that leaves the session (os.setsid) and one
that renames itself with setproctitle as vLLM's EngineCore and Worker_TP processes do (which blanks their
/proc/<pid>/environ, so the attempt tag cannot be read from them). The engine test kills Snakemake's whole
process group during a TP=2 benchmark on the vLLM CPU build and checks that the next run stops the leftovers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import load_test_config, pipeline_environment, run_snakemake, snakemake_command, write_config
from vllm_mobo.measure import supervisor

#: A worker: starts a grandchild that leaves its session and one that stays but renames itself (setproctitle),
#: writes their pids to argv[1], then waits (or exits with argv[2] == "exit").
WORKER = textwrap.dedent('''
    import json, os, subprocess, sys, time
    setsid = "import os, time; os.setsid(); time.sleep(600)"
    renamed = "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore'); time.sleep(600)"
    kids = [subprocess.Popen([sys.executable, "-c", code]) for code in (setsid, renamed)]
    time.sleep(1.5)  # both have set themselves up
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump([k.pid for k in kids], fh)
    os.replace(tmp, sys.argv[1])
    if sys.argv[2:] == ["exit"]:
        os._exit(0)  # as the offline worker does: its engine processes are left to the runner
    time.sleep(600)
''')

#: A runner: starts the worker under the supervisor with an attempt file, writes the worker's pid, waits.
RUNNER = textwrap.dedent('''
    import sys, time
    from vllm_mobo.measure import supervisor
    worker = supervisor.start([sys.executable, sys.argv[1], sys.argv[2]], state_dir=sys.argv[3],
                              label="candidate stand-in")
    open(sys.argv[4], "w").write(str(worker.pid))
    time.sleep(600)
''')


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pids(path: Path) -> list[int]:
    wait_for(path.exists, 30, path.name)
    return json.loads(path.read_text())


def kill_quietly(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def worker_script(tmp_path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def test_stop_reaches_grandchildren_outside_the_group(worker_script, tmp_path):
    proc = supervisor.start([sys.executable, str(worker_script), str(tmp_path / "kids.json")])
    kids = read_pids(tmp_path / "kids.json")
    try:
        setsid_kid, renamed_kid = kids
        assert os.getpgid(setsid_kid) != proc.pid and os.getsid(setsid_kid) != proc.pid  # killpg would miss it
        assert psutil.Process(renamed_kid).environ() == {}  # the tag cannot be read from a renamed process
        assert psutil.Process(setsid_kid).environ()[supervisor.ATTEMPT_ENV] == proc.tag
        assert sorted(proc.stop(grace_s=5)) == sorted([proc.pid, *kids])
        assert not any(alive(p) for p in [proc.pid, *kids])
        assert proc.returncode == -signal.SIGTERM
    finally:
        kill_quietly(kids)


def test_stop_after_the_worker_exited_stops_its_engine_processes(worker_script, tmp_path):
    """The offline worker exits with os._exit and leaves its engine processes (re-parented, no tag to read
    on the renamed one): the stop still finds them, by tag and by session."""
    proc = supervisor.start([sys.executable, str(worker_script), str(tmp_path / "kids.json"), "exit"],
                            state_dir=tmp_path / ".attempts", label="candidate exits")
    kids = read_pids(tmp_path / "kids.json")
    try:
        assert proc.wait(30) == 0
        assert all(alive(p) for p in kids)
        assert sorted(proc.finish(grace_s=5)) == sorted(kids)
        assert not any(alive(p) for p in kids)
        assert list((tmp_path / ".attempts").iterdir()) == []
    finally:
        kill_quietly(kids)


def test_leftovers_of_a_killed_runner_are_stopped_at_the_next_start(worker_script, tmp_path):
    """kill -9 of the runner: the worker dies with it (PR_SET_PDEATHSIG), its grandchildren do not. The attempt
    file names the attempt; stop_leftovers finds them (tag, session), stops them, says so, removes the file."""
    runner_script, state = tmp_path / "runner.py", tmp_path / ".attempts"
    runner_script.write_text(RUNNER)
    runner = subprocess.Popen([sys.executable, str(runner_script), str(worker_script), str(tmp_path / "kids.json"),
                               str(state), str(tmp_path / "worker.pid")], start_new_session=True)
    kids = []
    try:
        kids = read_pids(tmp_path / "kids.json")
        worker_pid = int((tmp_path / "worker.pid").read_text())
        (attempt_file,) = state.glob("*.json")
        record = json.loads(attempt_file.read_text())
        assert record["runner"]["pid"] == runner.pid and record["worker"]["pid"] == worker_pid
        assert record["host"] == socket.gethostname() and record["label"] == "candidate stand-in"
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        wait_for(lambda: not alive(worker_pid), 10, "the worker to die with its runner")
        time.sleep(1)
        assert all(alive(p) for p in kids), "the stand-ins should outlive the runner, as vLLM's engine did"
        assert all(psutil.Process(p).ppid() != worker_pid for p in kids)

        lines = []
        stopped = supervisor.stop_leftovers(state, log=lines.append, grace_s=5)
        assert sorted(stopped) == sorted(kids)
        assert not any(alive(p) for p in kids)
        assert lines == [f"[vllm-mobo] stopped 2 processes (pids {', '.join(map(str, sorted(kids)))}) left by "
                         f"interrupted attempt {record['id']} of candidate stand-in"]
        assert not attempt_file.exists()
        assert supervisor.stop_leftovers(state, log=lines.append) == [] and len(lines) == 1
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        kill_quietly(kids)


def test_an_attempt_whose_runner_still_runs_is_left_alone(worker_script, tmp_path):
    state = tmp_path / ".attempts"
    proc = supervisor.start([sys.executable, str(worker_script), str(tmp_path / "kids.json")], state_dir=state)
    kids = read_pids(tmp_path / "kids.json")
    try:
        lines = []
        assert supervisor.stop_leftovers(state, log=lines.append) == [] and lines == []
        assert all(alive(p) for p in [proc.pid, *kids])
        assert (state / f"{proc.tag}.json").exists()
    finally:
        proc.finish(grace_s=5)
        kill_quietly(kids)
    assert not (state / f"{proc.tag}.json").exists()


def dead_identity() -> dict:
    p = psutil.Popen([sys.executable, "-c", "pass"])
    identity = {"pid": p.pid, "create_time": p.create_time()}
    p.wait()
    return identity


def write_attempt(state: Path, tag: str, worker: dict | None, host: str | None = None) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    path = state / f"{tag}.json"
    path.write_text(json.dumps({"id": tag, "label": f"candidate {tag}", "host": host or socket.gethostname(),
                                "runner": dead_identity(), "worker": worker, "cmd": [], "started": time.time()}))
    return path


def test_processes_without_the_tag_are_never_touched(tmp_path):
    """Untagged processes survive every leftover stop: one whose pid an attempt file names with another start
    time (a reused pid), one left in a session whose leader is gone (readable environment, no tag), and one of
    an attempt of another host."""
    state = tmp_path / ".attempts"
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    orphan_file = tmp_path / "orphan.pid"
    # a session leader that starts a child and exits: the child stays in a session whose leader is gone
    leader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(orphan_file)!r}, "w").write(str(child.pid))
    ''')], start_new_session=True)
    leader_identity = {"pid": leader.pid, "create_time": psutil.Process(leader.pid).create_time()}
    leader.wait()
    wait_for(orphan_file.exists, 10, "the orphan")
    orphan = int(orphan_file.read_text())
    try:
        assert os.getsid(orphan) == leader_identity["pid"] and alive(orphan)
        reused = write_attempt(state, "reused", {"pid": plain.pid, "create_time": 1.0})
        orphaned = write_attempt(state, "orphaned", leader_identity)
        other_host = write_attempt(state, "elsewhere", {"pid": plain.pid,
                                                        "create_time": psutil.Process(plain.pid).create_time()},
                                   host="another-host")
        lines = []
        assert supervisor.stop_leftovers(state, log=lines.append, grace_s=1) == []
        assert alive(plain.pid) and alive(orphan)
        assert sorted(lines) == sorted(f"[vllm-mobo] interrupted attempt {t} of candidate {t} left no process running"
                                       for t in ("orphaned", "reused"))
        assert not reused.exists() and not orphaned.exists() and other_host.exists()
    finally:
        plain.kill()
        plain.wait()
        kill_quietly([orphan])


FAKE_BENCH_WORKER = textwrap.dedent('''
    """A benchmark worker stand-in: engine-like grandchildren (see test_supervisor.WORKER), then a hang."""
    import json, os, subprocess, sys, time
    setsid = "import os, time; os.setsid(); time.sleep(600)"
    renamed = "import setproctitle, time; setproctitle.setproctitle('VLLM::EngineCore'); time.sleep(600)"
    kids = [subprocess.Popen([sys.executable, "-c", code]) for code in (setsid, renamed)]
    spec = json.load(open(sys.argv[1]))
    with open(os.path.join(os.path.dirname(os.path.dirname(sys.argv[1])), "kids.json"), "w") as fh:
        json.dump([k.pid for k in kids], fh)
    print("fake worker hangs", flush=True)
    time.sleep(600)
''')


def test_runner_stops_leftovers_before_and_everything_after(tmp_path, monkeypatch):
    """run_candidate: a leftover of an earlier attempt is stopped (and logged) before the worker starts; the
    worker times out and nothing of its attempt survives; the attempt file is gone."""
    from vllm_mobo.config import validate_config
    from vllm_mobo.measure.model import write_model_dir
    from vllm_mobo.measure.runner import run_candidate

    (tmp_path / "fake_bench_worker.py").write_text(FAKE_BENCH_WORKER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    cfg = load_test_config("tiny.yaml")
    cfg["benchmark"]["timeout_s"] = 8
    cfg = validate_config(cfg)
    write_model_dir(cfg["workload"]["model"], tmp_path / "model")
    out = tmp_path / "results" / "tiny" / "iter_0" / "seqs16" / "metrics.json"
    state = tmp_path / "results" / "tiny" / ".attempts"
    assert supervisor.state_dir_for(out) == state

    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True,
                                env=dict(os.environ, **{supervisor.ATTEMPT_ENV: "earlier"}))
    write_attempt(state, "earlier", {"pid": leftover.pid, "create_time": psutil.Process(leftover.pid).create_time()})
    kids = []
    try:
        rec = run_candidate(cfg, {"name": "seqs16", "config": {"max_num_seqs": 16}}, 0, out, tmp_path / "job.log",
                            model_dir=str(tmp_path / "model"), worker_module="fake_bench_worker")
        kids = json.loads((tmp_path / "results" / "tiny" / "iter_0" / "seqs16" / "kids.json").read_text())
        assert leftover.poll() is not None
        log = (tmp_path / "job.log").read_text()
        assert (f"[vllm-mobo] stopped 1 process (pids {leftover.pid}) left by interrupted attempt earlier of "
                f"candidate earlier") in log
        assert log.index("left by interrupted attempt") < log.index("fake worker hangs")
        assert rec["status"] == "failed" and rec["failure"]["kind"] == "timeout"
        assert not any(alive(p) for p in kids)
        assert list(state.iterdir()) == []
    finally:
        leftover.kill()
        leftover.wait()
        kill_quietly(kids)


# ------------------------------------------------------------------------------------------ the real engine


def engine_processes(root_pid: int) -> list[psutil.Process]:
    """vLLM engine processes (EngineCore, Worker_TP) below ``root_pid``: our run's, not anyone else's. Their tag
    cannot be read (setproctitle blanks their environment), so they are taken from the process tree."""
    try:
        below = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in below:
        try:
            text = p.name() + " " + " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "EngineCore" in text or "Worker_TP" in text:
            found.append(p)
    return found


@pytest.mark.engine
@pytest.mark.timeout(420)
def test_kill_9_of_snakemake_leaves_no_engine_for_the_next_run(tmp_path):
    """SIGKILL of Snakemake's whole process group during a TP=2 benchmark on the vLLM CPU build: vLLM's
    EngineCore and TP workers survive it (the defect), and the next `snakemake --cores all` stops them before
    any job runs, saying so in its log."""
    cfg = load_test_config("tiny.yaml")
    cfg["run"] = "leftover"
    cfg["search_space"] = {"tensor_parallel_size": [2], "max_num_seqs": [16, 32]}
    cfg["optimizer"].update(initial_design=1, include_vllm_default=False, budget=1)
    write_config(tmp_path, cfg)
    state = tmp_path / "results" / "leftover" / ".attempts"
    first_log, second_log = tmp_path / "first-run.log", tmp_path / "second-run.log"
    runs: list[subprocess.Popen] = []
    engines: list[psutil.Process] = []
    try:
        with open(first_log, "w") as log:
            first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "all"), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=pipeline_environment())
        runs.append(first)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None:
            engines = engine_processes(first.pid)
            if any("Worker_TP" in p.name() + " ".join(p.cmdline()) for p in engines):
                break
            time.sleep(1)
        assert engines and first.poll() is None, first_log.read_text()[-3000:]
        time.sleep(3)  # the TP workers are set up
        engines = engine_processes(first.pid)
        pids = sorted(p.pid for p in engines)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(5)
        survivors = [p for p in engines if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        print(f"engine processes {pids}; alive 5 s after kill -9 of Snakemake's group: "
              f"{[(p.pid, p.name(), p.ppid()) for p in survivors]}")
        assert survivors, "the engine died with Snakemake: this test no longer reproduces the defect"
        assert len(list(state.glob("*.json"))) == 1  # the interrupted attempt's file

        run_snakemake(tmp_path, "--unlock")
        with open(second_log, "w") as log:
            second = subprocess.Popen(snakemake_command(tmp_path, "--cores", "all"), stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=pipeline_environment())
        runs.append(second)
        pattern = re.compile(r"\[vllm-mobo\] stopped (\d+) process(?:es)? \(pids ([\d, ]+)\) left by interrupted "
                             r"attempt \w+ of candidate \S+")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and second.poll() is None and not pattern.search(second_log.read_text()):
            time.sleep(0.5)
        text = second_log.read_text()
        match = pattern.search(text)
        assert match, text[-3000:]
        before_jobs = text[:match.start()]
        assert "rule benchmark" not in before_jobs and "localrule benchmark" not in before_jobs, before_jobs
        stopped = {int(p) for p in match.group(2).split(",")}
        assert {p.pid for p in survivors} <= stopped, (stopped, [p.pid for p in survivors])
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in survivors)
        print(match.group(0))
    finally:
        for run in runs:
            if run.poll() is None:
                try:
                    os.killpg(run.pid, signal.SIGTERM)
                    run.wait(60)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(run.pid, signal.SIGKILL)
                    run.wait()
        supervisor.stop_leftovers(state, log=print, grace_s=5)
        supervisor.terminate(engines, grace_s=5)
