// Row-broadcast add with f32 output: out[b, j] = f32(a[j]) + f32(x[b, j]). Wan's modulation
// (`scale_shift_table + temb6`, diffusers `transformer_wan.py` `WanTransformerBlock.forward`) adds an
// fp32 table to bf16 projections in f32.
#include "common.cuh"

#define ADD_ROWS(sa, TA, sx, TX)                                                                    \
    extern "C" __global__ void add_rows_##sa##_##sx(const TA::storage* __restrict__ a,              \
                                                    const TX::storage* __restrict__ x,              \
                                                    float* __restrict__ out, u64 rows, u64 width) { \
        GRID_STRIDE(i, rows * width) out[i] = TA::load(a[i % width]) + TX::load(x[i]);              \
    }
#define ADD_ROWS_A(sa, TA) ADD_ROWS(sa, TA, f32, F32) ADD_ROWS(sa, TA, bf16, BF16) ADD_ROWS(sa, TA, f16, F16)
WANRT_FOR_DTYPES(ADD_ROWS_A)
