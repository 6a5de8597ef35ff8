#!/usr/bin/env bash
# Runs the whole test suite. Without a GPU the GPU tests skip with a printed reason; with
# WANRT_REQUIRE_GPU=1 they fail instead. Kernel compile tests need libnvrtc on LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace "$@"
