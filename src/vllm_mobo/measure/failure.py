"""A known way for a benchmark to fail, recorded in its metrics file instead of a crash."""

from __future__ import annotations


class BenchmarkFailure(Exception):
    """A known way for a candidate to fail: ``kind``, a one-line reason, and a log tail."""

    def __init__(self, kind: str, reason: str, log_tail: str = ""):
        super().__init__(reason)
        self.kind, self.reason, self.log_tail = kind, reason, log_tail

    def to_dict(self) -> dict:
        return {"kind": self.kind, "reason": self.reason, "log_tail": self.log_tail}
