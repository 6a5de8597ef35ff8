#!/usr/bin/env bash
# Runs the carried test executables on the GPU machine with WANRT_REQUIRE_GPU=1 (a missing GPU is a
# failure, not a skip), optionally under compute-sanitizer, and prints a summary table.
#   scripts/gpu-run.sh [--sanitize memcheck|racecheck|synccheck] [--only NAME] [LOGDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
tool=""; only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sanitize) tool="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        *) break ;;
    esac
done
logdir="${1:-${OUT:-gpu-logs}}"; mkdir -p "$logdir"
# Kernels not yet verified on a GPU (runtime/settings.rs `unverified`) take part, so their tests cover them.
export WANRT_UNVERIFIED="${WANRT_UNVERIFIED:-1}" WANRT_REQUIRE_GPU=1 WANRT_REPO_ROOT="$PWD" WANRT_WAN_BIN="$PWD/gpu-bundle/bin/wan"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# NCCL for tests/gpu_dist.rs: PyTorch's nvidia-nccl wheel where the system has none.
NCCL_DIR=$(python3 -c 'import nvidia, pathlib; print(next((p.parent for r in nvidia.__path__ for p in pathlib.Path(r).glob("*/lib/libnccl.so.2")), ""))' 2>/dev/null || true)
[ -n "$NCCL_DIR" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$NCCL_DIR"
export WANRT_KERNEL_CACHE="${WANRT_KERNEL_CACHE:-/tmp/wanrt-kernel-cache}"
[ -f gpu-bundle/gpu-bundle.tar.xz ] && [ ! -d gpu-bundle/tests ] && tar -C gpu-bundle -xJf gpu-bundle/gpu-bundle.tar.xz
# API error returns (cuEventQuery NOT_READY, missing-kernel lookups in error-path tests) are checked by
# the code itself; --report-api-errors no keeps them out of the report, memory errors still fail.
san=()
[ -n "$tool" ] && san=(/usr/local/cuda/bin/compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 --report-api-errors no)
# memcheck also tracks stream-ordered allocations against accesses from other streams (the copy stream
# writing pool memory the compute stream allocated), where this sanitizer knows the option.
if [ "$tool" = memcheck ] && /usr/local/cuda/bin/compute-sanitizer --help 2>/dev/null | grep -q -- --track-stream-ordered-races; then
    san+=(--track-stream-ordered-races all)
fi
printf '%-28s %-8s %s\n' "test binary" "status" "summary" > "$logdir/summary.txt"
fail=0
for t in gpu-bundle/tests/*; do
    name=$(basename "$t")
    [ -n "$only" ] && [[ "$name" != $only ]] && continue
    log="$logdir/${name}${tool:+-$tool}.log"
    # A hung test must not eat the whole device call: each binary gets WANRT_TEST_TIMEOUT seconds.
    timeout "${WANRT_TEST_TIMEOUT:-300}" "${san[@]}" "$t" --test-threads=1 > "$log" 2>&1
    rc=$?
    res=$(grep -E '^test result:' "$log" | tail -1)
    status=ok; [ $rc -ne 0 ] && { status="FAIL($rc)"; fail=1; }
    printf '%-28s %-8s %s\n' "$name" "$status" "$res" >> "$logdir/summary.txt"
done
cat "$logdir/summary.txt"
exit $fail
