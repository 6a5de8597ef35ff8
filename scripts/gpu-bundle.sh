#!/usr/bin/env bash
# Builds every test executable, the `wan` binary and the benchmarks here, and collects them in
# gpu-bundle/ (ignored by git) to carry to the GPU machine, where scripts/gpu-run.sh runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu-bundle && mkdir -p gpu-bundle/tests gpu-bundle/bin
collect() { # $1: destination folder; reads cargo's JSON messages on stdin
    python3 -c '
import json, shutil, sys, os
dest = sys.argv[1]
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    if exe:
        name = m["target"]["name"]
        shutil.copy2(exe, os.path.join(dest, name)); print("  ", dest + "/" + name)
' "$1"
}
echo "test executables:"
cargo test --release --no-run --message-format=json 2>/dev/null | collect gpu-bundle/tests
echo "binaries and benchmarks:"
cargo build --release --bins --benches --message-format=json 2>/dev/null | collect gpu-bundle/bin
du -sh gpu-bundle
