#!/usr/bin/env bash
# One full round on the GPU machine: every test (WANRT_REQUIRE_GPU=1), compute-sanitizer memcheck on
# the GPU tests, microbenchmarks and the transformer forward vs diffusers. Writes few files to OUT
# (the device tool brings back at most 8): summary.txt, failures.txt, bench.jsonl, bench.md.
#   scripts/gpu-round.sh OUT [tests|sanitize|racecheck|micro|forward|offload|onef|compare|encoders|encparity|vae|vaedecode|vaeparity|pipeline]...
set -uo pipefail
cd "$(dirname "$0")/.."
out="$1"; shift
steps="${*:-tests sanitize micro forward}"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -f gpu-bundle/gpu-bundle.tar.xz ] && [ ! -d gpu-bundle/tests ] && tar -C gpu-bundle -xJf gpu-bundle/gpu-bundle.tar.xz
mkdir -p "$out/logs"; : > "$out/summary.txt"; : > "$out/failures.txt"; : > "$out/bench.jsonl"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$out/summary.txt"
collect_failures() { # $1: log dir
    for log in "$1"/*.log; do
        if grep -qE "FAILED|panicked|ERROR SUMMARY: [1-9]|error:" "$log"; then
            { echo "=== $log"; grep -E -B2 -A12 "panicked|ERROR SUMMARY|Invalid|error:" "$log" | head -80; } >> "$out/failures.txt"
        fi
    done
}
# The carried wheels (diffusers and what it needs beyond the machine's torch) into /tmp/site, which the
# diffusers steps put on PYTHONPATH (a bare `pip install` lands where python3 does not import from).
install_wheels() {
    if [ -d .whl ]; then python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null; fi
}
for s in $steps; do case "$s" in
tests)
    ./scripts/gpu-run.sh "$out/logs/tests" > /dev/null; cat "$out/logs/tests/summary.txt" >> "$out/summary.txt"
    collect_failures "$out/logs/tests" ;;
racecheck)
    # Issue 7: racecheck and synccheck on the streamed modes. cuBLAS's tensor-core kernels confuse
    # racecheck, so its GEMMs run SIMT here (WANRT_GEMM_SIMT=1) and attention takes the mma.sync path.
    # racecheck runs one `wan forward` per streamed mode on the fixtures (the whole offload test
    # binaries do not finish under racecheck in minutes); synccheck runs the offload tests.
    san="/usr/local/cuda/bin/compute-sanitizer --error-exitcode 99 --print-limit 20 --report-api-errors no"
    export WANRT_GEMM_SIMT=1 WANRT_ATTN_WGMMA=0 WANRT_REQUIRE_GPU=1 WANRT_REPO_ROOT="$PWD"
    for run in "t2v leaf" "i2v leaf" "t2v block:1" "i2v block:2"; do
        set -- $run; d=tests/fixtures/transformer_$1
        timeout 120 $san --tool racecheck gpu-bundle/bin/wan forward --model $d --inputs $d/inputs.safetensors \
            --out /tmp/race.safetensors --offload $2 --vram 64MiB > "$out/logs/race-$1-${2/:/}.log" 2>&1
        echo "racecheck wan forward $1 --offload $2 rc=$? $(grep -E 'RACECHECK SUMMARY|offload plan' "$out/logs/race-$1-${2/:/}.log" | tr '\n' ' ')" >> "$out/summary.txt"
    done
    timeout 120 $san --tool racecheck gpu-bundle/tests/gpu_gemm --test-threads=1 > "$out/logs/gemm-racecheck.log" 2>&1
    echo "racecheck gpu_gemm rc=$? $(grep -E 'RACECHECK SUMMARY|^test result' "$out/logs/gemm-racecheck.log" | tr '\n' ' ')" >> "$out/summary.txt"
    for t in gpu_offload gpu_transformer_offload; do
        timeout 120 $san --tool synccheck gpu-bundle/tests/$t --test-threads=1 > "$out/logs/$t-synccheck.log" 2>&1
        echo "synccheck $t rc=$? $(grep -E 'ERROR SUMMARY|^test result' "$out/logs/$t-synccheck.log" | tr '\n' ' ')" >> "$out/summary.txt"
    done
    unset WANRT_GEMM_SIMT WANRT_ATTN_WGMMA
    # The wgmma attention kernel on its own tests (tensor-core code of ours, not cuBLAS's).
    timeout 150 $san --tool racecheck gpu-bundle/tests/gpu_attention_hopper --test-threads=1 > "$out/logs/hopper-racecheck.log" 2>&1
    echo "racecheck gpu_attention_hopper rc=$? $(grep -E 'RACECHECK SUMMARY|^test result' "$out/logs/hopper-racecheck.log" | tr '\n' ' ')" >> "$out/summary.txt" ;;
sanitize)
    ./scripts/gpu-run.sh --sanitize memcheck --only 'gpu_*' "$out/logs/san" > /dev/null
    sed 's/^/memcheck /' "$out/logs/san/summary.txt" >> "$out/summary.txt"; collect_failures "$out/logs/san" ;;
micro)
    gpu-bundle/bin/microbench > "$out/logs/ours.jsonl" 2>> "$out/failures.txt"
    gpu-bundle/bin/attention_bench >> "$out/logs/ours.jsonl" 2>> "$out/failures.txt"
    python3 benches/torch_micro.py > "$out/logs/torch.jsonl" 2>/dev/null
    cat "$out/logs/ours.jsonl" >> "$out/bench.jsonl"; sed 's/"bench"/"impl":"torch","bench"/' "$out/logs/torch.jsonl" >> "$out/bench.jsonl"
    python3 benches/compare.py "$out/logs/ours.jsonl" "$out/logs/torch.jsonl" >> "$out/bench.md" ;;
forward)
    install_wheels
    # Issue 5's grid: 480p at 1, 5 and 21 latent frames, and 720p-81f; ours and diffusers back to back.
    for p in ${WAN_PRESETS:-wan2.1-t2v-1.3b wan2.1-t2v-14b}; do
        for shape in "1 480 832" "17 480 832" "81 480 832" "81 720 1280"; do
            set -- $shape
            gpu-bundle/bin/wan bench --preset "$p" --frames "$1" --height "$2" --width "$3" --offload resident >> "$out/bench.jsonl" 2>> "$out/logs/wan.err" \
                || tail -3 "$out/logs/wan.err" >> "$out/failures.txt"
            PYTHONPATH=/tmp/site python3 benches/diffusers_forward.py "$p" "$1" "$2" "$3" >> "$out/bench.jsonl" 2>> "$out/logs/diffusers.err" \
                || tail -5 "$out/logs/diffusers.err" >> "$out/failures.txt"
        done
    done
    python3 benches/forward_table.py "$out/bench.jsonl" >> "$out/bench.md" ;;
pipeline)
    # Issue 17: the whole T2V pipeline (text encode, PIPE_STEPS CFG steps, VAE decode; the JSON extrapolates to
    # 50 steps), ours and diffusers' back to back: 1.3B resident, 14B inside 12 GiB against diffusers' leaf-level
    # group offloading with a stream, and the pipeline parity tests.
    install_wheels
    WANRT_REQUIRE_GPU=1 WANRT_REPO_ROOT="$PWD" timeout 300 gpu-bundle/tests/gpu_pipeline --test-threads=1 > "$out/logs/gpu_pipeline.log" 2>&1
    echo "gpu_pipeline rc=$? $(grep -E '^test result' "$out/logs/gpu_pipeline.log")" >> "$out/summary.txt"
    grep -E "diffusers bf16 vs fp32" "$out/logs/gpu_pipeline.log" >> "$out/summary.txt"
    for run in "wan2.1-t2v-1.3b resident auto resident" "wan2.1-t2v-14b auto 12GiB leaf-stream"; do
        set -- $run
        gpu-bundle/bin/wan bench --pipeline --preset "$1" --steps "${PIPE_STEPS:-2}" --offload "$2" --vram "$3" >> "$out/bench.jsonl" 2>> "$out/logs/wan-pipeline.err" \
            || tail -3 "$out/logs/wan-pipeline.err" >> "$out/failures.txt"
        PYTHONPATH=/tmp/site python3 benches/diffusers_pipeline.py "$1" 81 480 832 "${PIPE_STEPS:-2}" "$4" >> "$out/bench.jsonl" 2>> "$out/logs/diffusers-pipeline.err" \
            || tail -5 "$out/logs/diffusers-pipeline.err" >> "$out/failures.txt"
    done
    # The I2V pipeline (adds the CLIP image encode and the VAE encode of the condition), 14B at 720p
    # inside 12 GiB; ours only.
    gpu-bundle/bin/wan bench --pipeline --preset wan2.1-i2v-14b-720p --height 720 --width 1280 --steps "${PIPE_STEPS:-2}" --offload auto --vram 12GiB \
        >> "$out/bench.jsonl" 2>> "$out/logs/wan-pipeline.err" || tail -3 "$out/logs/wan-pipeline.err" >> "$out/failures.txt" ;;
offload)
    # Issue 7: ours vs diffusers' group offloading at 1, 5 and 21 latent frames (480p grid).
    # OFFLOAD_MODES ('|'-separated `wan bench` offload options) and DIFFUSERS (all, stream, none) trim it.
    install_wheels
    IFS='|' read -ra modes <<< "${OFFLOAD_MODES:-resident|block:1|leaf|block:1 --sync|leaf --sync}"
    for p in ${WAN_PRESETS:-wan2.1-t2v-1.3b wan2.1-t2v-14b}; do
        for f in 1 17 81; do
            for o in "${modes[@]}"; do
                gpu-bundle/bin/wan bench --preset "$p" --frames "$f" --offload $o --vram 200GiB >> "$out/bench.jsonl" 2>> "$out/logs/wan-offload.err" \
                    || tail -3 "$out/logs/wan-offload.err" >> "$out/failures.txt"
            done
        done
        # One model build and offload per diffusers mode, every frame count on it.
        d="${DIFFUSERS:-all}"; [ "$d" = none ] && continue
        only=""; [ "$d" = stream ] && only="3 stream"
        (cd benches && PYTHONPATH=/tmp/site python3 diffusers_offload.py "$p" 1,5,21 $only >> "$out/bench.jsonl" 2>> "$out/logs/diffusers.err") \
            || tail -5 "$out/logs/diffusers.err" >> "$out/failures.txt"
    done
    python3 benches/offload_table.py "$out/bench.jsonl" >> "$out/bench.md" ;;
onef)
    # Issue 7's open point: streamed runs at 1 latent frame (transfer-bound), each config three times on
    # one machine, with sweep_s (the engine's transfer-only pass) beside the time and the floor.
    for p in ${WAN_PRESETS:-wan2.1-t2v-1.3b wan2.1-t2v-14b}; do
        for o in "block:1" "block:1 --ring" "leaf"; do
            for rep in 1 2 3; do
                gpu-bundle/bin/wan bench --preset "$p" --frames 1 --offload $o --vram 200GiB >> "$out/bench.jsonl" 2>> "$out/logs/wan-onef.err" \
                    || tail -3 "$out/logs/wan-onef.err" >> "$out/failures.txt"
            done
        done
    done
    python3 benches/offload_table.py "$out/bench.jsonl" >> "$out/bench.md" ;;
encoders)
    # Issue 15: UMT5-XXL and CLIP ViT-H/14, ours (resident, and UMT5 streamed inside 2 GiB) and
    # transformers', back to back on one machine.
    for run in "umt5-xxl --offload resident --vram auto" "umt5-xxl --vram 2GiB" "clip-vit-h-14 --offload resident --vram auto"; do
        set -- $run
        gpu-bundle/bin/wan bench-encoder --encoder $run >> "$out/bench.jsonl" 2>> "$out/logs/encoders.err" || tail -3 "$out/logs/encoders.err" >> "$out/failures.txt"
    done
    for e in umt5-xxl clip-vit-h-14; do
        python3 benches/encoders_torch.py $e 1 >> "$out/bench.jsonl" 2>> "$out/logs/encoders-torch.err" || tail -5 "$out/logs/encoders-torch.err" >> "$out/failures.txt"
    done
    grep '"encoder"' "$out/bench.jsonl" >> "$out/bench.md" ;;
encparity)
    # Issue 15: full-size UMT5-XXL and CLIP ViT-H/14 saved by transformers, through `wan encode`.
    python3 tools/parity/encoders_full_size.py /tmp/wan-encoders-parity gpu-bundle/bin/wan >> "$out/bench.jsonl" 2>> "$out/logs/encparity.err" \
        || tail -5 "$out/logs/encparity.err" >> "$out/failures.txt"
    grep '"encoder_parity"' "$out/bench.jsonl" >> "$out/bench.md" ;;
vae)
    # Issue 16: the Wan2.1 VAE, ours and diffusers' back to back (synthesized weights, published
    # shapes), 480p-81f and 720p-81f, decode and encode, bf16 and fp32, ours on whole chunks and
    # frame by frame (the two layouts the planner picks between); a 720p-81f decode inside
    # 3 GiB (tiled); the conv kernels per layer shape (conv_bench, cuDNN's side in conv_torch.py).
    install_wheels
    for shape in "81 480 832" "81 720 1280"; do
        set -- $shape
        for op in decode encode; do
            for p in bf16 fp32; do
                for layout in chunks frames; do
                    gpu-bundle/bin/wan bench-vae --op $op --frames $1 --height $2 --width $3 --precision $p --layout $layout >> "$out/bench.jsonl" 2>> "$out/logs/vae.err" \
                        || tail -3 "$out/logs/vae.err" >> "$out/failures.txt"
                done
                PYTHONPATH=/tmp/site python3 benches/vae_diffusers.py $op $1 $2 $3 $p >> "$out/bench.jsonl" 2>> "$out/logs/vae-diffusers.err" \
                    || tail -5 "$out/logs/vae-diffusers.err" >> "$out/failures.txt"
            done
        done
    done
    gpu-bundle/bin/wan bench-vae --op decode --frames 81 --height 720 --width 1280 --precision bf16 --vram 3GiB >> "$out/bench.jsonl" 2>> "$out/logs/vae.err" \
        || tail -3 "$out/logs/vae.err" >> "$out/failures.txt"
    gpu-bundle/bin/conv_bench > "$out/logs/conv.jsonl" 2>> "$out/logs/vae.err" || tail -3 "$out/logs/vae.err" >> "$out/failures.txt"
    python3 benches/conv_torch.py > "$out/logs/conv-torch.jsonl" 2>> "$out/logs/vae.err"
    cat "$out/logs/conv.jsonl" >> "$out/bench.jsonl"; sed 's/"bench"/"impl":"torch","bench"/' "$out/logs/conv-torch.jsonl" >> "$out/bench.jsonl"
    python3 benches/compare.py "$out/logs/conv.jsonl" "$out/logs/conv-torch.jsonl" >> "$out/bench.md"
    grep '"bench": *"vae"' "$out/bench.jsonl" >> "$out/bench.md" ;;
vaedecode)
    # Issue 16's open target (the bf16 decode within 2x of the FLOP floor at the GEMM rate measured in the
    # same process), in one call of a few minutes: ours and diffusers' bf16 decodes at 480p-81f and
    # 720p-81f back to back, ours once per row-conv tile choice in VAE_TILES (space-separated; `default`:
    # the table's, any other value is set as WANRT_CONV_ROWS_TILE), then conv_bench's 96- and 192-channel
    # layers (every row tile, and `rows+res`: the default tile with the resblock's residual).
    install_wheels
    for shape in "480 832 3" "720 1280 2"; do
        set -- $shape
        for t in ${VAE_TILES:-default}; do
            tile=""; [ "$t" = default ] || tile="WANRT_CONV_ROWS_TILE=$t"
            env $tile gpu-bundle/bin/wan bench-vae --op decode --frames 81 --height "$1" --width "$2" --precision bf16 --layout chunks --iters "$3" \
                2>> "$out/logs/vae.err" | sed "s/^{/{\"row_tiles\":\"$t\",/" >> "$out/bench.jsonl" || tail -3 "$out/logs/vae.err" >> "$out/failures.txt"
        done
        PYTHONPATH=/tmp/site python3 benches/vae_diffusers.py decode 81 "$1" "$2" bf16 "$3" >> "$out/bench.jsonl" 2>> "$out/logs/vae-diffusers.err" \
            || tail -5 "$out/logs/vae-diffusers.err" >> "$out/failures.txt"
    done
    CONV_BENCH_DTYPES=bf16 CONV_BENCH_LAYERS=dec.up3,dec.up2.res192,enc.down0 gpu-bundle/bin/conv_bench > "$out/logs/conv.jsonl" 2>> "$out/logs/vae.err" \
        || tail -3 "$out/logs/vae.err" >> "$out/failures.txt"
    grep '"path":"rows' "$out/logs/conv.jsonl" >> "$out/bench.jsonl"
    grep '"bench": *"vae"' "$out/bench.jsonl" >> "$out/bench.md" ;;
vaeparity)
    # Issue 16: full-size VAE saved by diffusers, read by our loader; 480p-17f bf16 vs diffusers, tiled = untiled.
    install_wheels
    PYTHONPATH=/tmp/site python3 tools/parity/vae_full_size.py /tmp/wan-vae-parity gpu-bundle/bin/wan >> "$out/bench.jsonl" 2>> "$out/logs/vaeparity.err" \
        || tail -5 "$out/logs/vaeparity.err" >> "$out/failures.txt"
    grep '"vae_parity"' "$out/bench.jsonl" >> "$out/bench.md" ;;
compare)
    # Issue 13: `wan bench` of the previous build (BASE_WAN, default .base/wan, carried) and this one
    # at 14B 480p-81f, resident and inside 12 GiB, alternating, REPS rounds, on one machine.
    base="${BASE_WAN:-.base/wan}"
    for rep in $(seq "${REPS:-2}"); do
        for o in "resident --vram auto" "auto --vram 12GiB"; do
            for b in "$base" gpu-bundle/bin/wan; do
                tag=new; [ "$b" = "$base" ] && tag=base
                "$b" bench --preset wan2.1-t2v-14b --frames 81 --offload $o 2>> "$out/logs/compare.err" | sed "s/^{/{\"build\":\"$tag\",/" >> "$out/bench.jsonl" \
                    || tail -3 "$out/logs/compare.err" >> "$out/failures.txt"
            done
        done
    done
    python3 - "$out/bench.jsonl" >> "$out/bench.md" <<'PY'
import json, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    try: r = json.loads(line)
    except ValueError: continue
    if "build" in r: rows[(r["mode"], r["build"])].append(r)
print("| mode | build | s per forward (each run) | peak GiB | setup s |\n|---|---|---|---|---|")
for (mode, build), rs in sorted(rows.items()):
    print(f"| {mode} | {build} | {' '.join(str(r['s']) for r in rs)} | {rs[-1]['peak_gib']} | {' '.join(str(r['setup_s']) for r in rs)} |")
PY
    ;;
esac; done
cat "$out/summary.txt"; cat "$out/bench.md" 2>/dev/null; grep forward "$out/bench.jsonl"
