// T5/UMT5 attention probabilities with the relative position bias and the padding mask, rounded as
// transformers' eager attention rounds them in the model dtype (modeling_umt5.py,
// UMT5Attention.forward): scores come from the q·kᵀ GEMM already rounded; the bias is
// `compute_bias` (a table lookup, exact) plus the additive mask, rounded; `scores += bias` rounds
// again; softmax runs in f32 and is rounded once (`softmax(scores.float()).type_as(scores)`). In f32
// every rounding is the identity. `bucket` holds small integers stored as f32 (exact), one per relative
// position j - i in [-(nq-1), nk-1]; `mask` is 0 for real keys and the dtype's most negative finite
// value for padding. One block per (b, h, i) row; `out` may alias `scores`.
#include "ops.cuh"

template <typename T>
__device__ __forceinline__ float round_to(float v) { return T::load(T::store(v)); }

template <typename T>
__device__ void relative_bias_softmax(const typename T::storage* scores, const typename T::storage* table,
                                      const float* bucket, const float* mask, typename T::storage* out,
                                      u64 heads, u64 nq, u64 nk, u64 buckets, u64 rows) {
    ROW_LOOP(row, rows) {
        const u64 i = row % nq, h = (row / nq) % heads, b = row / (nq * heads);
        const typename T::storage* sr = scores + row * nk;
        typename T::storage* orow = out + row * nk;
        const float* mr = mask + b * nk;
        // The biased, rounded score of key j (recomputed in each pass: two loads and a gather).
        auto biased = [&](u64 j) {
            const float f = bucket[j + nq - 1 - i];
            u64 bk = f > 0.f ? (u64)f : 0;  // clamped: a bad bucket never reads past the table
            if (bk >= buckets) bk = buckets - 1;
            const float bias = round_to<T>(T::load(table[bk * heads + h]) + mr[j]);
            return round_to<T>(T::load(sr[j]) + bias);
        };
        float m = -__int_as_float(0x7f800000);
        for (u64 j = threadIdx.x; j < nk; j += blockDim.x) m = fmaxf(m, biased(j));
        m = block_max(m);
        float s = 0.f;
        for (u64 j = threadIdx.x; j < nk; j += blockDim.x) s += expf(biased(j) - m);
        const float sum = block_sum(s);
        // Each element is read and then written by the same thread, so `out` may alias `scores`.
        for (u64 j = threadIdx.x; j < nk; j += blockDim.x) orow[j] = T::store(expf(biased(j) - m) / sum);
    }
}

#define RELATIVE_BIAS_SOFTMAX(s, T)                                                                       \
    extern "C" __global__ void relative_bias_softmax_##s(const T::storage* scores, const T::storage* table, \
                                                         const float* bucket, const float* mask,           \
                                                         T::storage* out, u64 heads, u64 nq, u64 nk,       \
                                                         u64 buckets, u64 rows) {                          \
        relative_bias_softmax<T>(scores, table, bucket, mask, out, heads, nq, nk, buckets, rows);       \
    }
WANRT_FOR_DTYPES(RELATIVE_BIAS_SOFTMAX)
