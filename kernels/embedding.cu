// Row gather: out[r, :] = table[ids[r], :], converted to the output dtype. Ids outside [0, V) give a
// zero row (never an out-of-bounds read); launchers reject them on the host before launching.
#include "ops.cuh"

#define EMBEDDING(st, T, so, O)                                                                           \
    extern "C" __global__ void embedding_##st##_##so(const T::storage* table, const i64* ids, O::storage* out, \
                                                     u64 n, u64 d, u64 v) {                                 \
        GRID_STRIDE(i, n * d) {                                                                             \
            const i64 id = ids[i / d];                                                                      \
            out[i] = (id >= 0 && (u64)id < v) ? O::store(T::load(table[(u64)id * d + i % d])) : O::store(0.f); \
        }                                                                                                   \
    }
WANRT_FOR_DTYPE_PAIRS(EMBEDDING)
