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

// Vectorized paths (`*_v8` entry points): each thread moves packs of 8 consecutive elements with
// 16-byte accesses (one for 16-bit types, two for f32). Memory-bound ops otherwise leave most of the
// bandwidth unused with 2-byte accesses. The launchers pick them only when every pointer is 16-byte
// aligned and the packed axis is a multiple of 8; the math per element is the scalar kernels', so a
// v8 elementwise kernel is bit-identical to its scalar form (row kernels sum in another order).
struct alignas(16) Raw16 {
    u32 w[4];
};
template <typename T>
__device__ __forceinline__ void load8(const typename T::storage* p, float (&f)[8]) {
    if constexpr (sizeof(typename T::storage) == 4) {
        const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
        const Raw16 r = *reinterpret_cast<const Raw16*>(p);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            f[2 * k] = T::load((typename T::storage)(r.w[k] & 0xffffu));
            f[2 * k + 1] = T::load((typename T::storage)(r.w[k] >> 16));
        }
    }
}
template <typename T>
__device__ __forceinline__ void store8(typename T::storage* p, const float (&f)[8]) {
    if constexpr (sizeof(typename T::storage) == 4) {
        float4 a, b;
        a.x = f[0], a.y = f[1], a.z = f[2], a.w = f[3], b.x = f[4], b.y = f[5], b.z = f[6], b.w = f[7];
        reinterpret_cast<float4*>(p)[0] = a;
        reinterpret_cast<float4*>(p)[1] = b;
    } else {
        Raw16 r;
#pragma unroll
        for (int k = 0; k < 4; ++k)
            r.w[k] = (u32)(u16)T::store(f[2 * k]) | ((u32)(u16)T::store(f[2 * k + 1]) << 16);
        *reinterpret_cast<Raw16*>(p) = r;
    }
}
// Eight f32 values (16-byte aligned).
__device__ __forceinline__ void load8_f32(const float* p, float (&f)[8]) { load8<F32>(p, f); }
// Eight per-channel parameters that are f32 or X (see load_param).
template <typename X>
__device__ __forceinline__ void load8_param(const void* p, bool is_f32, u64 i, float (&f)[8]) {
    if (is_f32) load8<F32>((const float*)p + i, f);
    else load8<X>((const typename X::storage*)p + i, f);
}

// Packed row kernels: one block per row, thread t holds channels [8t, 8t + 8) (`live` when c = 8t < d;
// the others hold zeros and only take part in the block sums).
template <typename X>
__device__ __forceinline__ void load_row_pack(const typename X::storage* x, u64 row, u64 d, u64 c, bool live,
                                              float (&v)[8]) {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = 0.f;
    if (live) load8<X>(x + row * d + c, v);
}

// LayerNorm statistics of a packed row: the mean, then the mean of squared deviations (biased), in f32.
__device__ __forceinline__ void row_mean_rstd_v8(const float (&v)[8], bool live, u64 d, float eps, float& mean,
                                                 float& rstd) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) s += v[k];
    mean = block_sum(s) / (float)d;
    float q = 0.f;
    if (live) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float t = v[k] - mean;
            q += t * t;
        }
    }
    rstd = rsqrtf(block_sum(q) / (float)d + eps);
}

// RMSNorm of a packed row in place: v * rsqrt(mean(v^2) + eps) [* w], f32, not rounded. norm.cu's
// rms_norm_v8 and rope.cu's rms_norm_rope_v8 share it, so the fused kernel equals the standalone norm
// bit for bit. `w` is f32 or X (`w_f32`), may be null.
template <typename X>
__device__ __forceinline__ void rms_normalize_v8(float (&v)[8], bool live, u64 d, u64 c, const void* w, bool w_f32,
                                                 float eps) {
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) q += v[k] * v[k];
    const float r = rsqrtf(block_sum(q) / (float)d + eps);
    if (!live) return;
    float wv[8];
    if (w) load8_param<X>(w, w_f32, c, wv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        v[k] *= r;
        if (w) v[k] *= wv[k];
    }
}
