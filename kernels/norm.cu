// Row normalizations over the last axis, f32 statistics, one rounding to the output dtype.
// One block per row (ROW_LOOP); `out` may be `x` itself (each element is read and written by the
// same thread, after the row's statistics are complete).
#include "ops.cuh"

// LayerNorm: two-pass statistics (mean, then the mean of squared deviations: biased variance), both
// in f32. y = (x - mean) * rsqrt(var + eps) [* w] [+ b]. `w`/`b` may be null; `wb_f32` says whether
// they are f32 or X.
template <typename X, typename O>
__device__ void layer_norm(const typename X::storage* x, const void* w, const void* b, bool wb_f32,
                           typename O::storage* out, u64 rows, u64 d, float eps) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
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
            float y = (X::load(xr[i]) - mean) * rstd;
            if (w) y *= load_param<X>(w, wb_f32, i);
            if (b) y += load_param<X>(b, wb_f32, i);
            orow[i] = O::store(y);
        }
    }
}

// RMSNorm as torch 2.11's rms_norm (fused CPU and CUDA kernels): y = x * rsqrt(mean(x^2) + eps) * w,
// all in f32, rounded once to the output dtype (the weight is applied before the rounding).
template <typename X, typename O>
__device__ void rms_norm(const typename X::storage* x, const void* w, bool w_f32, typename O::storage* out,
                         u64 rows, u64 d, float eps) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
        float q = 0.f;
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            const float t = X::load(xr[i]);
            q += t * t;
        }
        const float r = rsqrtf(block_sum(q) / (float)d + eps);
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            float y = X::load(xr[i]) * r;
            if (w) y *= load_param<X>(w, w_f32, i);
            orow[i] = O::store(y);
        }
    }
}

// transformers' T5LayerNorm (modeling_umt5.py UMT5LayerNorm): the same statistics as rms_norm, but
// the normalized value rounds to the output dtype before the weight multiplies it, and again after.
template <typename X, typename O>
__device__ void rms_norm_t5(const typename X::storage* x, const void* w, bool w_f32, typename O::storage* out,
                            u64 rows, u64 d, float eps) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
        float q = 0.f;
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            const float t = X::load(xr[i]);
            q += t * t;
        }
        const float r = rsqrtf(block_sum(q) / (float)d + eps);
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            float y = O::load(O::store(X::load(xr[i]) * r));
            if (w) y *= load_param<X>(w, w_f32, i);
            orow[i] = O::store(y);
        }
    }
}

#define NORMS(sx, X, so, O)                                                                            \
    extern "C" __global__ void layer_norm_##sx##_##so(const X::storage* x, const void* w, const void* b, \
                                                      int wb_f32, O::storage* out, u64 rows, u64 d,     \
                                                      float eps) {                                      \
        layer_norm<X, O>(x, w, b, wb_f32 != 0, out, rows, d, eps);                                      \
    }                                                                                                   \
    extern "C" __global__ void rms_norm_##sx##_##so(const X::storage* x, const void* w, int w_f32,      \
                                                    O::storage* out, u64 rows, u64 d, float eps) {      \
        rms_norm<X, O>(x, w, w_f32 != 0, out, rows, d, eps);                                            \
    }                                                                                                   \
    extern "C" __global__ void rms_norm_t5_##sx##_##so(const X::storage* x, const void* w, int w_f32,   \
                                                       O::storage* out, u64 rows, u64 d, float eps) {   \
        rms_norm_t5<X, O>(x, w, w_f32 != 0, out, rows, d, eps);                                         \
    }
WANRT_FOR_DTYPE_PAIRS(NORMS)

// layer_norm and rms_norm on packs: one block per row, thread t holds channels [8t, 8t + 8) in
// registers (the row is read once), blockDim.x = d/8 rounded up to a warp multiple. Same formulas; the
// statistics sum in another order than the strided loops above (ops.cuh: row_mean_rstd_v8,
// rms_normalize_v8).
template <typename X, typename O>
__device__ void layer_norm_v8(const typename X::storage* x, const void* w, const void* b, bool wb_f32,
                              typename O::storage* out, u64 rows, u64 d, float eps) {
    const u64 c = 8 * (u64)threadIdx.x;
    const bool live = c < d;
    ROW_LOOP(row, rows) {
        float v[8], mean, rstd;
        load_row_pack<X>(x, row, d, c, live, v);
        row_mean_rstd_v8(v, live, d, eps, mean, rstd);
        if (live) {
            float wv[8], bv[8];
            if (w) load8_param<X>(w, wb_f32, c, wv);
            if (b) load8_param<X>(b, wb_f32, c, bv);
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                float y = (v[k] - mean) * rstd;
                if (w) y *= wv[k];
                if (b) y += bv[k];
                v[k] = y;
            }
            store8<O>(out + row * d + c, v);
        }
    }
}

template <typename X, typename O>
__device__ void rms_norm_v8(const typename X::storage* x, const void* w, bool w_f32, typename O::storage* out,
                            u64 rows, u64 d, float eps) {
    const u64 c = 8 * (u64)threadIdx.x;
    const bool live = c < d;
    ROW_LOOP(row, rows) {
        float v[8];
        load_row_pack<X>(x, row, d, c, live, v);
        rms_normalize_v8<X>(v, live, d, c, w, w_f32, eps);
        if (live) store8<O>(out + row * d + c, v);
    }
}

#define NORMS_V8(sx, X, so, O)                                                                             \
    extern "C" __global__ void layer_norm_v8_##sx##_##so(const X::storage* x, const void* w, const void* b, \
                                                         int wb_f32, O::storage* out, u64 rows, u64 d,     \
                                                         float eps) {                                      \
        layer_norm_v8<X, O>(x, w, b, wb_f32 != 0, out, rows, d, eps);                                      \
    }                                                                                                      \
    extern "C" __global__ void rms_norm_v8_##sx##_##so(const X::storage* x, const void* w, int w_f32,      \
                                                       O::storage* out, u64 rows, u64 d, float eps) {      \
        rms_norm_v8<X, O>(x, w, w_f32 != 0, out, rows, d, eps);                                            \
    }
WANRT_FOR_DTYPE_PAIRS(NORMS_V8)

// WanRMS_norm (diffusers autoencoder_kl_wan.py `WanRMS_norm`: F.normalize over channels) on
// channels-last rows: y = x / max(||x||_2, 1e-12) * sqrt(d) * gamma [+ beta], optionally SiLU'd, all in
// f32 and rounded once. One warp per row (rows are pixels, d is a few hundred channels at most).
// `gamma`/`beta` are f32 or X (`wb_f32`); `beta` may be null. `out` may alias `x`.
template <typename X, typename O>
__device__ void l2_norm(const typename X::storage* x, const void* gamma, const void* beta, bool wb_f32,
                        int silu, typename O::storage* out, u64 rows, u64 d) {
    const u64 warps = ((u64)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    const float scale = sqrtf((float)d);
    for (u64 row = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows; row += warps) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
        float q = 0.f;
        for (u64 i = lane; i < d; i += 32) {
            const float t = X::load(xr[i]);
            q += t * t;
        }
        const float inv = 1.f / fmaxf(sqrtf(warp_sum(q)), 1e-12f);
        for (u64 i = lane; i < d; i += 32) {
            float y = X::load(xr[i]) * inv * scale * load_param<X>(gamma, wb_f32, i);
            if (beta) y += load_param<X>(beta, wb_f32, i);
            if (silu) y = y / (1.f + expf(-y));
            orow[i] = O::store(y);
        }
    }
}

#define L2_NORMS(sx, X, so, O)                                                                          \
    extern "C" __global__ void l2_norm_##sx##_##so(const X::storage* x, const void* gamma, const void* beta, \
                                                   int wb_f32, int silu, O::storage* out, u64 rows, u64 d) { \
        l2_norm<X, O>(x, gamma, beta, wb_f32 != 0, silu, out, rows, d);                                   \
    }
WANRT_FOR_DTYPE_PAIRS(L2_NORMS)
