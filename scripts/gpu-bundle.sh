#!/usr/bin/env bash
# Builds every test executable, the `wan` binary and the benchmarks here, and collects them in
# gpu-bundle/ (ignored by git) to carry to the GPU machine, where scripts/gpu-run.sh runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle/tests gpu-bundle/bin
# Library unit tests and the bin target appear twice in cargo's messages; copies are idempotent.
collect() { # $1: destination folder; reads cargo's JSON messages on stdin
    python3 -c '
import json, shutil, sys, os
dest = sys.argv[1]
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    # With --benches cargo also builds bins and the lib as libtest harnesses (the bin under its own
    # name): bin/ keeps the real programs and the benches, never a bin or lib harness.
    kind = m.get("target", {}).get("kind", [])
    if exe and dest.endswith("bin") and m.get("profile", {}).get("test") and "bench" not in kind:
        continue
    # Integration tests make cargo build the `wan` program too; tests/ keeps only test harnesses.
    if exe and dest.endswith("tests") and not m.get("profile", {}).get("test"):
        continue
    if exe:
        name = m["target"]["name"]
        shutil.copy2(exe, os.path.join(dest, name)); print("  ", dest + "/" + name)
' "$1"
}
echo "test executables:"
cargo test --release --workspace --no-run --message-format=json 2>/dev/null | collect gpu-bundle/tests
echo "binaries and benchmarks:"
cargo build --release --bins --benches --message-format=json 2>/dev/null | collect gpu-bundle/bin
# CPU-only test binaries run in CI and here; the GPU machine gets those that touch a device (gpu_*,
# and cli_* which run the wan program). BUNDLE_ALL=1 keeps every one.
if [ -z "${BUNDLE_ALL:-}" ]; then
    find gpu-bundle/tests -type f ! -name 'gpu_*' ! -name 'cli_*' -delete
fi
# Strip and pack: the device tool carries at most 64 MiB of working tree, fixtures included.
strip --strip-debug gpu-bundle/tests/* gpu-bundle/bin/*
XZ_OPT=-9 tar -C gpu-bundle -cJf gpu-bundle.tar.xz tests bin
rm -rf gpu-bundle/tests gpu-bundle/bin && mv gpu-bundle.tar.xz gpu-bundle/
du -sh gpu-bundle/gpu-bundle.tar.xz
