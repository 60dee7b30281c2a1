"""A non-editable install (`pip install .`) carries everything the package reads: the schema, the LaTeX
templates, the `vllm-mobo` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_non_editable_install_has_its_resources_and_command(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / "bin" / "vllm-mobo").exists()

    code = (
        "import vllm_mobo, sys; from pathlib import Path\n"
        f"assert Path(vllm_mobo.__file__).is_relative_to({str(target)!r}), vllm_mobo.__file__\n"
        "from vllm_mobo.resources import resource\n"
        "for name in ('config.schema.yaml', 'report.tex', 'optimizer_benchmark.tex'):\n"
        "    assert resource(name).is_file() and resource(name).stat().st_size > 0, name\n"
        "from vllm_mobo.config import load_config\n"
        f"cfg = load_config({str(REPO / 'config.yaml')!r})\n"
        "assert cfg['optimizer']['strategy'] == 'qlognehvi'  # the schema's default, filled in\n"
        "from vllm_mobo.cli import main\n"
        f"sys.exit(main(['export', {str(REPO / 'tests' / 'fixtures' / 'run_tiny' / 'results' / 'tiny')!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("vllm serve ")
