// Helpers for the op kernels: dtype-pair stamping, the row loop of row-wise kernels, block max.
#pragma once
#include "common.cuh"

// Stamps `M(sa, A, sb, B)` for every (input dtype, output dtype) pair: entry points `{op}_{a}_{b}`.
#define WANRT_FOR_DTYPE_PAIRS(M)                                                        \
    M(f32, F32, f32, F32) M(f32, F32, bf16, BF16) M(f32, F32, f16, F16)                  \
    M(bf16, BF16, f32, F32) M(bf16, BF16, bf16, BF16) M(bf16, BF16, f16, F16)            \
    M(f16, F16, f32, F32) M(f16, F16, bf16, BF16) M(f16, F16, f16, F16)

// Row-wise kernels: one block per row, the grid striding over rows (grids are capped by launchers).
#define ROW_LOOP(row, rows) for (u64 row = blockIdx.x; row < (u64)(rows); row += gridDim.x)

// Max over the block (blockDim.x a multiple of 32, at most 1024). Every thread gets the result.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const int warps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < (unsigned)warps) ? partial[threadIdx.x] : -__int_as_float(0x7f800000);
    if (warp == 0) v = warp_max(v);
    if (threadIdx.x == 0) partial[0] = v;
    __syncthreads();
    return partial[0];
}

// A per-row parameter vector that is either f32 or the activation dtype `X` (norm weights and biases:
// some models keep them in f32 while the activations are bf16). Null means absent.
template <typename X>
__device__ __forceinline__ float load_param(const void* p, bool is_f32, u64 i) {
    return is_f32 ? ((const float*)p)[i] : X::load(((const typename X::storage*)p)[i]);
}
