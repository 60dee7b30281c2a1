"""RAPL counters under ``/sys/class/powercap``: package domains and their DRAM subdomains, read with wrap-around.

The top-level package domains ``intel-rapl:N`` are summed (AMD exposes its packages under the same names);
``core``/``uncore`` are nested inside a package and ``psys`` covers the whole platform, so neither is added, which
would count the same joules twice. A counter that wrapped during the window (a negative delta) has its
``max_energy_range_uj`` added. RAPL measures the whole machine, not just the benchmark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_TOP_DOMAIN = re.compile(r"intel-rapl:\d+")
_SUB_DOMAIN = re.compile(r"intel-rapl:\d+:\d+")


class RaplUnreadable(Exception):
    """RAPL cannot be used; the message is the reason, recorded as ``fallback_reason``."""


@dataclass(frozen=True)
class RaplDomain:
    id: str  # directory name, e.g. "intel-rapl:0" or "intel-rapl:0:2"
    name: str  # contents of its ``name`` file, e.g. "package-0" or "dram"
    path: Path


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise RaplUnreadable(f"permission denied reading {path}") from None
    except OSError as exc:
        raise RaplUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None


def read_uj(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise RaplUnreadable(f"unexpected content in {path}: {text[:40]!r}") from None


def _domain_order(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in path.name.split(":")[1:])


def discover_rapl(root: Path) -> tuple[list[RaplDomain], list[RaplDomain]]:
    """The package domains and their DRAM subdomains under ``root``.

    Subdomains are looked for both inside their package's directory and flat under ``root`` (sysfs has both, as
    links to the same directory); ``intel-rapl-mmio:*`` duplicates of the packages do not match the names.
    Raises :class:`RaplUnreadable` when there is no package domain."""
    pattern = f"{root}/intel-rapl:*"
    if not root.is_dir():
        raise RaplUnreadable(f"no {pattern} domains ({root} does not exist)")
    try:
        flat = list(root.iterdir())
        tops = sorted((p for p in flat if _TOP_DOMAIN.fullmatch(p.name)), key=_domain_order)
        if not tops:
            raise RaplUnreadable(f"no {pattern} domains")
        packages, drams, others = [], [], []
        for top in tops:
            name = _read_text(top / "name")
            if not name.startswith("package"):
                others.append(name)  # psys spans the whole platform, packages included
                continue
            packages.append(RaplDomain(top.name, name, top))
            subs = {p.name: p for p in [*flat, *top.iterdir()]
                    if _SUB_DOMAIN.fullmatch(p.name) and p.name.startswith(top.name + ":")}
            for sub in sorted(subs.values(), key=_domain_order):
                if _read_text(sub / "name") == "dram":  # core and uncore are part of the package's count
                    drams.append(RaplDomain(sub.name, "dram", sub))
    except OSError as exc:  # listing a directory failed
        raise RaplUnreadable(f"cannot list {exc.filename or root}: {exc.strerror or exc}") from None
    if not packages:
        raise RaplUnreadable(f"no package domains among {pattern} (found: {', '.join(others)})")
    return packages, drams


class RaplCounters:
    """Energy counters of a set of domains since construction; every domain must be readable at every read.

    ``energy_uj`` wraps to zero after ``max_energy_range_uj``: a negative difference between two reads adds the
    range once, so reads must come more often than one wrap period (minutes to hours, depending on the power
    draw); the power timeline reads every fraction of a second, a window's meter at its start and stop."""

    def __init__(self, domains: list[RaplDomain]):
        self.domains = domains
        self._range_uj = {d.id: read_uj(d.path / "max_energy_range_uj") for d in domains}
        self._last_uj = {d.id: read_uj(d.path / "energy_uj") for d in domains}
        self._total_uj = {d.id: 0 for d in domains}
        self._wrapped = {d.id: False for d in domains}

    def read(self) -> dict[str, int]:
        """Microjoules per domain id since construction."""
        for d in self.domains:
            now = read_uj(d.path / "energy_uj")
            delta = now - self._last_uj[d.id]
            if delta < 0:
                delta += self._range_uj[d.id]
                self._wrapped[d.id] = True
            self._total_uj[d.id] += delta
            self._last_uj[d.id] = now
        return dict(self._total_uj)

    def joules(self) -> float:
        """Joules of all the domains together since construction."""
        return sum(self.read().values()) / 1e6

    def stop(self) -> dict[str, dict]:
        """Per domain id: ``{"name", "joules", "wrapped"}``."""
        totals = self.read()
        return {d.id: {"name": d.name, "joules": totals[d.id] / 1e6, "wrapped": self._wrapped[d.id]}
                for d in self.domains}


@dataclass
class RaplMeter:
    """Counters for one source (packages or DRAM), or the reason there are none; a failed read at ``stop()``
    turns into a reason as well."""

    counters: RaplCounters | None
    reason: str | None = None

    @classmethod
    def open(cls, domains: list[RaplDomain]) -> RaplMeter:
        try:
            return cls(RaplCounters(domains))
        except RaplUnreadable as exc:
            return cls(None, str(exc))

    def stop(self) -> dict[str, dict] | None:
        """Per-domain readings, or None with :attr:`reason` set."""
        if self.counters is None:
            return None
        try:
            return self.counters.stop()
        except RaplUnreadable as exc:
            self.reason = str(exc)
            return None
