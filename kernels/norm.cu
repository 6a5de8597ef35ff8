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
