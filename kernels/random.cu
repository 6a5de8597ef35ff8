// Deterministic pseudo-random fills for synthesized weights: value i depends only on (seed, i), so a
// tensor's contents do not depend on the launch shape. splitmix64 of the 64-bit counter.
#include "common.cuh"

__device__ __forceinline__ u64 splitmix64(u64 x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform in [lo, hi).
#define FILL_UNIFORM(sfx, T)                                                                      \
    extern "C" __global__ void fill_uniform_##sfx(T::storage* __restrict__ out, u64 n, u64 seed,  \
                                                  float lo, float hi) {                          \
        GRID_STRIDE(i, n) {                                                                       \
            const float u = (float)(splitmix64(seed ^ (i * 0xD1B54A32D192ED03ull)) >> 40) * (1.0f / 16777216.0f); \
            out[i] = T::store(lo + (hi - lo) * u);                                                \
        }                                                                                         \
    }
WANRT_FOR_DTYPES(FILL_UNIFORM)
