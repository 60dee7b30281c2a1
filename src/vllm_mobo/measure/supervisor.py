"""The one supervisor of the processes that run engines: benchmark workers, API servers and profiles.

:func:`start` runs a command in a new session (so a new process group) with an attempt tag,
``VLLM_MOBO_ATTEMPT=<id>``, in its environment; every descendant inherits it. With a state folder it also writes
an attempt file, ``<state>/<id>.json``: the host, the runner (this process: pid and start time), the started
process (pid and start time), the command and the start time. A process started inside an attempt (the API
server inside an online worker) keeps the attempt's tag and appends its own session to ``<state>/<id>.sessions``.

A process belongs to an attempt when it carries the tag; when it is in a session the attempt started (any member
while the session's leader is the recorded process; once the leader is gone, a member whose environment carries
the tag or is blank); or when it descends from, or is in a session or group led by, such a process. vLLM renames
its EngineCore and Worker_TP processes (setproctitle), which blanks their ``/proc/<pid>/environ``: the tag cannot
be read from them, so they are found by their session or their parent.

:meth:`Supervised.stop` sends SIGTERM to all of them, waits (``psutil.wait_procs``) and SIGKILLs the rest;
:meth:`Supervised.finish` does that and removes the attempt file. :func:`stop_leftovers` stops what an attempt
left when its runner died without cleaning up (e.g. ``kill -9`` of Snakemake's process group) and removes its file.
Processes are never chosen by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import psutil

from ..io import write_json_atomic

#: The environment variable holding the attempt tag; inherited by every descendant.
ATTEMPT_ENV = "VLLM_MOBO_ATTEMPT"
#: The environment variable naming the attempt file, so that processes started inside the attempt register.
ATTEMPT_FILE_ENV = "VLLM_MOBO_ATTEMPT_FILE"
#: Seconds between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0
#: Seconds to wait for processes to vanish after SIGKILL.
KILL_WAIT_S = 5.0
_PR_SET_PDEATHSIG = 1
_TIME_TOLERANCE_S = 0.05


# ------------------------------------------------------------------------------------------------ helpers


def _set_parent_death_signal(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG, sig) for the calling process; a no-op where prctl does not exist."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        pass


def _parent_death(sig: int | None, parent: int):
    """A preexec function: the parent-death signal ``sig``, raised at once if the parent died before it was set."""
    if not sig:
        return None

    def preexec():
        _set_parent_death_signal(sig)
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie holds no resources and cannot be signalled away)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _environ(proc: psutil.Process) -> dict | None:
    """The process's initial environment; None when it cannot be read (another user's process, gone)."""
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return None


def _same_start(proc: psutil.Process, create_time: float | None) -> bool:
    try:
        return create_time is not None and abs(proc.create_time() - float(create_time)) < _TIME_TOLERANCE_S
    except psutil.Error:
        return False


def _identity(pid: int) -> dict:
    """pid and start time of a process: together they name it even after its pid is reused."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "create_time": None}


def _me_and_ancestors() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def state_dir_for(path: Path | str) -> Path:
    """The state folder of the run a result path lies in: ``<run>/.attempts`` for a path under ``<run>/iter_<i>/``
    or ``<run>/profiles/``; else ``.attempts`` beside the path."""
    path = Path(path).absolute()
    for parent in path.parents:
        if parent.name == "profiles" or (parent.name.startswith("iter_") and parent.name[5:].isdigit()):
            return parent.parent / ".attempts"
    return path.parent / ".attempts"


# ------------------------------------------------------------------------------ finding an attempt's processes


def attempt_processes(tag: str | None, sessions: Iterable[dict] = (),
                      roots: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """The live processes of an attempt: ``roots``; those carrying ``tag``; the members of ``sessions``
    (``{"pid", "create_time"}`` of each session's leader; skipped when that pid now names another process; when
    the leader is gone, only members whose environment carries ``tag`` or is blank); and, transitively, the
    children of these and the members of the sessions and groups they lead. Never this process or its ancestors."""
    exclude = _me_and_ancestors()
    rows = {}
    for proc in psutil.process_iter(["ppid"]):
        if proc.pid in exclude:
            continue
        try:
            rows[proc.pid] = (proc, proc.info["ppid"], os.getsid(proc.pid), os.getpgid(proc.pid))
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    found: dict[int, psutil.Process] = {}
    for proc in roots:
        if proc.pid not in exclude:
            found[proc.pid] = proc  # the caller's object: a psutil.Popen reaps its child with its exit status
    if tag:
        for pid, (proc, *_ignored) in rows.items():
            env = _environ(proc)
            if env and env.get(ATTEMPT_ENV) == tag:
                found.setdefault(pid, proc)
    for session in sessions:
        sid = int(session["pid"])
        leader = rows.get(sid)
        if leader is not None and not _same_start(leader[0], session.get("create_time")):
            continue  # the pid names another process now: this session is not the attempt's
        for pid, (proc, _ppid, psid, pgid) in rows.items():
            if psid != sid and pgid != sid:
                continue
            if leader is None:
                env = _environ(proc)
                if env is None or (env and env.get(ATTEMPT_ENV) != tag):
                    continue  # someone else's process
            found.setdefault(pid, proc)
    linked: dict[int, list[int]] = {}
    for pid, (_proc, ppid, sid, pgid) in rows.items():
        for key in {ppid, sid, pgid}:
            if key != pid:
                linked.setdefault(key, []).append(pid)
    queue = list(found)
    while queue:
        for pid in linked.get(queue.pop(), ()):
            if pid not in found:
                found[pid] = rows[pid][0]
                queue.append(pid)
    return [p for _pid, p in sorted(found.items()) if _alive(p)]


def terminate(procs: Iterable[psutil.Process], grace_s: float = STOP_GRACE_S,
              first: int = signal.SIGTERM) -> list[int]:
    """Send ``first`` to every live process of ``procs``, wait up to ``grace_s`` for them to exit, SIGKILL the
    rest and wait for those; returns the pids signalled. A pid reused since ``procs`` was listed is not
    signalled (psutil checks each process's start time)."""
    procs = [p for p in procs if _alive(p)]
    signalled = []
    for proc in procs:
        try:
            proc.send_signal(first)
            signalled.append(proc)
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:
            continue
    _, alive = psutil.wait_procs(signalled, timeout=grace_s)
    alive = [p for p in alive if _alive(p)]
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    return [p.pid for p in signalled]


def _read_sessions(attempt_file: Path) -> list[dict]:
    """The sessions registered beside an attempt file (one ``pid create_time`` line each)."""
    out = []
    try:
        lines = attempt_file.with_suffix(".sessions").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        try:
            out.append({"pid": int(parts[0]), "create_time": float(parts[1])})
        except (IndexError, ValueError):
            continue
    return out


def _remove_attempt(attempt_file: Path) -> None:
    for path in (attempt_file, attempt_file.with_suffix(".sessions")):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- starting


class Supervised:
    """A process started by :func:`start`, and what it started."""

    def __init__(self, popen: psutil.Popen, tag: str, own_tag: bool, attempt_file: Path | None):
        self.popen, self.tag, self.own_tag, self.attempt_file = popen, tag, own_tag, attempt_file
        self.session = _identity(popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        code = self.popen.returncode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        """The exit status if the process has ended (negative: killed by that signal), else None."""
        self.popen.poll()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process itself; its exit status, or None when ``timeout`` passed first."""
        try:
            self.popen.wait(timeout)
        except psutil.TimeoutExpired:
            return None
        return self.returncode

    def processes(self) -> list[psutil.Process]:
        """The live processes of this attempt: the process, its session and descendants, anything carrying the
        tag (when the tag is this process's own) and the sessions registered in the attempt file."""
        sessions = [self.session]
        if self.attempt_file is not None:
            sessions += _read_sessions(self.attempt_file)
        roots = [self.popen] if self.poll() is None else []
        return attempt_processes(self.tag if self.own_tag else None, sessions, roots)

    def stop(self, grace_s: float = STOP_GRACE_S, first: int = signal.SIGTERM) -> list[int]:
        """Stop every process of the attempt (``first``, ``grace_s``, SIGKILL); returns the pids signalled."""
        stopped = terminate(self.processes(), grace_s, first)
        try:
            self.popen.wait(KILL_WAIT_S)  # reap it, keeping its exit status
        except psutil.TimeoutExpired:
            pass
        return stopped

    def finish(self, grace_s: float = STOP_GRACE_S) -> list[int]:
        """:meth:`stop`, then remove the attempt file once nothing of the attempt is left."""
        stopped = self.stop(grace_s)
        if self.attempt_file is not None and not self.processes():
            _remove_attempt(self.attempt_file)
        return stopped


def start(cmd: list[str], *, env: dict | None = None, state_dir: Path | str | None = None, label: str = "",
          parent_death: int | None = signal.SIGKILL, **popen_kwargs) -> Supervised:
    """Start ``cmd`` in a new session with an attempt tag in its environment, tied to this process by
    ``parent_death`` (PR_SET_PDEATHSIG; None: not tied). With ``state_dir`` the process starts a new attempt and
    its attempt file is written there (``label`` names it in log lines); without, a tag already in ``env`` (or
    this process's environment) is kept, so the process belongs to the enclosing attempt and registers its
    session there. Other keyword arguments go to :class:`subprocess.Popen`."""
    env = dict(os.environ if env is None else env)
    inherited = env.get(ATTEMPT_ENV) if state_dir is None else None
    tag = inherited or uuid.uuid4().hex
    env[ATTEMPT_ENV] = tag
    attempt_file = None
    if state_dir is not None:
        attempt_file = Path(state_dir).absolute() / f"{tag}.json"
        env[ATTEMPT_FILE_ENV] = str(attempt_file)
        record = {"id": tag, "label": label, "host": socket.gethostname(), "runner": _identity(os.getpid()),
                  "worker": None, "cmd": [str(c) for c in cmd], "started": time.time()}
        write_json_atomic(attempt_file, record)  # before the start: an attempt never runs unrecorded
    elif not inherited:
        env.pop(ATTEMPT_FILE_ENV, None)
    try:
        popen = psutil.Popen(cmd, env=env, start_new_session=True,
                             preexec_fn=_parent_death(parent_death, os.getpid()), **popen_kwargs)
    except BaseException:
        if attempt_file is not None:
            _remove_attempt(attempt_file)
        raise
    proc = Supervised(popen, tag, own_tag=not inherited, attempt_file=attempt_file)
    if attempt_file is not None:
        write_json_atomic(attempt_file, {**record, "worker": proc.session})
    elif inherited and env.get(ATTEMPT_FILE_ENV):  # the enclosing attempt's runner owns that file
        try:
            with open(Path(env[ATTEMPT_FILE_ENV]).with_suffix(".sessions"), "a") as fh:
                fh.write(f"{proc.session['pid']} {proc.session['create_time']}\n")
        except OSError:
            pass
    return proc


# ------------------------------------------------------------------------------------------------ leftovers


def _runner_alive(runner: dict | None) -> bool:
    if not runner:
        return False
    try:
        return _same_start(psutil.Process(int(runner["pid"])), runner.get("create_time"))
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def stop_leftovers(state_dir: Path | str, log: Callable[[str], object] = print,
                   grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop the processes left by attempts of this host whose runner is gone (its pid dead or now naming another
    process), one log line per attempt, and remove their attempt files; returns the pids stopped. Attempts of
    other hosts and attempts whose runner still runs are left alone."""
    state_dir = Path(state_dir)
    stopped: list[int] = []
    host = socket.gethostname()
    for attempt_file in sorted(state_dir.glob("*.json")):
        try:
            record = json.loads(attempt_file.read_text())
            tag = record["id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.get("host") != host or _runner_alive(record.get("runner")):
            continue
        sessions = [s for s in [record.get("worker")] if s] + _read_sessions(attempt_file)
        procs = attempt_processes(tag, sessions)
        pids = terminate(procs, grace_s)
        label = record.get("label") or "a process"
        left = [p.pid for p in attempt_processes(tag, sessions)]
        if left:
            log(f"[vllm-mobo] could not stop processes (pids {', '.join(map(str, left))}) left by interrupted "
                f"attempt {tag} of {label}")
            continue
        if pids:
            log(f"[vllm-mobo] stopped {len(pids)} process{'es' if len(pids) != 1 else ''} (pids "
                f"{', '.join(map(str, pids))}) left by interrupted attempt {tag} of {label}")
        else:
            log(f"[vllm-mobo] interrupted attempt {tag} of {label} left no process running")
        _remove_attempt(attempt_file)
        stopped += pids
    return stopped
