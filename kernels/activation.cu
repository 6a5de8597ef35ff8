// Activations, evaluated in f32 as PyTorch's CUDA kernels do for bf16/f16 tensors, rounded once.
// Accurate libdevice tanhf/erff/expf (not the fast intrinsics). `out` may alias `x`.
#include "ops.cuh"

// torch GELU(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh_f(float x) {
    const float k_beta = 0.7978845608028654f;  // sqrt(2/pi)
    const float k_kappa = 0.044715f;
    const float inner = k_beta * (x + k_kappa * (x * x * x));
    return 0.5f * x * (1.f + tanhf(inner));
}
// torch GELU(approximate='none'): 0.5 x (1 + erf(x / sqrt(2))).
__device__ __forceinline__ float gelu_erf_f(float x) { return 0.5f * x * (1.f + erff(x * 0.7071067811865476f)); }
// torch SiLU: x / (1 + exp(-x)).
__device__ __forceinline__ float silu_f(float x) { return x / (1.f + expf(-x)); }

// transformers' NewGELUActivation ("gelu_new", UMT5's FFN) as PyTorch evaluates it on bf16/f16
// tensors: the formula of gelu_tanh_f, but each elementwise op (pow, the scalings, the add, tanh,
// 1 + t, 0.5 x, the product) rounds to the tensor's dtype (O) before the next one.
template <typename O>
__device__ __forceinline__ float gelu_new_stepwise_f(float x) {
    auto r = [](float v) { return O::load(O::store(v)); };
    const float x3 = r(x * x * x);
    const float inner = r(0.7978845608028654f * r(x + r(0.044715f * x3)));
    const float t = r(1.f + r(tanhf(inner)));
    return r(0.5f * x) * t;
}

#define ACTIVATIONS(sx, X, so, O)                                                                          \
    extern "C" __global__ void gelu_tanh_##sx##_##so(const X::storage* x, O::storage* out, u64 n) {        \
        GRID_STRIDE(i, n) out[i] = O::store(gelu_tanh_f(X::load(x[i])));                                   \
    }                                                                                                      \
    extern "C" __global__ void gelu_new_##sx##_##so(const X::storage* x, O::storage* out, u64 n) {         \
        GRID_STRIDE(i, n) out[i] = O::store(gelu_new_stepwise_f<O>(X::load(x[i])));                         \
    }                                                                                                      \
    extern "C" __global__ void gelu_erf_##sx##_##so(const X::storage* x, O::storage* out, u64 n) {         \
        GRID_STRIDE(i, n) out[i] = O::store(gelu_erf_f(X::load(x[i])));                                    \
    }                                                                                                      \
    extern "C" __global__ void silu_##sx##_##so(const X::storage* x, O::storage* out, u64 n) {             \
        GRID_STRIDE(i, n) out[i] = O::store(silu_f(X::load(x[i])));                                        \
    }
WANRT_FOR_DTYPE_PAIRS(ACTIVATIONS)

// The same activations on packs of 8 (ops.cuh: load8/store8); `packs` = n / 8. Bit-identical.
template <typename X, typename O, typename F>
__device__ __forceinline__ void unary_v8(const typename X::storage* x, typename O::storage* out, u64 packs, F f) {
    GRID_STRIDE(p, packs) {
        float v[8];
        load8<X>(x + 8 * p, v);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = f(v[k]);
        store8<O>(out + 8 * p, v);
    }
}

#define ACTIVATIONS_V8(sx, X, so, O)                                                                       \
    extern "C" __global__ void gelu_tanh_v8_##sx##_##so(const X::storage* x, O::storage* out, u64 packs) { \
        unary_v8<X, O>(x, out, packs, [](float v) { return gelu_tanh_f(v); });                             \
    }                                                                                                      \
    extern "C" __global__ void gelu_new_v8_##sx##_##so(const X::storage* x, O::storage* out, u64 packs) {  \
        unary_v8<X, O>(x, out, packs, [](float v) { return gelu_new_stepwise_f<O>(v); });                  \
    }                                                                                                      \
    extern "C" __global__ void gelu_erf_v8_##sx##_##so(const X::storage* x, O::storage* out, u64 packs) {  \
        unary_v8<X, O>(x, out, packs, [](float v) { return gelu_erf_f(v); });                              \
    }                                                                                                      \
    extern "C" __global__ void silu_v8_##sx##_##so(const X::storage* x, O::storage* out, u64 packs) {      \
        unary_v8<X, O>(x, out, packs, [](float v) { return silu_f(v); });                                  \
    }
WANRT_FOR_DTYPE_PAIRS(ACTIVATIONS_V8)
