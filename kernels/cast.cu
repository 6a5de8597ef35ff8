// Elementwise dtype conversion: out[i] = Out::store(In::load(in[i])), round to nearest even.
#include "common.cuh"

#define CAST(si, SI, so, SO)                                                                \
    extern "C" __global__ void cast_##si##_to_##so(const SI::storage* __restrict__ in,     \
                                                     SO::storage* __restrict__ out, u64 n) { \
        GRID_STRIDE(i, n) out[i] = SO::store(SI::load(in[i]));                              \
    }
#define CAST_FROM(si, SI) CAST(si, SI, f32, F32) CAST(si, SI, bf16, BF16) CAST(si, SI, f16, F16)
WANRT_FOR_DTYPES(CAST_FROM)
