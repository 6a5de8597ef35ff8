// T5/UMT5 attention probabilities with the relative position bias and the padding mask
// (transformers modeling_umt5.py, UMT5Attention.forward: the bias `compute_bias` with the additive
// mask is one tensor in the model dtype, added to the scores; softmax). Per (b, h, i) row:
// t_j = scores_j + round(table[bucket[j - i + nq - 1], h] + mask[b, j]) in f32 from f32 scores;
// probs_j = exp(t_j - max t) unnormalized in f32 and rowsum = sum_j probs_j; the p·v product divides by
// it at the end and rounds once (torch's math SDPA for bf16 computes in f32 the same way). `bucket`
// holds small integers stored as f32 (exact); `mask` is 0 for real keys and the dtype's most negative
// finite value for padding.
#include "ops.cuh"

template <typename T>
__device__ __forceinline__ float round_to(float v) { return T::load(T::store(v)); }

template <typename T>
__device__ void relative_bias_softmax(const float* scores, const typename T::storage* table, const float* bucket,
                                      const float* mask, float* probs, float* rowsum, u64 heads,
                                      u64 nq, u64 nk, u64 buckets, u64 rows) {
    ROW_LOOP(row, rows) {
        const u64 i = row % nq, h = (row / nq) % heads, b = row / (nq * heads);
        const float* sr = scores + row * nk;
        float* prow = probs + row * nk;
        const float* mr = mask + b * nk;
        // The biased score of key j (recomputed in each pass: two loads and a gather).
        auto biased = [&](u64 j) {
            const float f = bucket[j + nq - 1 - i];
            u64 bk = f > 0.f ? (u64)f : 0;  // clamped: a bad bucket never reads past the table
            if (bk >= buckets) bk = buckets - 1;
            return sr[j] + round_to<T>(T::load(table[bk * heads + h]) + mr[j]);
        };
        float m = -__int_as_float(0x7f800000);
        for (u64 j = threadIdx.x; j < nk; j += blockDim.x) m = fmaxf(m, biased(j));
        m = block_max(m);
        float s = 0.f;
        for (u64 j = threadIdx.x; j < nk; j += blockDim.x) {
            const float p = expf(biased(j) - m);
            s += p;
            prow[j] = p;
        }
        s = block_sum(s);
        if (threadIdx.x == 0) rowsum[row] = s;
    }
}

#define RELATIVE_BIAS_SOFTMAX(s, T)                                                                           \
    extern "C" __global__ void relative_bias_softmax_##s(const float* scores, const T::storage* table,         \
                                                         const float* bucket, const float* mask,               \
                                                         float* probs, float* rowsum, u64 heads, u64 nq,         \
                                                         u64 nk, u64 buckets, u64 rows) {                      \
        relative_bias_softmax<T>(scores, table, bucket, mask, probs, rowsum, heads, nq, nk, buckets, rows);  \
    }
WANRT_FOR_DTYPES(RELATIVE_BIAS_SOFTMAX)
