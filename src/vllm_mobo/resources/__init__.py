"""Files shipped with the package: the config's JSON schema and the LaTeX templates of the reports."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def resource(name: str) -> Path:
    """The path of a packaged file (``config.schema.yaml``, ``report.tex``, ``optimizer_benchmark.tex``)."""
    with as_file(files(__name__) / name) as path:
        return Path(path)
