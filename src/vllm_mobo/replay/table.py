"""Replay of measured tables: the search answered from a table of real benchmark results instead of vLLM.

A replay table is a directory:

- ``table.csv``: one row per configuration of the search space, in the columns of the pipeline's
  ``observations.csv`` (:func:`vllm_mobo.records.observation_row`; an ``iteration`` column, if present, is the
  iteration of the run that measured the row and is ignored). ``status`` is ``ok``, ``failed`` (a measured failure:
  crash, out of memory, timeout; ``failure_kind``/``failure_reason`` say which) or ``invalid`` (excluded by the
  validity rules before running; ``failure_reason`` is the rule's reason). The row ``vllm-default`` is vLLM's own
  default configuration (its knob columns, when filled, are the values vLLM resolved).
- ``repeats.csv`` (optional): the same columns plus ``repeat`` (int): further independent measurements of some
  configurations. They give the noise model: per objective, the pooled standard deviation of the log values of
  the repeats of each candidate (the table's own row counted as one of them).
- ``meta.yaml``: name, description, date, synthetic (true for made-up numbers), hardware (a ``metrics.json``'s
  hardware block, or cpu_model/cpu_cores_usable/gpu_model/gpu_count/driver), software, workload, search_space,
  engine_args, platform (device, num_devices, max_model_len), objectives, measurement (or measurement_method), and
  energy_provenance (measured/estimated per source: a mapping or a list of strings). ``search_space``, ``platform`` and ``objectives`` are
  required: they rebuild the pipeline's search.

:meth:`ReplayTable.record` answers a candidate with a record of the schema of ``metrics.json``
(:func:`vllm_mobo.measure.runner.run_candidate`'s output), which :func:`vllm_mobo.search.optimizer.observations.to_observations` and
:func:`vllm_mobo.search.plan.plan_iteration` consume exactly as real results. Without noise, the values are exactly the
table's; with noise, the objectives get multiplicative lognormal noise of the repeats' standard deviation. Whoever
judges a replayed search judges it on the table's true values (:meth:`ReplayTable.true_values`).

The candidates a replayed search may propose are the table's rows that are not ``invalid``
(:meth:`ReplayTable.candidates`), so a partial table (:func:`vllm_mobo.replay.from_run.table_from_run`) restricts
the search to what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..engine_args import devices_used
from ..records import METRIC_COLUMNS, ONLINE_COLUMNS, VLLM_DEFAULT, candidate_name, provenance_summary
from ..search.optimizer.observations import log_objectives_min, reference_point
from ..search.optimizer.pareto import hypervolume, pareto_mask
from ..search.space import Platform, SearchSpace

STATUSES = ("ok", "failed", "invalid")
REQUIRED_META = ("search_space", "platform", "objectives")
#: Metrics moved together with a throughput objective under noise (one factor), and with an energy objective.
THROUGHPUT_GROUP = ("output_tokens_per_s", "total_tokens_per_s", "requests_per_s", "goodput")
ENERGY_GROUP = ("joules_per_output_token", "joules_per_token", "energy_j")
#: Margin of the judging reference point beyond the true front's nadir, a share of the front's range per log
#: objective. Small: the reference box is then the region the front itself dominates, and a point worse than the
#: front's nadir in any objective scores nothing (the all-rows box gave a few random picks 0.83-0.95). Not zero:
#: each extreme front point, which sets the nadir in one objective, still adds volume (about 1% of the front's)
#: and must be found for a ratio of 1. Ishibuchi et al. 2018 (Evol. Comput. 26(3)) weight extremes like interior
#: points with a margin of 1/H of the range (H the front's divisions): 50% for a 3-point front, lenient again.
FRONT_MARGIN = 0.01
#: Reference points :meth:`ReplayTable.hypervolume_of` knows: the judging one and the lenient one kept beside it.
REFERENCES = ("front", "all_rows")


class ReplayError(ValueError):
    """A replay table that cannot be replayed: missing file or key, inconsistent rows, unknown candidate."""


def read_csv(path: Path) -> pd.DataFrame:
    # floats read back exactly as written: pandas < 3's fast parser can be 1 ulp off; pandas 3 parses exactly
    extra = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    return pd.read_csv(path, **extra)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _py(value):
    """numpy scalars -> Python scalars (records are JSON-like); NaN stays NaN."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _coerce(value, allowed: list):
    """A knob value read from CSV, as the search space spells it (``"True"`` -> True, 4096.0 -> 4096)."""
    if _missing(value):
        return None
    if allowed and all(isinstance(a, bool) for a in allowed):
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "1"):
                return True
            if low in ("false", "0"):
                return False
            raise ReplayError(f"{value!r} is not a boolean")
        return bool(value)
    for a in allowed:
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            try:
                if float(value) == float(a):
                    return a
            except (TypeError, ValueError):
                pass
        elif str(a) == str(value):
            return a
    value = _py(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class ReplayTable:
    """A measured table, loaded (:meth:`load`), answering candidates as the benchmark rule would."""

    path: Path
    meta: dict
    rows: pd.DataFrame  # indexed by candidate
    repeats: pd.DataFrame | None = None
    space: SearchSpace = field(init=False)
    platform: Platform = field(init=False)
    _configs: dict = field(init=False, repr=False)
    _noise_sd: dict = field(init=False, repr=False, default_factory=dict)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        missing = [k for k in REQUIRED_META if not self.meta.get(k)]
        if missing:
            raise ReplayError(f"{self.path}/meta.yaml: missing key(s) {', '.join(missing)}")
        self.space = SearchSpace(self.meta["search_space"])
        p = self.meta["platform"]
        self.platform = Platform(device=p["device"], num_devices=int(p["num_devices"]),
                                 max_model_len=p.get("max_model_len"))
        bad = sorted(set(self.rows["status"]) - set(STATUSES))
        if bad:
            raise ReplayError(f"{self.path}/table.csv: unknown status {bad}; allowed: {', '.join(STATUSES)}")
        self._configs = {}
        for name, row in self.rows.iterrows():
            config = {k: _coerce(row.get(k), v) for k, v in self.space.values.items()}
            if name == VLLM_DEFAULT:
                self._configs[name] = {}
                continue
            if any(v is None for v in config.values()) or candidate_name(config) != name:
                raise ReplayError(f"{self.path}/table.csv: row {name!r} does not match its knob columns "
                                  f"({candidate_name({k: v for k, v in config.items() if v is not None})})")
            self._configs[name] = config

    # --- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | Path) -> ReplayTable:
        directory = Path(directory)
        for f in ("table.csv", "meta.yaml"):
            if not (directory / f).is_file():
                raise ReplayError(f"{directory}: no {f} (a replay table is a directory with table.csv and meta.yaml)")
        meta = yaml.safe_load((directory / "meta.yaml").read_text()) or {}
        rows = read_csv(directory / "table.csv")
        if "candidate" not in rows or "status" not in rows:
            raise ReplayError(f"{directory}/table.csv: needs the columns candidate and status")
        dup = rows["candidate"][rows["candidate"].duplicated()].tolist()
        if dup:
            raise ReplayError(f"{directory}/table.csv: candidates listed twice: {dup[:5]}")
        rows = rows.drop(columns=[c for c in ("iteration",) if c in rows]).set_index("candidate", drop=False)
        repeats = read_csv(directory / "repeats.csv") if (directory / "repeats.csv").is_file() else None
        return cls(path=directory, meta=meta, rows=rows, repeats=repeats)

    # --- what the table holds -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic", False))

    @property
    def objectives(self) -> list[dict]:
        return self.meta["objectives"]

    @property
    def engine_args(self) -> dict:
        return dict(self.meta.get("engine_args") or {})

    def config_of(self, name: str) -> dict:
        """The searched engine arguments of a row ({} for vLLM's default)."""
        try:
            return dict(self._configs[name])
        except KeyError:
            raise ReplayError(f"{name!r} is not a row of replay table {self.name}") from None

    def candidates(self) -> list[str]:
        """The configurations a replayed search may propose: every row that is not ``invalid``, restricted to the
        configurations the validity rules allow on the table's platform (plus vLLM's default)."""
        if "candidates" not in self._cache:
            valid = valid_names(self.space, self.platform, self.engine_args)
            self._cache["candidates"] = [n for n, s in self.rows["status"].items()
                                         if s != "invalid" and (n in valid or n == VLLM_DEFAULT)]
        return list(self._cache["candidates"])

    def valid_size(self) -> int:
        """Valid configurations of the whole space on the table's platform (what a complete table measures)."""
        return len(self.space.split_valid(self.platform, self.engine_args)[0])

    @property
    def partial(self) -> bool:
        """True when some valid configuration of the space has no row (measured ok or failed)."""
        searched = {n for n in self.candidates() if n != VLLM_DEFAULT}
        return len(searched) < self.valid_size()

    def feasible(self) -> pd.DataFrame:
        """Rows that ran and, in online mode with SLOs as constraints, met them: the ones a front may hold."""
        if "feasible" not in self._cache:
            self._cache["feasible"] = self._feasible()
        return self._cache["feasible"].copy()

    def _feasible(self) -> pd.DataFrame:
        ok = self.rows[self.rows["status"] == "ok"]
        if "feasible" in ok:
            ok = ok[ok["feasible"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))]
        names = set(self.candidates())
        return ok[ok["candidate"].isin(names)]

    def true_values(self, name: str, objectives: list[dict] | None = None) -> tuple[float, ...] | None:
        """The table's objective values of a candidate; None when it is not feasible (failed, invalid)."""
        objectives = objectives or self.objectives
        key = ("true_values", tuple(o["metric"] for o in objectives))
        if key not in self._cache:
            feas = self.feasible()
            table = {}
            for n in feas.index:
                values = tuple(float(feas.at[n, o["metric"]]) for o in objectives)
                table[n] = values if all(np.isfinite(v) and v > 0 for v in values) else None
            self._cache[key] = table
        return self._cache[key].get(name)

    def _log_min(self, values: np.ndarray, objectives: list[dict]) -> np.ndarray:
        return log_objectives_min(values, [o["direction"] for o in objectives])

    def reference_point(self, objectives: list[dict] | None = None) -> np.ndarray:
        """One fixed reference point per table, in log-objective (minimisation) space: the nadir of all feasible
        rows + 10% of their range, as :func:`vllm_mobo.report.tables.hypervolume_by_iteration` sets it."""
        objectives = objectives or self.objectives
        feas = self.feasible()
        if feas.empty:
            raise ReplayError(f"replay table {self.name} has no feasible row: no front to judge a search by")
        return reference_point(self._log_min(feas[[o["metric"] for o in objectives]].to_numpy(float), objectives))

    def front_reference_point(self, objectives: list[dict] | None = None, with_default: bool = True,
                              margin: float = FRONT_MARGIN) -> np.ndarray:
        """The judging reference point, in log-objective (minimisation) space, shape ``(m,)``: the nadir of the
        true front (:meth:`true_front`) + ``margin`` x the front's range per objective (where the front is flat in
        an objective, the range of all feasible rows; where that is flat too, 1 log unit). Just beyond the front's
        nadir, so that every front point, the extremes included, adds some volume, while a point worse than the
        front's nadir in any objective adds none (:data:`FRONT_MARGIN` says why 1%)."""
        objectives = objectives or self.objectives
        front = self.true_front(objectives, with_default)
        if front.empty:
            raise ReplayError(f"replay table {self.name} has no feasible row: no front to judge a search by")
        cols = [o["metric"] for o in objectives]
        F = self._log_min(front[cols].to_numpy(float), objectives)
        A = self._log_min(self.feasible()[cols].to_numpy(float), objectives)
        span = np.ptp(F, axis=0)
        span = np.where(span > 0, span, np.ptp(A, axis=0))
        span = np.where(span > 0, span, 1.0)
        return F.max(axis=0) + margin * span

    def true_front(self, objectives: list[dict] | None = None, with_default: bool = True) -> pd.DataFrame:
        """The feasible rows that no other feasible row dominates (log-objective space, as the pipeline).
        ``with_default=False``: the front of the search space's configurations alone (vLLM's default left out)."""
        objectives = objectives or self.objectives
        feas = self.feasible()
        if not with_default:
            feas = feas[feas["candidate"] != VLLM_DEFAULT]
        if feas.empty:
            return feas
        Y = self._log_min(feas[[o["metric"] for o in objectives]].to_numpy(float), objectives)
        return feas[pareto_mask(Y)].copy()

    def hypervolume_of(self, names, objectives: list[dict] | None = None, with_default: bool = True,
                       reference: str = "front") -> float:
        """Hypervolume of the feasible rows among ``names`` (true values); ``with_default=False`` leaves vLLM's
        default out of ``names`` (and of the true front). ``reference``: ``"front"`` (the judging yardstick,
        :meth:`front_reference_point` of the true front with the same ``with_default``) or ``"all_rows"`` (the
        lenient one kept for continuity, :meth:`reference_point`: the nadir of every feasible row + 10%)."""
        if reference not in REFERENCES:
            raise ValueError(f"reference {reference!r}: allowed values {', '.join(REFERENCES)}")
        objectives = objectives or self.objectives
        vals = [v for v in (self.true_values(n, objectives) for n in names if with_default or n != VLLM_DEFAULT)
                if v is not None]
        if not vals:
            return 0.0
        key = (reference, with_default, tuple(o["metric"] for o in objectives))
        if key not in self._cache:
            self._cache[key] = (self.front_reference_point(objectives, with_default) if reference == "front"
                                else self.reference_point(objectives))
        Y = self._log_min(np.array(vals, dtype=float), objectives)
        return hypervolume(Y[pareto_mask(Y)], self._cache[key])

    def true_hypervolume(self, objectives: list[dict] | None = None, with_default: bool = True,
                         reference: str = "front") -> float:
        return self.hypervolume_of(self.true_front(objectives, with_default)["candidate"], objectives, with_default,
                                   reference)

    # --- noise --------------------------------------------------------------------------------------------------
    def noise_sd(self, objectives: list[dict] | None = None) -> dict[str, float]:
        """Per objective metric, the pooled standard deviation of log values across the repeats of a candidate
        (the table's own row and the ``repeats.csv`` rows of it, successful runs only). Raises when the table has
        no repeats."""
        objectives = objectives or self.objectives
        key = tuple(o["metric"] for o in objectives)
        if key in self._noise_sd:
            return dict(self._noise_sd[key])
        if self.repeats is None or self.repeats.empty:
            raise ReplayError(f"replay table {self.name} has no repeats.csv: its noise is unknown "
                              "(replay it without noise, or add repeated measurements)")
        out = {}
        for o in objectives:
            m = o["metric"]
            reps = self.repeats[self.repeats["status"] == "ok"]
            # repeat 0, where present, is the table's own measurement; otherwise the table's row is added
            has_own = set(reps.loc[reps["repeat"] == 0, "candidate"]) if "repeat" in reps else set()
            reps = reps[["candidate", m]]
            base = self.rows[(self.rows["status"] == "ok") & self.rows["candidate"].isin(reps["candidate"])
                             & ~self.rows["candidate"].isin(has_own)]
            both = pd.concat([reps, base[["candidate", m]]], ignore_index=True).dropna()
            both = both[both[m] > 0]
            ss, dof = 0.0, 0
            for _, g in both.groupby("candidate"):
                logs = np.log(g[m].to_numpy(float))
                if len(logs) > 1:
                    ss += float(((logs - logs.mean()) ** 2).sum())
                    dof += len(logs) - 1
            if dof == 0:
                raise ReplayError(f"replay table {self.name}: no candidate measured twice for {m}")
            out[m] = math.sqrt(ss / dof)
        self._noise_sd[key] = out
        return dict(out)

    # --- power model for failures -------------------------------------------------------------------------------
    def median_power_per_device_w(self) -> float:
        """Median over the successful rows of the measured window's mean power per device used (energy_j over
        elapsed_s, divided by devices_used): what a failed evaluation is assumed to draw."""
        ok = self.rows[self.rows["status"] == "ok"]
        window = ok["energy_window_s"].fillna(ok["elapsed_s"]) if "energy_window_s" in ok else ok["elapsed_s"]
        devices = ok["devices_used"] if "devices_used" in ok else pd.Series(1, index=ok.index)
        p = ok["energy_j"] / window / devices.fillna(1).clip(lower=1)
        p = p[np.isfinite(p) & (p > 0)]
        if p.empty:
            raise ReplayError(f"replay table {self.name}: no successful row with energy and time")
        return float(p.median())

    def devices_of(self, name: str) -> int:
        row = self.rows.loc[name]
        d = row.get("devices_used")
        if not _missing(d):
            return int(d)
        return devices_used({**self.engine_args, **self.config_of(name)})

    # --- the answer to a candidate ------------------------------------------------------------------------------
    def record(self, candidate: str, iteration: int, rng: np.random.Generator | None = None,
               noise: bool = False) -> dict:
        """What the benchmark rule would have written for ``candidate`` (a ``metrics.json``-like dict): exactly the
        table's values, or with ``noise`` the objectives times lognormal noise of :meth:`noise_sd` (``rng``)."""
        if candidate not in self.rows.index:
            raise ReplayError(f"{candidate!r} is not a row of replay table {self.name}")
        row = self.rows.loc[candidate]
        status = row["status"]
        config = self.config_of(candidate)
        rec = {
            "schema_version": 1,
            "run": f"replay-{self.name}",
            "iteration": int(iteration),
            "candidate": candidate,
            "config": config,
            "mode": row.get("mode") if isinstance(row.get("mode"), str) else "offline",
            "device": row.get("device") if isinstance(row.get("device"), str) else self.platform.device,
            "devices_used": self.devices_of(candidate),
            "software": {**(self.meta.get("software") or {}),
                         **({"vllm": str(row["vllm_version"])} if not _missing(row.get("vllm_version")) else {})},
            "hardware": dict(self.meta.get("hardware") or {}),
            "status": "ok" if status == "ok" else "failed",
            "failure": None,
            "metrics": None,
            "energy": None,
            "timing": {k: float(row[k]) for k in ("wall_s", "engine_init_s") if k in row and not _missing(row[k])},
            "replay": {"table": self.name, "synthetic": self.synthetic, "status": status, "noise": None},
        }
        if candidate == VLLM_DEFAULT:
            resolved = {k: _coerce(row.get(k), v) for k, v in self.space.values.items()}
            resolved = {k: v for k, v in resolved.items() if v is not None}
            if resolved:
                rec["resolved_engine_args"] = resolved
        if status != "ok":
            kind = row.get("failure_kind")
            rec["failure"] = {"kind": "invalid" if status == "invalid" else (kind if isinstance(kind, str) else ""),
                              "reason": row["failure_reason"] if isinstance(row.get("failure_reason"), str) else ""}
            return rec
        metrics = {}
        for col in [*METRIC_COLUMNS, *ONLINE_COLUMNS]:
            if col in row and not _missing(row[col]):
                metrics[col] = _py(row[col])
        for col in ("slo_met",):
            if col in row and not _missing(row[col]):
                metrics[col] = str(row[col]).strip().lower() in ("true", "1", "1.0")
        if isinstance(row.get("slo_violations"), str) and row["slo_violations"]:
            metrics["slo_violations"] = row["slo_violations"].split("; ")
        if metrics.get("slo_met") is False and "feasible" in row and not _missing(row["feasible"]):
            # SLOs missed: a constraint exactly when the pipeline judged the row infeasible
            metrics["slo_as_constraint"] = str(row["feasible"]).strip().lower() not in ("true", "1", "1.0")
        rec["metrics"] = metrics
        sources = []
        for src in ("gpu", "cpu", "ram"):
            j = row.get(f"energy_{src}_j")
            if not _missing(j):
                prov = row.get(f"energy_{src}_provenance")
                sources.append({"source": src, "joules": float(j), "provenance": prov if isinstance(prov, str) else ""})
        if sources or "energy_j" in metrics:
            rec["energy"] = {"total_j": metrics.get("energy_j"),
                             "provenance": provenance_summary(s["provenance"] for s in sources),
                             "idle_subtracted": str(row.get("energy_idle_subtracted")).lower() in ("true", "1"),
                             "sources": sources}
        if noise:
            self._add_noise(rec, rng)
        return rec

    def _add_noise(self, rec: dict, rng: np.random.Generator | None) -> None:
        if rng is None:
            raise ValueError("noise=True needs an rng (numpy Generator), so that the noise is reproducible")
        sd = self.noise_sd()
        factors = {}
        metrics = rec["metrics"]
        for o in self.objectives:
            m = o["metric"]
            if m not in metrics:
                continue
            f = float(np.exp(rng.normal(0.0, sd[m])))
            factors[m] = f
            if m in THROUGHPUT_GROUP:
                for g in THROUGHPUT_GROUP:
                    if g in metrics:
                        metrics[g] *= f
                if "elapsed_s" in metrics:
                    metrics["elapsed_s"] /= f
            elif m in ENERGY_GROUP:
                for g in ENERGY_GROUP:
                    if g in metrics:
                        metrics[g] *= f
                if rec.get("energy"):
                    rec["energy"]["total_j"] = metrics.get("energy_j")
                    for s in rec["energy"]["sources"]:
                        s["joules"] *= f
            else:
                metrics[m] *= f
        rec["replay"]["noise"] = {"sd_log": sd, "factors": factors}

    # --- the pipeline's config for a replayed search ------------------------------------------------------------
    def pipeline_config(self, optimizer: dict) -> dict:
        """A pipeline config for :func:`vllm_mobo.search.plan.plan_iteration` on this table's space and platform."""
        return {
            "run": f"replay-{self.name}",
            "search_space": self.meta["search_space"],
            "engine_args": self.engine_args,
            "workload": dict(self.meta.get("workload") or {}),
            "benchmark": {"device": self.platform.device, "num_devices": self.platform.num_devices,
                          "mode": self.meta.get("mode", "offline")},
            "objectives": self.objectives,
            "optimizer": dict(optimizer),
        }

    # --- labels -------------------------------------------------------------------------------------------------
    def hardware_label(self) -> str:
        """``2x AMD EPYC cores, no GPU`` / ``1x NVIDIA H100 (driver 570)``: for figure titles and tables."""
        hw = self.meta.get("hardware") or {}
        gpus = hw.get("gpus") or []  # a metrics.json's hardware block
        gpu = hw.get("gpu_model") or (gpus[0].get("name") if gpus and isinstance(gpus[0], dict) else None)
        if gpu:
            driver = hw.get("driver") or (gpus[0].get("driver") if gpus and isinstance(gpus[0], dict) else None)
            label = f"{hw.get('gpu_count') or len(gpus) or 1}x {gpu}"
            return label + (f" (driver {driver})" if driver else "")
        cpu = hw.get("cpu_model") or "CPU"
        cores = hw.get("cpu_cores_usable")
        return f"{cores}-core {cpu}, no GPU" if cores else f"{cpu}, no GPU"

    def software_label(self) -> str:
        sw = self.meta.get("software") or {}
        return f"{sw.get('vllm_distribution', 'vllm')} {sw.get('vllm', '?')}"


def valid_names(space: SearchSpace, platform: Platform, engine_args: dict) -> set[str]:
    """Names of the configurations of ``space`` that the validity rules let run on ``platform``."""
    return {candidate_name(c) for c in space.split_valid(platform, engine_args)[0]}
