// Adaptive-norm modulation with per-sample f32 vectors: LayerNorm-modulate and the gated residual.
// A per-sample vector `v` of sample `b` is `v + b * v_stride` (f32, unit stride along D): the
// launchers pass slices of a [B, k, D] modulation tensor without copying them, stride 0 broadcasts.
#include "ops.cuh"

// out = LN_noaffine(x) * (1 + scale) + shift, x: [B, N, D] as rows = B*N; all f32, one rounding.
template <typename X, typename O>
__device__ void ln_modulate(const typename X::storage* x, const float* scale, u64 scale_stride, const float* shift,
                            u64 shift_stride, typename O::storage* out, u64 rows, u64 n, u64 d, float eps) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
        const u64 b = row / n;
        const float* sc = scale + b * scale_stride;
        const float* sh = shift + b * shift_stride;
        float s = 0.f;
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) s += X::load(xr[i]);
        const float mean = block_sum(s) / (float)d;
        float q = 0.f;
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            const float t = X::load(xr[i]) - mean;
            q += t * t;
        }
        const float rstd = rsqrtf(block_sum(q) / (float)d + eps);
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            const float y = (X::load(xr[i]) - mean) * rstd;
            // Rounded step by step (no FMA contraction) like torch's separate tensor ops.
            orow[i] = O::store(__fadd_rn(__fmul_rn(y, 1.f + sc[i]), sh[i]));
        }
    }
}

// out = f32(x) + f32(y) * gate, x and y: [B, N, D] (numel = B*N*D), one rounding. `out` may be `x`.
template <typename X, typename O>
__device__ void gated_residual(const typename X::storage* x, const typename X::storage* y, const float* gate,
                               u64 gate_stride, typename O::storage* out, u64 numel, u64 nd, u64 d) {
    GRID_STRIDE(i, numel) {
        const float g = gate[(i / nd) * gate_stride + i % d];
        out[i] = O::store(__fadd_rn(X::load(x[i]), __fmul_rn(X::load(y[i]), g)));  // torch: mul, then add
    }
}

#define MODULATE(sx, X, so, O)                                                                               \
    extern "C" __global__ void ln_modulate_##sx##_##so(const X::storage* x, const float* scale, u64 scale_stride, \
                                                       const float* shift, u64 shift_stride, O::storage* out,    \
                                                       u64 rows, u64 n, u64 d, float eps) {                       \
        ln_modulate<X, O>(x, scale, scale_stride, shift, shift_stride, out, rows, n, d, eps);                     \
    }                                                                                                             \
    extern "C" __global__ void gated_residual_##sx##_##so(const X::storage* x, const X::storage* y,              \
                                                          const float* gate, u64 gate_stride, O::storage* out,    \
                                                          u64 numel, u64 nd, u64 d) {                             \
        gated_residual<X, O>(x, y, gate, gate_stride, out, numel, nd, d);                                         \
    }
WANRT_FOR_DTYPE_PAIRS(MODULATE)

// ln_modulate on packs: one block per row, thread t holds channels [8t, 8t + 8) in registers (the row is
// read once), blockDim.x = d/8 rounded up to a warp multiple. Same formula; the statistics sum in
// another order than ln_modulate's strided loop.
template <typename X, typename O>
__device__ void ln_modulate_v8(const typename X::storage* x, const float* scale, u64 scale_stride,
                               const float* shift, u64 shift_stride, typename O::storage* out, u64 rows, u64 n,
                               u64 d, float eps) {
    const u64 c = 8 * (u64)threadIdx.x;
    const bool live = c < d;
    ROW_LOOP(row, rows) {
        float v[8], mean, rstd;
        load_row_pack<X>(x, row, d, c, live, v);
        row_mean_rstd_v8(v, live, d, eps, mean, rstd);
        if (live) {
            const u64 b = row / n;
            float sc[8], sh[8];
            load8_f32(scale + b * scale_stride + c, sc);
            load8_f32(shift + b * shift_stride + c, sh);
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = __fadd_rn(__fmul_rn((v[k] - mean) * rstd, 1.f + sc[k]), sh[k]);
            store8<O>(out + row * d + c, v);
        }
    }
}

// gated_residual on packs of 8 channels (d % 8 == 0): `packs` = numel / 8. Bit-identical.
template <typename X, typename O>
__device__ void gated_residual_v8(const typename X::storage* x, const typename X::storage* y, const float* gate,
                                  u64 gate_stride, typename O::storage* out, u64 packs, u64 nd, u64 d) {
    const u64 nd8 = nd / 8, d8 = d / 8;
    GRID_STRIDE(p, packs) {
        float u[8], v[8], g[8];
        load8<X>(x + 8 * p, u);
        load8<X>(y + 8 * p, v);
        load8_f32(gate + (p / nd8) * gate_stride + 8 * (p % d8), g);
#pragma unroll
        for (int k = 0; k < 8; ++k) u[k] = __fadd_rn(u[k], __fmul_rn(v[k], g[k]));
        store8<O>(out + 8 * p, u);
    }
}

#define MODULATE_V8(sx, X, so, O)                                                                               \
    extern "C" __global__ void ln_modulate_v8_##sx##_##so(const X::storage* x, const float* scale,             \
                                                          u64 scale_stride, const float* shift, u64 shift_stride, \
                                                          O::storage* out, u64 rows, u64 n, u64 d, float eps) {   \
        ln_modulate_v8<X, O>(x, scale, scale_stride, shift, shift_stride, out, rows, n, d, eps);                  \
    }                                                                                                             \
    extern "C" __global__ void gated_residual_v8_##sx##_##so(const X::storage* x, const X::storage* y,           \
                                                             const float* gate, u64 gate_stride, O::storage* out, \
                                                             u64 packs, u64 nd, u64 d) {                          \
        gated_residual_v8<X, O>(x, y, gate, gate_stride, out, packs, nd, d);                                      \
    }
WANRT_FOR_DTYPE_PAIRS(MODULATE_V8)
