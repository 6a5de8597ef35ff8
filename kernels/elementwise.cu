// Elementwise arithmetic on same-shape contiguous tensors: f32 math, one rounding to the output
// dtype. Inputs share a dtype; `out` may alias an input (same index read then written by one thread).
#include "ops.cuh"

#define ELEMENTWISE(sx, X, so, O)                                                                      \
    extern "C" __global__ void add_##sx##_##so(const X::storage* a, const X::storage* b, O::storage* out, \
                                               u64 n) {                                                 \
        GRID_STRIDE(i, n) out[i] = O::store(X::load(a[i]) + X::load(b[i]));                             \
    }                                                                                                   \
    extern "C" __global__ void mul_##sx##_##so(const X::storage* a, const X::storage* b, O::storage* out, \
                                               u64 n) {                                                 \
        GRID_STRIDE(i, n) out[i] = O::store(X::load(a[i]) * X::load(b[i]));                             \
    }                                                                                                   \
    extern "C" __global__ void scale_##sx##_##so(const X::storage* a, float s, O::storage* out, u64 n) { \
        GRID_STRIDE(i, n) out[i] = O::store(X::load(a[i]) * s);                                         \
    }
WANRT_FOR_DTYPE_PAIRS(ELEMENTWISE)
