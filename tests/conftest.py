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


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The pipeline as a user runs it, in ``workdir`` (which holds config.yaml), with the project's default profile."""
    return [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles" / "default"),
            "--directory", str(workdir), *args]


def pipeline_environment() -> dict:
    """The environment a user's shell has after activating the project's venv: its bin first on PATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = str(SNAKEMAKE.parent) + os.pathsep + env.get("PATH", "")
    return env


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, timeout=timeout,
                          env=pipeline_environment())
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def vllm_available() -> bool:
    if shutil.which("python") is None:
        return False
    try:
        import importlib.util

        return importlib.util.find_spec("vllm") is not None
    except Exception:
        return False
