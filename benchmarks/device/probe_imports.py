"""Lists, one line each, whether every module the pipeline imports on the GPU machine is importable there.

Run on the device from the repository root (python3 benchmarks/device/probe_imports.py). Like run_on_gpu.sh it puts
/tmp/site (the carried wheels of .wa/.wb/.wc/.wd, once installed) and src/ ahead of the image's packages, and says
for each module where it was found: `site` (/tmp/site, carried) or `image`. A MISSING line names the folder that
carries it (benchmarks/device/prepare-wheels.sh). Always exits 0: it only reports.
"""

import importlib
import importlib.metadata
import os
import sys
import time

SITE = "/tmp/site"
# module, distribution (for the version), wheel folder carrying it ("image" where none does)
MODULES = [
    ("snakemake", "snakemake", ".wa"),
    ("snakemake.cli", "snakemake", ".wa"),
    ("sqlalchemy", "sqlalchemy", ".wa"),
    ("nbformat", "nbformat", ".wa"),
    ("pulp", "pulp", "none: optional, Snakemake's ILP scheduler; without it the greedy one"),
    ("numpy", "numpy", "image"),
    ("scipy", "scipy", ".wc"),
    ("pandas", "pandas", ".wd"),
    ("sklearn", "scikit-learn", ".wd"),
    ("matplotlib", "matplotlib", ".wd"),
    ("threadpoolctl", "threadpoolctl", ".wc"),
    ("dateutil", "python-dateutil", ".wc"),
    ("pymoo", "pymoo", ".wb"),
    ("moocore", "moocore", ".wb"),
    ("seaborn", "seaborn", ".wb"),
    ("jsonschema", "jsonschema", ".wb"),
    ("tabulate", "tabulate", ".wb"),
    ("pygments", "pygments", ".wb"),
    ("pynvml", "nvidia-ml-py", ".wb"),
    ("yaml", "pyyaml", "image"),
    ("jinja2", "jinja2", "image (torch)"),
    ("psutil", "psutil", "image"),
    ("requests", "requests", "image"),
    ("packaging", "packaging", "image"),
    ("pydantic", "pydantic", ".g4 (vLLM's)"),
    ("PIL", "pillow", "image"),
]
PROJECT = ["vllm_mobo.search.plan", "vllm_mobo.report.plots", "vllm_mobo.confirm.summary"]


def origin(module):
    path = getattr(module, "__file__", None) or ""
    return "site" if path.startswith(SITE + "/") else "image"


def version(module, dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "?"))


def main():
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
    for path in (os.path.normpath(src), SITE):
        if os.path.isdir(path) and path not in sys.path:
            sys.path.insert(0, path)
    print(f"python {sys.version.split()[0]} at {sys.executable}; {SITE} {'present' if os.path.isdir(SITE) else 'absent'}")
    for name, dist, carrier in MODULES + [(p, "vllm-mobo", "src/") for p in PROJECT]:
        start = time.monotonic()
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is what is reported
            print(f"MISSING {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                  f"[carried by {carrier}]", flush=True)
            continue
        ver, where = ("-", "src") if dist == "vllm-mobo" else (version(module, dist), origin(module))
        print(f"OK {name} {ver} ({where}, {time.monotonic() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
