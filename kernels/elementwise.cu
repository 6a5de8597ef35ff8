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

// add and mul on packs of 8 (ops.cuh: load8/store8); `packs` = n / 8. Bit-identical to the above.
template <typename X, typename O, typename F>
__device__ __forceinline__ void binary_v8(const typename X::storage* a, const typename X::storage* b,
                                          typename O::storage* out, u64 packs, F f) {
    GRID_STRIDE(p, packs) {
        float u[8], v[8];
        load8<X>(a + 8 * p, u);
        load8<X>(b + 8 * p, v);
#pragma unroll
        for (int k = 0; k < 8; ++k) u[k] = f(u[k], v[k]);
        store8<O>(out + 8 * p, u);
    }
}

#define ELEMENTWISE_V8(sx, X, so, O)                                                                       \
    extern "C" __global__ void add_v8_##sx##_##so(const X::storage* a, const X::storage* b, O::storage* out, \
                                                  u64 packs) {                                              \
        binary_v8<X, O>(a, b, out, packs, [](float u, float v) { return u + v; });                         \
    }                                                                                                       \
    extern "C" __global__ void mul_v8_##sx##_##so(const X::storage* a, const X::storage* b, O::storage* out, \
                                                  u64 packs) {                                              \
        binary_v8<X, O>(a, b, out, packs, [](float u, float v) { return u * v; });                         \
    }
WANRT_FOR_DTYPE_PAIRS(ELEMENTWISE_V8)
