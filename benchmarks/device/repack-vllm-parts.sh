#!/usr/bin/env bash
# Re-cuts the vLLM wheel parts that ../shared/device/README.md's prepare-vllm.sh writes (.g1-.g4, 40 MiB each) so
# that each install call fits a device call's 64 MiB beside the checkout (tracked files, ~22 MiB with the docs
# folders) and the pipeline's wheel folders of prepare-wheels.sh:
#   call 1: .g1 + .wa     calls 2-4: .g2 .g3 .g4     call 5: .g5 (the rest of vLLM, its small wheels, libdw) + .wb
# Run from the project root after both prepare scripts:  bash benchmarks/device/repack-vllm-parts.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
# Sizes as the device tool counts them: disk blocks (du -k), not bytes.
limit=$((64 * 1024 * 1024 - 1024 * 1024))                     # a call's 64 MiB, less a margin
tree=$(( $(git ls-files -z | xargs -0 du -ck | tail -1 | cut -f1) * 1024 ))
size() { echo $(( $(du -sk "$1" | cut -f1) * 1024 )); }
[ -d .wa ] && [ -d .wb ] || { echo "run benchmarks/device/prepare-wheels.sh first" >&2; exit 1; }
mkdir -p /tmp/repack && rm -f /tmp/repack/*
cat .g?/p_* > /tmp/repack/vllm.whl
total=$(du -b /tmp/repack/vllm.whl | cut -f1)
last=$(ls -d .g? | tail -1)
mv "$last/wheels" /tmp/repack/wheels; mv "$last"/*.deb /tmp/repack/ 2>/dev/null || true
cp "$last/install.sh" /tmp/repack/install.sh
first=$((limit - tree - $(size .wa)))
middle=$((limit - tree))
[ $((first + 3 * middle)) -ge "$total" ] || { echo "the wheel does not fit four calls beside a $tree-byte checkout" >&2; exit 1; }
rm -rf .g1 .g2 .g3 .g4 .g5
python3 - "$total" "$first" "$middle" <<'PY'
import os
import sys
total, first, middle = map(int, sys.argv[1:])
sizes = [first, middle, middle, middle]
with open("/tmp/repack/vllm.whl", "rb") as src:
    for i, n in enumerate(sizes + [total], start=1):
        data = src.read(n)
        os.makedirs(f".g{i}", exist_ok=True)
        with open(f".g{i}/p_{i:02d}", "wb") as out:
            out.write(data)
PY
mv /tmp/repack/wheels .g5/; mv /tmp/repack/*.deb .g5/ 2>/dev/null || true
for i in 1 2 3 4 5; do cp /tmp/repack/install.sh ".g$i/install.sh"; echo 5 > ".g$i/parts.count"; done
grep -qx "/.g5/" .git/info/exclude || echo "/.g5/" >> .git/info/exclude
g5=$(( $(size .g5) + $(size .wb) ))
[ $((tree + g5)) -le "$limit" ] || { echo ".g5 with .wb is $g5 bytes: over a call beside the checkout" >&2; exit 1; }
rm -rf /tmp/repack
du -sk .g? .wa .wb; echo "checkout $tree bytes; calls: [.g1 .wa] [.g2] [.g3] [.g4] [.g5 .wb]"
