// T5/UMT5 relative position bias with the padding mask, materialized for the attention kernel:
// out[b, h, i, j] = f32(table[bucket[j - i + nq - 1], h]) + mask[b, j]   (transformers
// modeling_umt5.py, UMT5Attention.compute_bias plus the extended attention mask). `bucket` holds
// small integers stored as f32 (exact), one per relative position j - i in [-(nq-1), nk-1].
#include "common.cuh"

#define RELATIVE_BIAS(s, T)                                                                         \
    extern "C" __global__ void relative_bias_##s(const T::storage* __restrict__ table,              \
                                                 const float* __restrict__ bucket,                  \
                                                 const float* __restrict__ mask,                    \
                                                 float* __restrict__ out, u64 batch, u64 heads,     \
                                                 u64 nq, u64 nk, u64 buckets) {                     \
        GRID_STRIDE(idx, batch * heads * nq * nk) {                                                 \
            u64 j = idx % nk;                                                                       \
            u64 i = (idx / nk) % nq;                                                                \
            u64 h = (idx / (nk * nq)) % heads;                                                      \
            u64 b = idx / (nk * nq * heads);                                                        \
            float f = bucket[j + nq - 1 - i];                                                       \
            /* Clamped: a bucket outside the table never reads past it. */                          \
            u64 bk = f > 0.f ? (u64)f : 0;                                                          \
            if (bk >= buckets) bk = buckets - 1;                                                    \
            out[idx] = T::load(table[bk * heads + h]) + mask[b * nk + j];                           \
        }                                                                                           \
    }
WANRT_FOR_DTYPES(RELATIVE_BIAS)
