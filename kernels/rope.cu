// Rotary position embedding with interleaved pairs (the complex-number convention): within each head,
// channels (2i, 2i+1) are rotated by the angle of pair i, with f32 tables cos/sin of shape [N, dh]:
//   out[2i]   = x[2i] cos[2i] - x[2i+1] sin[2i+1]
//   out[2i+1] = x[2i] sin[2i+1] + x[2i+1] cos[2i]
// (diffusers reads cos at even and sin at odd channels; the tables repeat each value twice anyway).
// f32 math, one rounding to the output dtype. `out` may alias `x`.
#include "ops.cuh"

__device__ __forceinline__ void rotate(float x0, float x1, const float* cr, const float* sr, u64 c, float& o0,
                                       float& o1) {
    // Products rounded separately (no FMA contraction), as torch's separate tensor ops round them, and
    // so the fused rms_norm_rope matches the standalone rope bit for bit.
    const float co = cr[c], si = sr[c + 1];
    o0 = __fsub_rn(__fmul_rn(x0, co), __fmul_rn(x1, si));
    o1 = __fadd_rn(__fmul_rn(x0, si), __fmul_rn(x1, co));
}

// x: [B, N, H, dh] flattened; `hd` = H*dh, token n of element e is (e / hd) % N.
template <typename X, typename O>
__device__ void rope(const typename X::storage* x, const float* cos, const float* sin, typename O::storage* out,
                     u64 pairs, u64 n, u64 hd, u64 dh) {
    GRID_STRIDE(p, pairs) {
        const u64 e = 2 * p;
        const u64 tok = (e / hd) % n;
        float o0, o1;
        rotate(X::load(x[e]), X::load(x[e + 1]), cos + tok * dh, sin + tok * dh, e % dh, o0, o1);
        out[e] = O::store(o0);
        out[e + 1] = O::store(o1);
    }
}

// The self-attention q/k path fused: RMSNorm across the whole row of D = H*dh channels (as the
// rms_norm kernel: f32, weight applied, rounded to X as torch's rms_norm returns X), then RoPE per head
// on the rounded values, rounded to O. Bit-identical to rms_norm followed by rope. Rows = B*N tokens.
template <typename X, typename O>
__device__ void rms_norm_rope(const typename X::storage* x, const void* w, bool w_f32, const float* cos,
                              const float* sin, typename O::storage* out, u64 rows, u64 n, u64 d, u64 dh,
                              float eps) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * d;
        typename O::storage* orow = out + row * d;
        const u64 tok = row % n;
        float q = 0.f;
        for (u64 i = threadIdx.x; i < d; i += blockDim.x) {
            const float t = X::load(xr[i]);
            q += t * t;
        }
        const float r = rsqrtf(block_sum(q) / (float)d + eps);
        // Same block size and summation order as rms_norm, so r (and the rounded y) are identical.
        for (u64 p = threadIdx.x; p < d / 2; p += blockDim.x) {
            const u64 e = 2 * p;
            float y0 = X::load(xr[e]) * r, y1 = X::load(xr[e + 1]) * r;
            if (w) {
                y0 *= load_param<X>(w, w_f32, e);
                y1 *= load_param<X>(w, w_f32, e + 1);
            }
            y0 = X::load(X::store(y0));
            y1 = X::load(X::store(y1));
            float o0, o1;
            rotate(y0, y1, cos + tok * dh, sin + tok * dh, e % dh, o0, o1);
            orow[e] = O::store(o0);
            orow[e + 1] = O::store(o1);
        }
    }
}

#define ROPE(sx, X, so, O)                                                                                  \
    extern "C" __global__ void rope_##sx##_##so(const X::storage* x, const float* cos, const float* sin,    \
                                                O::storage* out, u64 pairs, u64 n, u64 hd, u64 dh) {        \
        rope<X, O>(x, cos, sin, out, pairs, n, hd, dh);                                                     \
    }                                                                                                       \
    extern "C" __global__ void rms_norm_rope_##sx##_##so(const X::storage* x, const void* w, int w_f32,    \
                                                         const float* cos, const float* sin, O::storage* out, \
                                                         u64 rows, u64 n, u64 d, u64 dh, float eps) {         \
        rms_norm_rope<X, O>(x, w, w_f32 != 0, cos, sin, out, rows, n, d, dh, eps);                           \
    }
WANRT_FOR_DTYPE_PAIRS(ROPE)

// rms_norm_rope on packs (d % 8 == 0, dh % 8 == 0): thread t holds channels [8t, 8t + 8), four whole
// pairs of one head; statistics through ops.cuh's rms_normalize_v8 as norm.cu's rms_norm_v8, so bit-identical to rms_norm_v8 then rope.
template <typename X, typename O>
__device__ void rms_norm_rope_v8(const typename X::storage* x, const void* w, bool w_f32, const float* cos,
                                 const float* sin, typename O::storage* out, u64 rows, u64 n, u64 d, u64 dh,
                                 float eps) {
    const u64 c = 8 * (u64)threadIdx.x;
    const bool live = c < d;
    ROW_LOOP(row, rows) {
        float v[8];
        load_row_pack<X>(x, row, d, c, live, v);
        rms_normalize_v8<X>(v, live, d, c, w, w_f32, eps);
        if (live) {
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = X::load(X::store(v[k]));
            const u64 t = (row % n) * dh + c % dh;
            float co[8], si[8];
            load8_f32(cos + t, co);
            load8_f32(sin + t, si);
#pragma unroll
            for (int k = 0; k < 8; k += 2) {
                const float x0 = v[k], x1 = v[k + 1];
                v[k] = __fsub_rn(__fmul_rn(x0, co[k]), __fmul_rn(x1, si[k + 1]));
                v[k + 1] = __fadd_rn(__fmul_rn(x0, si[k + 1]), __fmul_rn(x1, co[k]));
            }
            store8<O>(out + row * d + c, v);
        }
    }
}

#define ROPE_V8(sx, X, so, O)                                                                                 \
    extern "C" __global__ void rms_norm_rope_v8_##sx##_##so(const X::storage* x, const void* w, int w_f32,   \
                                                            const float* cos, const float* sin, O::storage* out, \
                                                            u64 rows, u64 n, u64 d, u64 dh, float eps) {         \
        rms_norm_rope_v8<X, O>(x, w, w_f32 != 0, cos, sin, out, rows, n, d, dh, eps);                           \
    }
WANRT_FOR_DTYPE_PAIRS(ROPE_V8)
