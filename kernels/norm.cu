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
// f32 and rounded once. `gamma`/`beta` are f32 or X (`wb_f32`); `beta` may be null. `out` may alias `x`.
// The per-element part, shared by both forms below so that they differ only in the order of the sum
// of squares (`inv` = 1 / max(||x||, 1e-12)).
__device__ __forceinline__ float wan_rms_apply(float x, float inv, float scale, float g, bool has_beta, float b,
                                               int silu) {
    float y = x * inv * scale * g;
    if (has_beta) y += b;
    if (silu) y = y / (1.f + expf(-y));
    return y;
}

// Scalar form: one warp per row (rows are pixels, d is a few hundred channels at most).
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
            const float b = beta ? load_param<X>(beta, wb_f32, i) : 0.f;
            const float g = load_param<X>(gamma, wb_f32, i);
            orow[i] = O::store(wan_rms_apply(X::load(xr[i]), inv, scale, g, beta != nullptr, b, silu));
        }
    }
}

// store8 with one st.global.v4 per 16 bytes: written as a plain struct store, NVRTC 13.0 splits the
// last pack's store of l2_norm_v8 with 16-bit outputs into four 32-bit ones.
template <typename O>
__device__ __forceinline__ void store8_v4(typename O::storage* p, const float (&f)[8]) {
    constexpr int WORDS = sizeof(typename O::storage) / 2;  // 16-byte words per 8 elements
    u32 w[4 * WORDS];
#pragma unroll
    for (int k = 0; k < 4 * WORDS; ++k) {
        if constexpr (WORDS == 2) w[k] = __float_as_uint(f[k]);
        else w[k] = (u32)(u16)O::store(f[2 * k]) | ((u32)(u16)O::store(f[2 * k + 1]) << 16);
    }
#pragma unroll
    for (int j = 0; j < WORDS; ++j)
        asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"l"(reinterpret_cast<Raw16*>(p) + j), "r"(w[4 * j]),
                     "r"(w[4 * j + 1]), "r"(w[4 * j + 2]), "r"(w[4 * j + 3])
                     : "memory");
}

// Packed form (d % 8 == 0, 16-byte aligned pointers): a group of `group` lanes per row (a power of two
// dividing 32), lane l of a group holding packs l, l + group, .., l + (P-1)·group of 8 channels in
// registers (the row is read once, then written: in place is safe). A warp covers 32/group consecutive
// rows, so its accesses are contiguous and 16 bytes wide; packs with one warp per row would leave 20 of
// 32 lanes idle at the VAE's C = 96 (12 packs). The host picks P ≤ 4 and the smallest group with
// group·P ≥ d/8 (ops::norm::l2_norm_packs). The sum of squares is a tree (pairs in a pack, then packs,
// then the group's butterfly): depth ≤ 1 + 3 + 2 + 5 roundings, within the chain bound the tests use
// for the scalar form (tests/gpu_ops_vae.rs). One row group per warp, no grid-stride loop: the grid
// covers every row (a loop keeps the per-pack addresses live and took P = 3 to 95 registers, 2 blocks
// of 256 per SM; without it ≤ 64 with no spills, and __launch_bounds__(256, 4) holds P = 4 there too).
template <int P, typename X, typename O>
__device__ void l2_norm_v8(const typename X::storage* x, const void* gamma, const void* beta, bool wb_f32,
                           int silu, typename O::storage* out, u64 rows, u64 d, u32 group) {
    const u32 lane = threadIdx.x & 31, gl = lane & (group - 1);
    const u64 row = (((u64)blockIdx.x * blockDim.x + threadIdx.x) >> 5) * (32 / group) + lane / group;
    // Whole warps past the end leave; a partial warp's extra rows still take part in the shuffles.
    if (row - lane / group >= rows) return;
    const bool live = row < rows;
    const u64 packs = d / 8;
    float v[P][8];
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const u64 p = gl + (u64)k * group;
#pragma unroll
        for (int j = 0; j < 8; ++j) v[k][j] = 0.f;
        if (live && p < packs) load8<X>(x + row * d + 8 * p, v[k]);
    }
    float s[P];
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const float a = v[k][0] * v[k][0] + v[k][1] * v[k][1], b = v[k][2] * v[k][2] + v[k][3] * v[k][3];
        const float c = v[k][4] * v[k][4] + v[k][5] * v[k][5], e = v[k][6] * v[k][6] + v[k][7] * v[k][7];
        s[k] = (a + b) + (c + e);
    }
    float q;
    if constexpr (P == 1) q = s[0];
    else if constexpr (P == 2) q = s[0] + s[1];
    else if constexpr (P == 3) q = (s[0] + s[1]) + s[2];
    else q = (s[0] + s[1]) + (s[2] + s[3]);
    for (u32 o = group >> 1; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
    if (!live) return;
    const float inv = 1.f / fmaxf(sqrtf(q), 1e-12f), scale = sqrtf((float)d);
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const u64 p = gl + (u64)k * group;
        if (p >= packs) continue;
        float g[8], b[8];
        load8_param<X>(gamma, wb_f32, 8 * p, g);
        if (beta) load8_param<X>(beta, wb_f32, 8 * p, b);
#pragma unroll
        for (int j = 0; j < 8; ++j)
            v[k][j] = wan_rms_apply(v[k][j], inv, scale, g[j], beta != nullptr, beta ? b[j] : 0.f, silu);
        store8_v4<O>(out + row * d + 8 * p, v[k]);
    }
}

#define L2_NORM_V8(P, sx, X, so, O)                                                                        \
    extern "C" __global__ void __launch_bounds__(256, 4)                                                   \
        l2_norm_v8_p##P##_##sx##_##so(const X::storage* x, const void* gamma, const void* beta, int wb_f32,  \
                                      int silu, O::storage* out, u64 rows, u64 d, u32 group) {              \
        l2_norm_v8<P, X, O>(x, gamma, beta, wb_f32 != 0, silu, out, rows, d, group);                       \
    }
#define L2_NORMS(sx, X, so, O)                                                                               \
    extern "C" __global__ void l2_norm_##sx##_##so(const X::storage* x, const void* gamma, const void* beta,  \
                                                   int wb_f32, int silu, O::storage* out, u64 rows, u64 d) {  \
        l2_norm<X, O>(x, gamma, beta, wb_f32 != 0, silu, out, rows, d);                                    \
    }                                                                                                      \
    L2_NORM_V8(1, sx, X, so, O) L2_NORM_V8(2, sx, X, so, O) L2_NORM_V8(3, sx, X, so, O) L2_NORM_V8(4, sx, X, so, O)
WANRT_FOR_DTYPE_PAIRS(L2_NORMS)
