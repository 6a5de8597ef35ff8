// Softmax over the last axis: one block per row, f32 throughout (max, sum of exp(x - max), divide),
// numerically stable for any finite input, rounded once to the output dtype. `out` may alias `x`.
#include "ops.cuh"

template <typename X, typename O>
__device__ void softmax(const typename X::storage* x, typename O::storage* out, u64 rows, u64 l) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * l;
        typename O::storage* orow = out + row * l;
        float m = -__int_as_float(0x7f800000);
        for (u64 i = threadIdx.x; i < l; i += blockDim.x) m = fmaxf(m, X::load(xr[i]));
        m = block_max(m);
        // A row of -inf (fully masked) would give NaN from (-inf) - (-inf); it gives NaN in torch too.
        float s = 0.f;
        for (u64 i = threadIdx.x; i < l; i += blockDim.x) s += expf(X::load(xr[i]) - m);
        const float sum = block_sum(s);
        for (u64 i = threadIdx.x; i < l; i += blockDim.x) orow[i] = O::store(expf(X::load(xr[i]) - m) / sum);
    }
}

// Rows of up to SOFTMAX_REG_PER · 1024 elements held in registers (element i of a row in thread
// i mod blockDim.x, slot i / blockDim.x): x is read once instead of three times, exp taken once. For
// the Wan VAE's mid-block attention, whose rows are the H·W pixels of a latent frame (6,240 at 480p,
// 14,400 at 720p) and whose f32 scores are the largest thing it reads. Same math as `softmax`; the
// sums' order differs (per-thread partials over other elements).
#define SOFTMAX_REG_PER 16
template <typename X, typename O>
__device__ void softmax_reg(const typename X::storage* x, typename O::storage* out, u64 rows, u64 l) {
    ROW_LOOP(row, rows) {
        const typename X::storage* xr = x + row * l;
        typename O::storage* orow = out + row * l;
        float v[SOFTMAX_REG_PER];
        float m = -__int_as_float(0x7f800000);
#pragma unroll
        for (int k = 0; k < SOFTMAX_REG_PER; ++k) {
            const u64 i = threadIdx.x + (u64)k * blockDim.x;
            v[k] = i < l ? X::load(xr[i]) : -__int_as_float(0x7f800000);
            m = fmaxf(m, v[k]);
        }
        m = block_max(m);
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < SOFTMAX_REG_PER; ++k) {
            const u64 i = threadIdx.x + (u64)k * blockDim.x;
            v[k] = i < l ? expf(v[k] - m) : 0.f;
            s += v[k];
        }
        const float sum = block_sum(s);
#pragma unroll
        for (int k = 0; k < SOFTMAX_REG_PER; ++k) {
            const u64 i = threadIdx.x + (u64)k * blockDim.x;
            if (i < l) orow[i] = O::store(v[k] / sum);
        }
    }
}

#define SOFTMAX(sx, X, so, O)                                                                         \
    extern "C" __global__ void softmax_##sx##_##so(const X::storage* x, O::storage* out, u64 rows, u64 l) { \
        softmax<X, O>(x, out, rows, l);                                                               \
    }                                                                                                 \
    extern "C" __global__ void __launch_bounds__(1024) softmax_reg_##sx##_##so(const X::storage* x, O::storage* out, \
                                                                               u64 rows, u64 l) {       \
        softmax_reg<X, O>(x, out, rows, l);                                                           \
    }
WANRT_FOR_DTYPE_PAIRS(SOFTMAX)

// The deferred normalization of an unnormalized softmax product (attention's p·v computed in f32 with
// the probabilities not yet divided by their row sums): out[b, i, h, c] = o[b, i, h, c] / rowsum[b, h, i],
// rounded once. `o` f32 [B, Nq, H, d]; `rowsum` f32 [B, H, Nq].
template <typename O>
__device__ void softmax_divide(const float* o, const float* rowsum, typename O::storage* out, u64 nq, u64 heads,
                               u64 d, u64 n) {
    GRID_STRIDE(idx, n) {
        const u64 h = (idx / d) % heads, i = (idx / (d * heads)) % nq, b = idx / (d * heads * nq);
        out[idx] = O::store(o[idx] / rowsum[(b * heads + h) * nq + i]);
    }
}

#define SOFTMAX_DIVIDE(s, O)                                                                                  \
    extern "C" __global__ void softmax_divide_##s(const float* o, const float* rowsum, O::storage* out, u64 nq, \
                                                  u64 heads, u64 d, u64 n) {                                   \
        softmax_divide<O>(o, rowsum, out, nq, heads, d, n);                                                    \
    }
WANRT_FOR_DTYPES(SOFTMAX_DIVIDE)
