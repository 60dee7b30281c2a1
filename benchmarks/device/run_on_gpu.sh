#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool), from the repository root, after vLLM is installed there
# (../shared/device/README.md). Installs the pipeline's own missing dependencies from carried wheels (.wa, .wb),
# then runs what is asked: nvml | offline CONFIG | online CONFIG. Results and logs go to $OUT as they come.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0
export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for d in .wa .wb; do
  [ -d "$d" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$d"/*.whl
done
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
what=$1; shift
case "$what" in
  nvml)
    python3 benchmarks/device/nvml_meter_check.py "$OUT/nvml_check.json" ;;
  pipeline)
    cfg=$1; work=/tmp/work-$(basename "$cfg" .yaml); mkdir -p "$work"; cp "$cfg" "$work/config.yaml"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv"
    python3 -m snakemake -s "$PWD/Snakefile" --profile "$PWD/profiles/default" --directory "$work" \
      --cores all --resources gpu=$(nvidia-smi -L | wc -l) 2>&1 | tee "$OUT/snakemake-$(basename "$cfg" .yaml).log"
    (cd "$work" && tar czf "$OUT/results-$(basename "$cfg" .yaml).tgz" results logs) ;;
esac
