#!/usr/bin/env bash
# Prepares the pipeline's own Python dependencies for the lent GPU machine (Python 3.12, torch 2.11.0+cu130, vLLM
# 0.26.0 from ../shared/device/prepare-vllm.sh, no network) as wheel folders that a device call carries and
# run_on_gpu.sh installs with `pip install --no-index --no-deps --target /tmp/site` (ahead of the image on PYTHONPATH).
#   .wa  Snakemake 9.27.1 and its requirements, less those torch, vLLM or the image bring (jinja2, packaging,
#        psutil, pyyaml, requests, pydantic) and less pulp (36 MB of bundled solvers; without it Snakemake warns
#        and uses its greedy scheduler, which is all a one-benchmark-at-a-time pipeline needs).
#   .wb  the package's own small requirements: pymoo and its needs (moocore, cffi, autograd, cma, alive-progress,
#        deprecated), seaborn, tabulate, pygments, nvidia-ml-py, and jsonschema's chain (vLLM requires jsonschema
#        but is installed without its dependencies), and BoTorch's chain (gpytorch, linear_operator,
#        multipledispatch, pyre-extensions, typing-inspect, mypy-extensions) for the default strategy qlognehvi,
#        and Zeus with its small needs (tyro, typeguard, docstring-parser, shtab, amdsmi; the image has the rest).
#   .wc  optional: scipy and its small siblings (threadpoolctl, joblib, cloudpickle, narwhals, dateutil, tzdata).
#   .wd  optional: pandas, scikit-learn, matplotlib (contourpy, kiwisolver, fonttools, cycler, pyparsing).
# .wa and .wb each stay <= 20 MiB: each travels beside a 40 MiB vLLM part and the checkout in a 64 MiB call.
# .wc/.wd are only for an image that lacks that scientific stack (benchmarks/device/probe_imports.py tells);
# run_on_gpu.sh does not install them: `pip install --no-index --no-deps --target /tmp/site .wc/*.whl`.
# Versions are those of the project's .venv, so that the device runs what the tests ran.
# Run from the project root:  bash benchmarks/device/prepare-wheels.sh   (writes .wa .wb .wc .wd, git-ignored)
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
for d in .wa .wb .wc .wd; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
rm -rf .wa .wb .wc .wd
plat=(); for p in manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 \
  manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do plat+=(--platform "$p"); done
get() { local dir=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d "$dir" "$@"; }
get .wa snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0 \
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0 \
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1 argparse-dataclass==2.0.0 \
  conda-inject==1.3.2 configargparse==1.9.0 docutils==0.22.4 dpath==2.2.0 yte==1.9.4 \
  gitpython==3.2.1 gitdb==4.0.12 smmap==5.0.3 humanfriendly==10.0 immutables==0.21 nbformat==5.11.1 \
  fastjsonschema==2.22.3 jupyter-core==5.9.1 traitlets==5.16.1 platformdirs==4.14.9 smart-open==7.7.1 wrapt==2.5.2 \
  sqlmodel==0.0.37 sqlalchemy==2.0.58 greenlet==3.5.6 tenacity==9.2.1 throttler==1.2.3
# connection-pool has no wheel on PyPI, only a pure-Python sdist: built here into one (py3-none-any).
python3 -m pip wheel -q --no-deps -w .wa connection-pool==0.0.3
ls .wa/connection_pool-0.0.3-py3-none-any.whl >/dev/null
get .wb pymoo==0.6.2 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 autograd==1.9.1 cma==4.5.0 alive-progress==3.3.0 \
  about-time==4.2.1 graphemeu==0.7.2 deprecated==1.3.1 seaborn==0.13.2 tabulate==0.10.0 pygments==2.21.0 \
  nvidia-ml-py==13.615.71 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
  rpds-py==2026.9.1 attrs==26.1.0 botorch==0.18.1 gpytorch==1.15.2 linear-operator==0.6.1 multipledispatch==1.0.0 \
  pyre-extensions==0.0.32 typing-inspect==0.9.0 mypy-extensions==1.2.0 \
  zeus==0.16.0 tyro==1.0.17 typeguard==4.6.1 docstring-parser==0.18.0 shtab==1.13.0 amdsmi==7.0.2
get .wc scipy==1.17.1 threadpoolctl==3.8.0 joblib==1.6.0 cloudpickle==3.1.3 narwhals==2.29.0 \
  python-dateutil==4.0.0 tzdata==2026.6
get .wd pandas==3.1.1 scikit-learn==1.9.1 matplotlib==3.11.2 contourpy==1.3.3 kiwisolver==1.5.1 fonttools==4.68.0 \
  cycler==0.12.1 pyparsing==3.3.3
du -sh .wa .wb .wc .wd
for d in .wa .wb; do
  kib=$(du -sk "$d" | cut -f1)
  [ "$kib" -le 20480 ] || { echo "$d is $kib KiB, over 20 MiB: it would not travel beside a vLLM part" >&2; exit 1; }
done
echo "Carry .wa and .wb beside the vLLM parts (one each in two of the install calls), then: bash benchmarks/device/run_on_gpu.sh wheels"
