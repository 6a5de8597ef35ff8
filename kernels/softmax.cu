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

#define SOFTMAX(sx, X, so, O)                                                                         \
    extern "C" __global__ void softmax_##sx##_##so(const X::storage* x, O::storage* out, u64 rows, u64 l) { \
        softmax<X, O>(x, out, rows, l);                                                               \
    }
WANRT_FOR_DTYPE_PAIRS(SOFTMAX)
