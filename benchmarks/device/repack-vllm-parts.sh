#!/usr/bin/env bash
# Re-cuts the vLLM wheel parts that ../shared/device/README.md's prepare-vllm.sh writes (.g1-.g4, 40 MiB each) so
# that each install call fits a device call's 64 MiB beside the checkout (tracked files, ~29 MiB with the docs
# folders) and the pipeline's wheel folders of prepare-wheels.sh, in as few calls as that allows, with 3 MiB left
# for the checkout to grow:
#   call 1: .g1 + .wa     middle calls: .g2 ...     last call: .gN (the rest of vLLM, its small wheels, libdw) + .wb
# or, where .wb does not fit beside the last part's small wheels: call 1: .g1 + .wa + .wb ... last call: .gN.
# Run from the project root after both prepare scripts:  bash benchmarks/device/repack-vllm-parts.sh
# It prints the calls. Nothing is moved or removed until the parts are known to fit.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
# Sizes as the device tool counts them: disk blocks (du -k), not bytes.
limit=$((64 * 1024 * 1024 - 3 * 1024 * 1024))                 # a call's 64 MiB, less room for the checkout to grow
tree=$(( $(git ls-files -z | xargs -0 du -ck | tail -1 | cut -f1) * 1024 ))
size() { echo $(( $(du -sk "$1" | cut -f1) * 1024 )); }
[ -d .wa ] && [ -d .wb ] || { echo "run benchmarks/device/prepare-wheels.sh first" >&2; exit 1; }
mkdir -p /tmp/repack && rm -rf /tmp/repack/*
cat .g?/p_* > /tmp/repack/vllm.whl
total=$(du -b /tmp/repack/vllm.whl | cut -f1)
last=$(ls -d .g? | tail -1)
extras=$(( $(du -sk "$last/wheels" | cut -f1) * 1024 + $(cat "$last"/*.deb 2>/dev/null | wc -c) ))
slack=$((64 * 1024))                                           # a folder's own blocks, install.sh, parts.count
first=$((limit - tree - slack - $(size .wa)))
middle=$((limit - tree - slack))
rest=$((limit - tree - slack - extras - $(size .wb)))          # what the last call holds of the wheel
wb_call=last
if [ "$rest" -le $((4 * 1024 * 1024)) ]; then                  # .wb rides with the first call instead
  wb_call=first; first=$((first - $(size .wb))); rest=$((limit - tree - slack - extras))
fi
sizes=$(python3 - "$total" "$first" "$middle" "$rest" <<'PY'
import math
import sys
total, first, middle, rest = map(int, sys.argv[1:])
if min(first, middle, rest) <= 0:
    sys.exit("a call has no room for a part beside the checkout")
k = max(0, math.ceil((total - first - rest) / middle))           # middle calls
if k + 2 > 9:                                                    # install.sh gathers .g1-.g9
    sys.exit(f"the wheel needs {k + 2} calls beside the checkout; install.sh takes at most 9")
print(" ".join(map(str, [first] + [middle] * k + [total])))      # the last part takes what is left
PY
) || { echo "the wheel does not fit beside a $tree-byte checkout" >&2; exit 1; }
n=$(echo $sizes | wc -w)
mv "$last/wheels" /tmp/repack/wheels; mv "$last"/*.deb /tmp/repack/ 2>/dev/null || true
cp "$last/install.sh" /tmp/repack/install.sh
rm -rf .g?
python3 - $sizes <<'PY'
import os
import sys
with open("/tmp/repack/vllm.whl", "rb") as src:
    for i, n in enumerate(map(int, sys.argv[1:]), start=1):
        os.makedirs(f".g{i}", exist_ok=True)
        with open(f".g{i}/p_{i:02d}", "wb") as out:
            out.write(src.read(n))
PY
mv /tmp/repack/wheels ".g$n/"; mv /tmp/repack/*.deb ".g$n/" 2>/dev/null || true
for i in $(seq 1 "$n"); do cp /tmp/repack/install.sh ".g$i/install.sh"; echo "$n" > ".g$i/parts.count"; done
for i in $(seq 1 "$n"); do grep -qx "/.g$i/" .git/info/exclude || echo "/.g$i/" >> .git/info/exclude; done
if [ "$wb_call" = last ]; then
  gl=$(( $(size ".g$n") + $(size .wb) )); g1=$(( $(size .g1) + $(size .wa) ))
  first_call="[.g1 .wa]"; last_call="[.g$n .wb]"
else
  gl=$(size ".g$n"); g1=$(( $(size .g1) + $(size .wa) + $(size .wb) ))
  first_call="[.g1 .wa .wb]"; last_call="[.g$n]"
fi
for c in "$g1" "$gl"; do
  [ $((tree + c)) -le "$limit" ] || { echo "a call of $c bytes does not fit beside the checkout" >&2; exit 1; }
done
rm -rf /tmp/repack
du -sk .g? .wa .wb
calls="$first_call"; for i in $(seq 2 $((n - 1))); do calls="$calls [.g$i]"; done
echo "checkout $tree bytes; calls: $calls $last_call (run_on_gpu.sh wheels in the call that carries .wb)"
