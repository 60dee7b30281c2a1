#!/usr/bin/env bash
# Runs ON the lent GPU machine (device tool), from the repository root, after vLLM is installed there
# (../shared/device/README.md). Installs the pipeline's own missing dependencies from carried wheels (.wa, .wb;
# into /tmp/site, which stays while the machine is warm), then runs what is asked:
#   wheels                       only that install (in the vLLM install calls: `bash .g1/install.sh && bash $0 wheels`)
#   nvml                         the NVML meter check
#   pipeline CONFIG [RESULTS]    the search and its confirmation stage (docs/gpu-runs.md has the device plan)
#   profile CONFIG [RESULTS] [PROFILE_YAML]
#   table CONFIG [TABLE_TGZ]     the in-process table sweep (measure-table)
#   age CONFIG ARGS...           benchmarks/server_age.py (one server's windows over its life)
# Environment: LIMIT (seconds for Snakemake in a pipeline call, default 540: the call's tarball must be written
# inside the device's 10 minutes), SET (a YAML mapping merged into the config, e.g.
# '{optimizer: {budget: 6}, confirm: {max_configs: 1}}'; a later call with a larger budget reopens a search its
# budget had ended). Results and logs go to $OUT as they come.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0
export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
for d in .wa .wb; do
  [ -d "$d" ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$d"/*.whl
done
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
what=$1; shift
merged_config() {  # CONFIG with SET merged into it, on stdout
  python3 -c 'import sys, yaml; sys.path.insert(0, "benchmarks/device"); from restore_search import merge
c = yaml.safe_load(open(sys.argv[1])); print(yaml.safe_dump(merge(c, yaml.safe_load(sys.argv[2]) or {}), sort_keys=False))' \
    "$1" "${SET:-}"
}
case "$what" in
  pipeline|profile|table|age)
    python3 -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("vllm") and u.find_spec("snakemake")))' || {
      echo "vLLM or the pipeline's wheels are not installed on this machine: a bare machine (the device hands back" \
           "one idle for 30 s, and the next call gets a fresh one); run the install calls again (docs/gpu-runs.md)" >&2
      exit 3; } ;;
esac
case "$what" in
  wheels)
    python3 -c 'import snakemake, vllm_mobo; print("snakemake", snakemake.__version__, "and vllm_mobo import")' \
      || echo "the pipeline does not import yet: carry the other wheel folder (.wa, .wb) in the next call" ;;
  nvml)
    python3 benchmarks/device/nvml_meter_check.py "$OUT/nvml_check.json" ;;
  zeus)
    python3 benchmarks/device/zeus_meter_check.py "$OUT" ;;
  table)
    # The table goes on in /tmp/table-<name> (kept while the machine is warm); LIMIT: no engine starts after
    # LIMIT seconds (default 480), so that the call, one engine start later, is inside the device's 10 minutes.
    cfg=$1; name=$(basename "$cfg" .yaml); work=/tmp/table-$name; mkdir -p "$work"
    [ -n "${2:-}" ] && tar xzf "$2" -C "$work"
    merged_config "$cfg" > "$work/config.yaml" || exit 1
    nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv >> "$OUT/gpu.csv"
    python3 -m vllm_mobo.cli measure-table "$work/config.yaml" "$work/$name" --max-engines 1 \
      --repeat-candidates "${REPEAT_CANDIDATES:-0}" --repeats "${REPEATS:-0}" --time-limit-s "${LIMIT:-480}" \
      2>&1 | grep --line-buffered -v " WARNING \| INFO " | tee -a "$OUT/table-$name.log"
    (cd "$work" && tar czf "$OUT/table-$name.tgz" config.yaml "$name") ;;
  age)
    # benchmarks/server_age.py on this GPU: CONFIG (with SET merged), then that script's own arguments
    cfg=$1; shift; mkdir -p /tmp/age
    merged_config "$cfg" > /tmp/age/config.yaml || exit 1
    nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv >> "$OUT/gpu.csv"
    cp /tmp/age/config.yaml "$OUT/server-age-config.yaml"
    python3 benchmarks/server_age.py /tmp/age/config.yaml /tmp/age "$@" --csv "$OUT/server-age.csv" 2>&1 \
      | grep --line-buffered -v " WARNING \| INFO " | tee -a "$OUT/server-age.log" ;;
  pipeline)
    # RESULTS (optional): an unfinished search run elsewhere (a results-<name>.tgz or a flattened docs/gpu copy,
    # with its confirm/ folder), restored into the working directory so that the search, or its confirmation,
    # goes on from where it stopped. Without RESULTS, a /tmp/work-<name> left by an earlier call on this warm
    # machine goes on.
    cfg=$1; work=/tmp/work-$(basename "$cfg" .yaml); mkdir -p "$work"; cp "$cfg" "$work/config.yaml"
    if [ -n "${2:-}" ] || [ -n "${SET:-}" ]; then
      python3 benchmarks/device/restore_search.py "$cfg" "$work" "${2:-}" --resume ${SET:+--set "$SET"} || exit 1
    fi
    echo "config: $cfg ${2:+results: $2 }${SET:+set: $SET}" | tee -a "$OUT/snakemake-$(basename "$cfg" .yaml).log"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv"
    # The notebook and the LaTeX report need Jupyter and TeX, which that machine lacks: they are built here
    # afterwards from the fetched results. LIMIT keeps a call inside the device's 10 minutes; a later call with
    # the same arguments on the still-warm machine resumes the search.
    timeout "${LIMIT:-540}" python3 -m snakemake -s "$PWD/Snakefile" --profile "$PWD/profiles/default" \
      --directory "$work" --cores all --resources gpu=$(nvidia-smi -L | wc -l) benchmark_slots=1 \
      --omit-from analysis_notebook latex_source 2>&1 | tee -a "$OUT/snakemake-$(basename "$cfg" .yaml).log"
    (cd "$work" && tar czf "$OUT/results-$(basename "$cfg" .yaml).tgz" config.yaml results logs) ;;
  profile)
    # Nsight Systems profiles (issue 7) of a finished search: profile CONFIG [RESULTS] [PROFILE_YAML]
    #   RESULTS: a results-<name>.tgz of an earlier `pipeline` call, or a flattened copy as in docs/gpu/<date>-*/;
    #     omitted or "": the /tmp/work-<name> an earlier `pipeline` call left on this (still warm) machine.
    #   PROFILE_YAML: merged into the config's `profile:`, e.g. '{configs: [knee, {tensor_parallel_size: 2}]}'.
    # Only the rules profile and profile_report may run: a plan with any other rule (a benchmark) stops here.
    cfg=$1; name=$(basename "$cfg" .yaml); work=/tmp/work-$name
    python3 benchmarks/device/restore_search.py "$cfg" "$work" "${2:-}" "${3:-}" || exit 1
    run=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["run"])' "$work/config.yaml")
    res=results/$run
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.csv"
    sm=(python3 -m snakemake -s "$PWD/Snakefile" --profile "$PWD/profiles/default" --directory "$work" --cores all
        --resources gpu=$(nvidia-smi -L | wc -l) benchmark_slots=1 --forcerun profile profile_report)
    targets=("$res/profiles/status.csv" "$res/profiles/explanation.txt" "$res/figures/profile_breakdown.png")
    planned=$("${sm[@]}" --dry-run -- "${targets[@]}" 2>&1 | sed -n 's/^\(local\)\{0,1\}rule \([a-z_]*\):.*/\2/p' | sort -u | tr '\n' ' ')
    echo "planned rules: $planned" | tee "$OUT/snakemake-profile-$name.log"
    if [ "$planned" != "profile profile_report " ]; then
      echo "refusing: the plan holds more than profile and profile_report (is the search in $work finished?)" \
        | tee -a "$OUT/snakemake-profile-$name.log"; exit 1
    fi
    "${sm[@]}" -- "${targets[@]}" 2>&1 | tee -a "$OUT/snakemake-profile-$name.log"
    # CSV exports, status, breakdown, figure and logs in one tarball (small); each .nsys-rep as <candidate>.nsys-rep
    (cd "$work" && tar czf "$OUT/profiles-$name.tgz" --exclude='*.nsys-rep' --exclude='*.sqlite' \
      "$res/profiles" "$res"/figures/profile_breakdown.* logs/"$run"/profile*.log)
    for rep in "$work/$res"/profiles/*/profile.nsys-rep; do
      [ -f "$rep" ] && cp "$rep" "$OUT/$(basename "$(dirname "$rep")").nsys-rep"
    done ;;
esac
