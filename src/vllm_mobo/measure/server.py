"""vLLM's OpenAI-compatible API server for one candidate: a free loopback port, start, health check, stop, and
the engine settings it resolved (read from its log)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..engine_args import server_argv
from . import supervisor
from .failure import BenchmarkFailure

HOST = "127.0.0.1"
PORT_ATTEMPTS = 3
_ADDRESS_IN_USE = "Address already in use"


# --------------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a listening socket could bind ``host:port`` now (with SO_REUSEADDR, as vLLM's server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port the kernel reports free now (another process may still take it before the server binds it: the
    server's start is then retried on a new port, see :func:`start_server`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def choose_port(requested: int, host: str = HOST) -> tuple[int, str | None]:
    """``requested`` if it is free; otherwise (or for 0) a free port, with a note saying so."""
    if requested and port_is_free(requested, host):
        return requested, None
    port = free_port(host)
    return port, (f"port {requested} on {host} is taken; using free port {port} instead" if requested else None)


# ---------------------------------------------------------------------------------------------------- server


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _last_error(tail: str) -> str:
    lines = [l.strip() for l in tail.splitlines() if l.strip()]
    errors = [l for l in lines if "Error" in l or "error:" in l or "Exception" in l]
    return ((errors or lines or ["(empty log)"])[-1])[:500]


class Server:
    """One API server with its log, started by :mod:`.supervisor` (a session of its own, SIGTERM when its parent
    dies, inside the enclosing attempt if there is one); :meth:`stop` stops it with its engine processes and is
    idempotent."""

    def __init__(self, cmd: list[str], port: int, log_path: Path, env: dict | None = None):
        self.cmd, self.port, self.log_path, self.env = cmd, port, Path(log_path), env
        self.proc: supervisor.Supervised | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"[vllm-mobo] server command: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = supervisor.start(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, parent_death=signal.SIGTERM)

    def wait_healthy(self, timeout_s: float, poll_s: float = 0.5) -> float:
        """Seconds until ``GET /health`` answered 200. Raises :class:`BenchmarkFailure` (``server_exit``, with
        ``address_in_use`` set when the port was taken, or ``server_timeout``)."""
        t0 = time.monotonic()
        url = f"http://{HOST}:{self.port}/health"
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = _tail(self.log_path)
                exc = BenchmarkFailure("server_exit", f"the API server exited with status {code} before it was "
                                       f"healthy: {_last_error(tail)}", tail)
                exc.address_in_use = _ADDRESS_IN_USE in tail
                raise exc
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() - t0 > timeout_s:
                tail = _tail(self.log_path)
                raise BenchmarkFailure("server_timeout", f"the API server was not healthy after {timeout_s:g} s "
                                       f"(benchmark.online.server_start_timeout_s); last log line: "
                                       f"{_last_error(tail)}", tail)
            time.sleep(poll_s)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.finish()


def start_server(spec: dict, parser, env: dict | None = None) -> tuple[Server, float, list[str]]:
    """Start a server and wait until healthy; returns (server, seconds to healthy, port notes). A server that
    fails to bind its port (another process took it after it was chosen) is restarted on a new free port, up
    to :data:`PORT_ATTEMPTS` times."""
    online = spec["online"]
    notes = []
    requested = int(online.get("port", 0))
    for attempt in range(PORT_ATTEMPTS):
        port, note = choose_port(requested if attempt == 0 else 0)
        if note:
            notes.append(note)
            print(f"[vllm-mobo] {note}", flush=True)
        if spec.get("server_command"):  # tests: a stand-in server, "{port}" replaced by the port
            cmd = [a.replace("{port}", str(port)) for a in spec["server_command"]]
        else:
            cmd = server_argv(spec["model"], spec["engine_args"], port, HOST, parser=parser)
        server = Server(cmd, port, Path(spec["server_log"]), env=env)
        server.start()
        print(f"[vllm-mobo] API server pid {server.pid} starting on {HOST}:{port}", flush=True)
        try:
            return server, server.wait_healthy(online["server_start_timeout_s"]), notes
        except BenchmarkFailure as exc:
            server.stop()
            if getattr(exc, "address_in_use", False) and attempt + 1 < PORT_ATTEMPTS:
                notes.append(f"port {port} was taken when the server bound it; retrying on another port")
                print(f"[vllm-mobo] {notes[-1]}", flush=True)
                continue
            raise
        except BaseException:  # interrupted (SIGTERM/SIGINT raise SystemExit) while waiting: stop it too
            server.stop()
            raise
    raise AssertionError("unreachable")


#: Values the engine prints at start-up ("Initializing a V1 LLM engine ... with config: ..."), as engine args.
_LOG_FIELDS = {"enable_prefix_caching": "enable_prefix_caching", "enable_chunked_prefill": "enable_chunked_prefill",
               "tensor_parallel_size": "tensor_parallel_size", "pipeline_parallel_size": "pipeline_parallel_size",
               "max_seq_len": "max_model_len", "dtype": "dtype"}


def resolved_from_log(log_path: Path) -> dict:
    """The engine settings the server resolved, read from its start-up log (the server runs in another process,
    so ``LLM.llm_engine.vllm_config`` is out of reach): the engine's config line, and the scheduler's
    ``max_num_batched_tokens`` line. Fields this vLLM version does not print are absent."""
    text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    out: dict = {}
    line = next((l for l in text.splitlines() if "with config:" in l), "")
    for field, name in _LOG_FIELDS.items():
        m = re.search(rf"\b{field}=([^,\s]+)", line)
        if m:
            v = m.group(1)
            out[name] = {"True": True, "False": False}.get(v, int(v) if v.isdigit() else v)
    m = re.search(r"max_num_batched_tokens=(\d+)", text)
    if m:
        out["max_num_batched_tokens"] = int(m.group(1))
    return out
