"""The run record: one benchmark's ``metrics.json`` as a typed, read-only view, and the vocabulary around it.

- :class:`Record` (with :class:`Energy`, :class:`EnergySource` and :class:`Failure`): every reader of
  ``metrics.json`` goes through :func:`load_record` / :func:`load_records`. Files of every schema version load;
  keys a version lacks read as empty.
- :func:`Record.feasible`: the one definition of a usable result (ran, and met its SLOs where they are constraints).
- :data:`METRICS`: the catalogue of metric names, labels, units and directions used by the config check, the
  tables, the figures and the reports.
- :func:`provenance_summary`: how the provenance of several energy figures is summarised in one word.
- :func:`candidate_name`: the name of a configuration (its folder under ``iter_<i>/``, its row in every table).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .timeline import PowerTimeline

#: The version :mod:`vllm_mobo.measure.runner` writes. Version 1 files (every run so far) read the same.
SCHEMA_VERSION = 1

#: Name of vLLM's own default configuration (no searched argument set), benchmarked as the baseline.
VLLM_DEFAULT = "vllm-default"

MEASURED = "measured"
ESTIMATED = "estimated"
SOURCES = ("gpu", "cpu", "ram")


# -------------------------------------------------------------------------------------------------- names


#: Short names used in candidate names; other keys are used as they are.
ABBREVIATIONS = {
    "block_size": "bs",
    "max_num_seqs": "seqs",
    "tensor_parallel_size": "tp",
    "pipeline_parallel_size": "pp",
    "enable_chunked_prefill": "chunk",
    "enable_prefix_caching": "prefix",
    "max_num_batched_tokens": "mbt",
    "gpu_memory_utilization": "gmu",
    "kv_cache_dtype": "kv",
    "performance_mode": "perf",
}


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("/", "_").replace(" ", "_")


def candidate_name(config: dict) -> str:
    """A readable, unique, filesystem-safe name: ``bs32-seqs64-tp1-pp2-chunk0-prefix1-mbt4096``."""
    if not config:
        return VLLM_DEFAULT
    return "-".join(f"{ABBREVIATIONS.get(k, k)}{_format_value(v)}" for k, v in config.items())


# ------------------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Metric:
    """A measured quantity: column name, axis label, unit and which way is better (None: not an objective)."""

    name: str
    label: str
    unit: str
    direction: str | None = None
    online_only: bool = False

    @property
    def from_energy(self) -> bool:
        """Computed from the energy meters (joules or watts), so estimated wherever a source was estimated."""
        return self.unit in ("J/token", "W")


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("output_tokens_per_s", "output tokens/s", "tokens/s", "maximize"),
    Metric("total_tokens_per_s", "total tokens/s", "tokens/s", "maximize"),
    Metric("requests_per_s", "requests/s", "requests/s", "maximize"),
    Metric("joules_per_output_token", "J per output token", "J/token", "minimize"),
    Metric("joules_per_token", "J per token", "J/token", "minimize"),
    Metric("mean_power_w", "mean power (W)", "W", "minimize"),
    Metric("goodput", "goodput (requests/s within the SLOs)", "requests/s", "maximize", online_only=True),
    Metric("ttft_ms_p99", "p99 TTFT (ms)", "ms", "minimize", online_only=True),
    Metric("tpot_ms_p99", "p99 TPOT (ms)", "ms", "minimize", online_only=True),
    Metric("e2el_ms_p99", "p99 end-to-end latency (ms)", "ms", "minimize", online_only=True),
    Metric("capacity_requests_per_s", "capacity within the SLOs (requests/s)", "requests/s", "maximize",
           online_only=True),
    Metric("capacity_output_tokens_per_s", "output tokens/s at capacity", "tokens/s", "maximize", online_only=True),
    Metric("capacity_output_tokens_per_s_per_device", "output tokens/s per device at capacity", "tokens/s",
           "maximize", online_only=True),
    Metric("joules_per_output_token_at_capacity", "J per output token at capacity", "J/token", "minimize",
           online_only=True),
    Metric("joules_per_output_token_at_target", "J per output token at the target rate", "J/token", "minimize",
           online_only=True),
    Metric("ttft_ms_p99_at_target", "p99 TTFT at the target rate (ms)", "ms", "minimize", online_only=True),
    Metric("tpot_ms_p99_at_target", "p99 TPOT at the target rate (ms)", "ms", "minimize", online_only=True),
    Metric("energy_j", "energy of the window (J)", "J"),
    Metric("elapsed_s", "timed load (s)", "s"),
    Metric("window_s", "metered window (s)", "s"),
    Metric("min_window_s", "shortest window asked for (s)", "s"),
    Metric("batches", "batches in the window", "batches"),
    Metric("output_tokens", "output tokens", "tokens"),
    Metric("prompt_tokens", "prompt tokens", "tokens"),
    Metric("num_requests", "requests", "requests"),
]}

#: Metrics a config may name as objectives, with the direction each must have.
OBJECTIVES = {name: m for name, m in METRICS.items() if m.direction}

#: Columns every observation row has (NaN where a run did not measure them).
METRIC_COLUMNS = ["output_tokens_per_s", "total_tokens_per_s", "requests_per_s", "joules_per_output_token",
                  "joules_per_token", "energy_j", "elapsed_s", "output_tokens", "prompt_tokens", "num_requests",
                  "window_s", "batches", "min_window_s"]
#: Online (serving) mode only; NaN for offline rows. Latencies in ms over the successful requests of the headline
#: rate; goodput in requests/s meeting every SLO.
LATENCY_COLUMNS = [f"{m}_ms_{p}" for m in ("ttft", "tpot", "itl", "e2el") for p in ("p50", "p90", "p99", "mean")]
#: With ``benchmark.online.capacity``: the capacity, the bracket's upper end (NaN while no rate failed) and the first
#: target rate's figures (NaN where it missed the SLOs).
CAPACITY_COLUMNS = ["capacity_requests_per_s", "capacity_output_tokens_per_s",
                    "capacity_output_tokens_per_s_per_device", "joules_per_output_token_at_capacity",
                    "capacity_bracket_high_per_s", "joules_per_output_token_at_target", "ttft_ms_p99_at_target",
                    "tpot_ms_p99_at_target"]
ONLINE_COLUMNS = ["request_rate", "goodput", "goodput_fraction", "failed_requests", *LATENCY_COLUMNS,
                  "energy_window_s", "mean_power_w", *CAPACITY_COLUMNS]


def metric_label(metric: str) -> str:
    """Axis and table label of a metric (its name when the catalogue does not know it)."""
    return METRICS[metric].label if metric in METRICS else metric


def machine_label(machine: dict) -> str:
    """A :attr:`Record.machine` as text: the host, and the first group of each GPU's UUID (``vm (GPU 82459392)``)."""
    gpus = [u.split("-")[1] if "-" in u else u for u in machine.get("gpu_uuids") or []]
    host = machine.get("hostname") or "unknown host"
    return f"{host} (GPU {', '.join(gpus)})" if gpus else host


def provenance_summary(provenances: Iterable[str]) -> str:
    """One word for several figures' provenance: ``measured``, ``estimated``, ``partly estimated`` (some of
    each), or ``unavailable`` (none)."""
    seen = {p for p in provenances if p}
    if ESTIMATED in seen:
        return ESTIMATED if seen == {ESTIMATED} else "partly estimated"
    return MEASURED if seen else "unavailable"


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class EnergySource:
    """Joules one source (``gpu``, ``cpu``, ``ram``) used in the window, and how the figure was obtained."""

    source: str
    joules: float
    provenance: str
    method: str = ""
    detail: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> EnergySource:
        return cls(d["source"], float(d["joules"]), d.get("provenance", ""), d.get("method", ""),
                   d.get("detail") or {})


@dataclass(frozen=True)
class Energy:
    """The energy of a measured window: total, per source, and whether an idle baseline was subtracted."""

    total_j: float
    sources: tuple[EnergySource, ...]
    idle_subtracted: bool = False
    gross_total_j: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> Energy | None:
        if not d:
            return None
        return cls(float(d.get("total_j", math.nan)), tuple(EnergySource.from_dict(s) for s in d.get("sources", [])),
                   bool(d.get("idle_subtracted", False)), d.get("gross_total_j"))

    @property
    def provenance(self) -> str:
        return provenance_summary(s.provenance for s in self.sources)

    def source(self, name: str) -> EnergySource | None:
        return next((s for s in self.sources if s.source == name), None)

    @property
    def label(self) -> str:
        """``gpu:measured cpu:estimated ram:estimated``: the provenance of every source."""
        return " ".join(f"{s.source}:{s.provenance}" for s in self.sources)


@dataclass(frozen=True)
class Failure:
    """Why a benchmark produced no measurement: kind (``exception``, ``oom``, ``timeout``, ``setup``, ...)."""

    kind: str
    reason: str
    returncode: int | None = None
    log_tail: str = ""

    @classmethod
    def from_dict(cls, d: dict | None) -> Failure | None:
        if not d:
            return None
        return cls(d.get("kind", ""), d.get("reason", ""), d.get("returncode"), d.get("log_tail", ""))


@dataclass(frozen=True)
class Record:
    """One benchmark of one candidate configuration (a ``metrics.json``)."""

    run: str
    iteration: int
    candidate: str
    config: dict
    status: str
    mode: str = "offline"
    device: str | None = None
    devices_used: int | None = None
    engine_args: dict = field(default_factory=dict)
    resolved_engine_args: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    energy: Energy | None = None
    failure: Failure | None = None
    timing: dict = field(default_factory=dict)
    hardware: dict = field(default_factory=dict)
    software: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    model: str | None = None
    gpus_pinned: list = field(default_factory=list)
    gpus_metered: list = field(default_factory=list)
    power_timeline: PowerTimeline | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        return cls(
            run=d.get("run", ""), iteration=int(d.get("iteration", 0)), candidate=d["candidate"],
            config=dict(d.get("config") or {}), status=d["status"], mode=d.get("mode") or "offline",
            device=d.get("device"), devices_used=d.get("devices_used"), engine_args=dict(d.get("engine_args") or {}),
            resolved_engine_args=dict(d.get("resolved_engine_args") or {}), metrics=dict(d.get("metrics") or {}),
            energy=Energy.from_dict(d.get("energy")), failure=Failure.from_dict(d.get("failure")),
            timing=dict(d.get("timing") or {}), hardware=dict(d.get("hardware") or {}),
            software=dict(d.get("software") or {}), workload=dict(d.get("workload") or {}), model=d.get("model"),
            gpus_pinned=list(d.get("gpus_pinned") or []), gpus_metered=list(d.get("gpus_metered") or []),
            power_timeline=PowerTimeline.from_dict(d.get("power_timeline")),
            schema_version=int(d.get("schema_version", 1)),
        )

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def feasible(self) -> bool:
        """Ran, and met its SLOs where they are constraints: a point a front may hold."""
        return self.ok and not (self.metrics.get("slo_as_constraint") and self.metrics.get("slo_met") is False)

    @property
    def is_vllm_default(self) -> bool:
        return self.candidate == VLLM_DEFAULT

    @property
    def key(self) -> tuple[int, str]:
        return self.iteration, self.candidate

    def metric(self, name: str) -> float:
        value = self.metrics.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    @property
    def machine(self) -> dict:
        """Which hardware measured this: the host and the UUIDs of the GPUs metered (none on the CPU build), from
        the hardware description or, in files that lack them there, the GPU energy reading."""
        gpus = self.hardware.get("gpus") or []
        if not any(g.get("uuid") for g in gpus) and self.energy and self.energy.source("gpu"):
            gpus = self.energy.source("gpu").detail.get("gpus") or []
        return {"hostname": self.hardware.get("hostname"), "gpu_uuids": sorted(g["uuid"] for g in gpus if g.get("uuid"))}

    def engine_arg(self, name: str) -> Any:
        """What vLLM resolved for an engine argument, else what was passed, else None."""
        return self.resolved_engine_args.get(name, self.engine_args.get(name))

    @property
    def evaluation_energy_j(self) -> float:
        """:func:`evaluation_energy_j` of this record; the window is the energy window of online mode, else the
        timed generate call."""
        window = self.metrics.get("energy_window_s", self.metrics.get("elapsed_s"))
        return evaluation_energy_j(self.metrics.get("energy_j"), window, self.timing.get("wall_s"))


def evaluation_energy_j(energy_j: float | None, window_s: float | None, wall_s: float | None) -> float:
    """What one evaluation itself cost in joules, ESTIMATED: the measured window's mean power (``energy_j`` over
    ``window_s``) times the evaluation's whole wall time (engine start-up, warm-up, measured window, shutdown).
    Start-up draws less than a loaded window, so this overstates it somewhat; it is the search-energy axis of the
    optimiser benchmark and the cost that energy-aware acquisition divides by. NaN when the evaluation measured no
    energy (a failure): callers fill that with a model of their own."""
    try:
        energy_j, window_s, wall_s = float(energy_j), float(window_s), float(wall_s)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(energy_j) and math.isfinite(window_s) and math.isfinite(wall_s)) or window_s <= 0:
        return math.nan
    return energy_j / window_s * max(wall_s, window_s)


def as_record(record: Record | dict) -> Record:
    return record if isinstance(record, Record) else Record.from_dict(record)


def load_record(path: Path | str) -> Record:
    with open(path) as fh:
        return Record.from_dict(json.load(fh))


def load_records(paths: Iterable[Path | str]) -> list[Record]:
    """The records of a run, in the order given."""
    return [load_record(p) for p in paths]


def record_index(records: Iterable[Record]) -> dict[tuple[int, str], Record]:
    """(iteration, candidate) -> record."""
    return {r.key: r for r in records}


# ------------------------------------------------------------------------------------------ observation rows


def observation_row(record: Record | dict, space_keys: list[str]) -> dict:
    """One row of ``observations.csv``: the knobs, every metric column (NaN where absent), energy per source with
    its provenance, timing and platform."""
    r = as_record(record)
    nan = math.nan
    row = {"iteration": r.iteration, "candidate": r.candidate, "status": r.status,
           "failure_kind": r.failure.kind if r.failure else "", "failure_reason": r.failure.reason if r.failure else ""}
    for key in space_keys:
        row[key] = r.config.get(key, r.resolved_engine_args.get(key))
    row["is_vllm_default"] = r.is_vllm_default
    for col in METRIC_COLUMNS:
        row[col] = r.metrics.get(col, nan)
    row["mode"] = r.mode
    for col in ONLINE_COLUMNS:
        value = r.metrics.get(col)
        value = nan if value is None else value  # null: not known (e.g. no rate failed in a capacity search)
        row[col] = float(value) if col == "request_rate" else value  # "inf" -> inf
    row["slo_met"] = r.metrics.get("slo_met", nan) if r.ok else nan
    row["slo_violations"] = "; ".join(r.metrics.get("slo_violations") or [])
    row["feasible"] = r.feasible
    row["energy_idle_subtracted"] = bool(r.energy and r.energy.idle_subtracted)
    for src in SOURCES:
        entry = r.energy.source(src) if r.energy else None
        row[f"energy_{src}_j"] = entry.joules if entry else nan
        row[f"energy_{src}_provenance"] = entry.provenance if entry else ""
    row["energy_provenance"] = r.energy.label if r.energy else ""
    row["engine_init_s"] = r.timing.get("engine_init_s", nan)
    row["wall_s"] = r.timing.get("wall_s", nan)
    row["device"] = r.device
    row["devices_used"] = r.devices_used
    machine = r.machine
    row["hostname"] = machine["hostname"]
    row["gpu_uuids"] = " ".join(machine["gpu_uuids"])
    row["vllm_version"] = r.software.get("vllm")
    return row
