"""Shared fixtures: the repository, the tiny test config, and a helper that runs the real pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
#: The project's console script, as `pip install` puts it beside the interpreter.
VLLM_MOBO = Path(sys.executable).parent / "vllm-mobo"


@pytest.fixture
def repo() -> Path:
    return REPO


def load_test_config(name: str) -> dict:
    with open(REPO / "tests" / "configs" / name) as fh:
        return yaml.safe_load(fh)


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, *args: str, profile: str | Path | None = "default",
                      snakefile: Path = REPO / "Snakefile") -> list[str]:
    """The pipeline as a user runs it, in ``workdir`` (which holds config.yaml). ``profile``: ``"default"`` (the
    workflow's own profiles/default, applied as Snakemake applies it), None (no workflow profile) or a profile
    directory. Targets go before options that take several values (``--resources``), which would eat them."""
    cmd = [str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir)]
    if profile is None:
        cmd += ["--workflow-profile", "none"]
    elif profile != "default":
        cmd += ["--workflow-profile", str(profile)]
    return cmd + list(args)


def pipeline_environment(extra: dict | None = None) -> dict:
    """The environment a user's shell has after activating the project's venv: its bin first on PATH (the rules
    call jupyter-nbconvert and the worker interpreter from there)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = str(SNAKEMAKE.parent) + os.pathsep + env.get("PATH", "")
    return {**env, **(extra or {})}


def run_snakemake(workdir: Path, *args: str, profile: str | Path | None = "default", snakefile: Path = REPO / "Snakefile",
                  env: dict | None = None, check: bool = True, timeout: float = 900,
                  log: Path | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake (:func:`snakemake_command`) to the end; ``check``: fail the test on a non-zero exit, showing
    the output's tail; ``log``: also keep the command and its output in that file."""
    cmd = snakemake_command(workdir, *args, profile=profile, snakefile=snakefile)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=pipeline_environment(env))
    if log is not None:
        Path(log).write_text(f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def built_pdf_text(tex_source: str, tmp_path: Path) -> str:
    """Build a LaTeX source with latexmk in ``tmp_path`` (``t.tex`` -> ``t.pdf``) and return the PDF's text as
    pdftotext reads it, whitespace collapsed to single spaces."""
    tex = tmp_path / "t.tex"
    tex.write_text(tex_source)
    subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={tmp_path}", str(tex)],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    return " ".join(subprocess.run(["pdftotext", str(tmp_path / "t.pdf"), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())


def pytest_collection_modifyitems(config, items):
    """Engine and SLURM tests take minutes: they are also ``slow`` (``pytest -m "not slow"`` skips them)."""
    for item in items:
        if item.get_closest_marker("engine") or item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def vllm_available() -> bool:
    if shutil.which("python") is None:
        return False
    try:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    except Exception:
        return False
