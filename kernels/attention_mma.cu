// Fused attention forward for sm_80 and newer (FlashAttention-2 scheme): out = softmax(scale·Q·Kᵀ)·V per
// (batch, head), non-causal, bf16/f16 inputs, f32 softmax and accumulation, no score matrix in memory.
//
// One CTA owns a tile of BM query rows of one (batch, head); WARPS warps each own MT = BM/(16·WARPS)
// m16 row tiles. The CTA walks the keys in tiles of BN: K and V tiles are copied into shared memory with
// cp.async, double-buffered (tile j+1 streams in while tile j is computed). Per key tile, each warp
//   1. S = Q·Kᵀ with mma.sync m16n8k16 (A = Q from ldmatrix, B = K rows from ldmatrix),
//   2. masks keys ≥ Nk with -inf (last tile only), updates the running row max m and rescales its
//      running sum l and output O by 2^(m_old - m_new) (online softmax, exponent in log2 units with the
//      scale folded in: exp(scale·s) = 2^(scale·log2e·s)),
//   3. P = 2^(scale_log2·s - m) rounded to the input type right in the S accumulator registers, which
//      are laid out exactly as the A operand of the next mma (see mma.cuh),
//   4. O += P·V (B = V from ldmatrix.trans).
// At the end O /= l, is rounded, staged through shared memory and written with 16-byte stores.
//
// Layout: q, k, v, out are (B, N, H, d) with element strides (batch, token, head) and unit stride over
// d, read in place (a slice of a fused QKV buffer works). Offsets are 64-bit. Rows past Nq/Nk are
// zero-filled on load (cp.async src-size 0) and never stored.
//
// Shared memory rows are padded to D + 8 elements: the 16 extra bytes shift consecutive rows by 4 banks,
// so the 8 row addresses of each ldmatrix phase (and the fragment stores of the epilogue) fall in
// distinct banks for D = 64, 80 and 128.
#include "mma.cuh"

// Kernel parameters, passed by value; mirrored by `MmaAttnImage` in runtime/gpu/params.rs.
struct AttnParams {
    u64 q, k, v, o;    // device addresses of element (0, 0, 0, 0)
    i64 q_stride[3];   // element strides over (batch, token, head); d is unit-stride
    i64 k_stride[3];
    i64 v_stride[3];
    i64 o_stride[3];
    int heads;         // H; blockIdx.y = batch·H + head
    int nq, nk;        // query and key lengths
    int pad0;
    float scale_log2;  // softmax scale × log2(e)
    int pad1;
};

extern __shared__ __align__(16) unsigned char attn_smem[];

// Issues the cp.async copies of rows [row0, row0 + R) of a (token, d) matrix into a padded R × (D+8)
// shared tile. Rows ≥ nrows are zero-filled.
template <int R, int D, int THREADS>
__device__ __forceinline__ void load_rows(u32 dst, const u16* src, i64 row_stride, int row0, int nrows) {
    constexpr int CH = D / 8;  // 16-byte chunks per row
    constexpr int LD = D + 8;
    if constexpr (THREADS % CH == 0 && R % (THREADS / CH) == 0) {
        // Each thread copies one chunk column of every RSTEP-th row: one running pointer, one
        // compare per chunk.
        constexpr int RSTEP = THREADS / CH;
        const int r = (int)threadIdx.x / CH, c = (int)threadIdx.x % CH;
        const u16* g = src + (i64)(row0 + r) * row_stride + c * 8;
        const i64 step = (i64)RSTEP * row_stride;
        const int left = nrows - row0 - r;  // rows of this thread's column still in range
        dst += (u32)((r * LD + c * 8) * 2);
#pragma unroll
        for (int it = 0; it < R / RSTEP; ++it) {
            const bool valid = it * RSTEP < left;
            cp_async_16(dst + (u32)(it * RSTEP * LD * 2), valid ? g : src, valid);
            g += step;
        }
    } else {
        constexpr int TOTAL = R * CH;
#pragma unroll
        for (int it = 0; it < (TOTAL + THREADS - 1) / THREADS; ++it) {
            const int i = it * THREADS + (int)threadIdx.x;
            if (TOTAL % THREADS == 0 || i < TOTAL) {
                const int r = i / CH, c = i - (i / CH) * CH;
                const bool valid = row0 + r < nrows;
                const u16* g = src + (valid ? (i64)(row0 + r) * row_stride : 0) + c * 8;
                cp_async_16(dst + (u32)((r * LD + c * 8) * 2), g, valid);
            }
        }
    }
}

template <class T, int D, int BM, int BN, int WARPS>
__device__ __forceinline__ void attn_fwd(const AttnParams& p) {
    constexpr int MT = BM / (16 * WARPS);  // m16 row tiles per warp
    static_assert(MT >= 1 && MT * 16 * WARPS == BM, "BM must be a multiple of 16·WARPS");
    static_assert(D % 16 == 0 && BN % 16 == 0, "head dim and key tile must be multiples of 16");
    constexpr int KD = D / 16;   // k-steps of S = Q·Kᵀ (over d)
    constexpr int ND = D / 8;    // n8 tiles of O (over d)
    constexpr int NN = BN / 8;   // n8 tiles of S (over keys)
    constexpr int KN = BN / 16;  // k-steps of O = P·V (over keys)
    constexpr int LD = D + 8;    // padded shared row, elements
    constexpr int THREADS = WARPS * 32;
    constexpr int CH = D / 8;
    // Q fragments stay in registers when they take at most 32 of them; otherwise they are re-read from
    // shared memory every key tile (the O and S accumulators need the registers).
    constexpr bool QREG = MT * KD * 4 <= 32;
    constexpr u32 TILE_BYTES = BN * LD * 2;

    const u32 sQ = smem_u32(attn_smem);
    const u32 sK = sQ + BM * LD * 2;    // two K buffers
    const u32 sV = sK + 2 * TILE_BYTES; // two V buffers

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.x * BM;
    const int b = blockIdx.y / p.heads, h = blockIdx.y - b * p.heads;
    const u16* qg = (const u16*)p.q + (i64)b * p.q_stride[0] + (i64)h * p.q_stride[2];
    const u16* kg = (const u16*)p.k + (i64)b * p.k_stride[0] + (i64)h * p.k_stride[2];
    const u16* vg = (const u16*)p.v + (i64)b * p.v_stride[0] + (i64)h * p.v_stride[2];
    const int nk = p.nk;
    const int ntiles = (nk + BN - 1) / BN;

    // Group 0: the Q tile and the first K/V tile.
    load_rows<BM, D, THREADS>(sQ, qg, p.q_stride[1], m0, p.nq);
    load_rows<BN, D, THREADS>(sK, kg, p.k_stride[1], 0, nk);
    load_rows<BN, D, THREADS>(sV, vg, p.v_stride[1], 0, nk);
    cp_async_commit();

    const int wrow = warp * MT * 16;  // this warp's first row in the tile
    // ldmatrix lane addressing (see mma.cuh): for an A tile (rows r0.., cols c0..) lane l points at
    // row r0 + (l & 15), col c0 + (l >> 4)·8, giving a0..a3. For K (stored [key][d]) as B of S: lane l
    // points at key n0 + (l & 7) + (l >> 4)·8, d k0 + ((l >> 3) & 1)·8, giving b0, b1 of key tile n0 and
    // b0, b1 of n0 + 8. For V (stored [key][d]) as B of O, with .trans: key k0 + (l & 15), d n0 +
    // (l >> 4)·8, giving b0, b1 of d tile n0 and b0, b1 of n0 + 8.
    const u32 a_lane = (u32)(((wrow + (lane & 15)) * LD + (lane >> 4) * 8) * 2);
    const u32 k_lane = (u32)((((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8) * 2);
    const u32 v_lane = (u32)(((lane & 15) * LD + (lane >> 4) * 8) * 2);

    float o[MT][ND][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nd = 0; nd < ND; ++nd)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mt][nd][e] = 0.f;
    // Per owned row (mt, half: row g or g+8): running max in log2 units (scale folded in) and this
    // thread's partial running sum (its 2 of every 8 columns; the quad is summed at the end).
    float m_run[MT][2], l_run[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        m_run[mt][0] = m_run[mt][1] = neg_inf();
        l_run[mt][0] = l_run[mt][1] = 0.f;
    }
    u32 qf[QREG ? MT : 1][QREG ? KD : 1][4];
    const float sl2 = p.scale_log2;

#pragma unroll 1
    for (int j = 0; j < ntiles; ++j) {
        // Tile j has landed for every thread; every warp is done with tile j-1, whose buffers the next
        // copy overwrites.
        cp_async_wait<0>();
        __syncthreads();
        if (j + 1 < ntiles) {
            const u32 off = ((j + 1) & 1) * TILE_BYTES;
            load_rows<BN, D, THREADS>(sK + off, kg, p.k_stride[1], (j + 1) * BN, nk);
            load_rows<BN, D, THREADS>(sV + off, vg, p.v_stride[1], (j + 1) * BN, nk);
            cp_async_commit();
        }
        if constexpr (QREG) {
            if (j == 0) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int kk = 0; kk < KD; ++kk)
                        ldsm_x4(sQ + a_lane + (u32)((mt * 16 * LD + kk * 16) * 2), qf[mt][kk][0], qf[mt][kk][1],
                                qf[mt][kk][2], qf[mt][kk][3]);
            }
        }
        const u32 kbuf = sK + (j & 1) * TILE_BYTES, vbuf = sV + (j & 1) * TILE_BYTES;

        // 1. S = Q·Kᵀ (raw dot products).
        float s[MT][NN][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NN; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
            u32 a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                if constexpr (QREG) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) a[mt][e] = qf[mt][kk][e];
                } else {
                    ldsm_x4(sQ + a_lane + (u32)((mt * 16 * LD + kk * 16) * 2), a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
                }
            }
#pragma unroll
            for (int np = 0; np < NN / 2; ++np) {
                u32 b0, b1, b2, b3;
                ldsm_x4(kbuf + k_lane + (u32)((np * 16 * LD + kk * 16) * 2), b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(T(), s[mt][2 * np], a[mt], b0, b1);
                    mma16816(T(), s[mt][2 * np + 1], a[mt], b2, b3);
                }
            }
        }

        // 2. Mask keys past Nk (only the last tile can hold any).
        const int n0 = j * BN;
        if (n0 + BN > nk) {
#pragma unroll
            for (int nt = 0; nt < NN; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (n0 + nt * 8 + 2 * t + (e & 1) >= nk)
#pragma unroll
                        for (int mt = 0; mt < MT; ++mt) s[mt][nt][e] = neg_inf();
        }

        // 3. Online softmax. The BN columns of a row are spread over the 4 lanes of a quad (2 of every 8).
        float m_use[MT][2], corr[MT][2];
        bool moved = false;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                float mx = neg_inf();
#pragma unroll
                for (int nt = 0; nt < NN; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * hf], s[mt][nt][2 * hf + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                // The scale is positive (checked by the launcher), so the max commutes with it. Every
                // key tile holds a valid key, so m_new is finite; the guard would keep an all-masked row
                // at exponent 0 rather than -inf - -inf = NaN. The plain product (no FMA) makes m_new
                // bit-equal to m_run when the max did not move, so corr is then exactly 1.
                const float m_new = fmaxf(m_run[mt][hf], mx * sl2);
                m_use[mt][hf] = m_new == neg_inf() ? 0.f : m_new;
                corr[mt][hf] = fast_exp2(m_run[mt][hf] - m_use[mt][hf]);  // 0 on the first tile
                moved |= corr[mt][hf] != 1.f;
                m_run[mt][hf] = m_new;
            }
        // Rescaling by exactly 1 is a no-op: skip it when no row of the warp has a new max (most key
        // tiles once the max has settled). The vote keeps the branch warp-uniform.
        if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    l_run[mt][hf] *= corr[mt][hf];
#pragma unroll
                    for (int nd = 0; nd < ND; ++nd) {
                        o[mt][nd][2 * hf] *= corr[mt][hf];
                        o[mt][nd][2 * hf + 1] *= corr[mt][hf];
                    }
                }
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NN; ++nt)
#pragma unroll
                    for (int e = 2 * hf; e < 2 * hf + 2; ++e) {
                        const float pe = fast_exp2(fmaf(s[mt][nt][e], sl2, -m_use[mt][hf]));
                        s[mt][nt][e] = pe;
                        sum += pe;
                    }
                l_run[mt][hf] += sum;
            }

        // 4. O += P·V. The S accumulators of key tiles 2kk and 2kk+1 are, element for element, the A
        // fragment of k-step kk: a0 = (g, 2t..) of tile 2kk, a1 = (g+8, 2t..) of tile 2kk, a2/a3 the same
        // of tile 2kk+1.
#pragma unroll
        for (int kk = 0; kk < KN; ++kk) {
            u32 a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                a[mt][0] = pack2(T(), s[mt][2 * kk][0], s[mt][2 * kk][1]);
                a[mt][1] = pack2(T(), s[mt][2 * kk][2], s[mt][2 * kk][3]);
                a[mt][2] = pack2(T(), s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                a[mt][3] = pack2(T(), s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int np = 0; np < ND / 2; ++np) {
                u32 b0, b1, b2, b3;
                ldsm_x4_trans(vbuf + v_lane + (u32)((kk * 16 * LD + np * 16) * 2), b0, b1, b2, b3);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    mma16816(T(), o[mt][2 * np], a[mt], b0, b1);
                    mma16816(T(), o[mt][2 * np + 1], a[mt], b2, b3);
                }
            }
        }
    }

    // Epilogue: O /= l, round, stage this warp's rows in its own (no longer read) rows of the Q tile,
    // then write them out with 16-byte stores.
    __syncwarp();
    u16* stage = (u16*)attn_smem;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float l = l_run[mt][hf];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = wrow + mt * 16 + g + hf * 8;
#pragma unroll
            for (int nd = 0; nd < ND; ++nd) {
                const u32 v2 = pack2(T(), o[mt][nd][2 * hf] * inv, o[mt][nd][2 * hf + 1] * inv);
                *(u32*)(stage + row * LD + nd * 8 + 2 * t) = v2;
            }
        }
    __syncwarp();
    u16* og = (u16*)p.o + (i64)b * p.o_stride[0] + (i64)h * p.o_stride[2];
#pragma unroll
    for (int it = 0; it < (MT * 16 * CH + 31) / 32; ++it) {
        const int i = it * 32 + lane;
        if ((MT * 16 * CH) % 32 == 0 || i < MT * 16 * CH) {
            const int r = i / CH, c = i - (i / CH) * CH;
            const int row = m0 + wrow + r;
            if (row < p.nq) {
                const uint4 val = *(const uint4*)(stage + (wrow + r) * LD + c * 8);
                *(uint4*)(og + (i64)row * p.o_stride[1] + c * 8) = val;
            }
        }
    }
}

// Entry points `attn_fwd_mma_{dtype}_d{D}_m{BM}n{BN}w{WARPS}`; the tile table in
// runtime/ops/attention/mma.rs lists exactly these. MINB is the CTAs per SM the register allocator aims
// for (launch bounds).
#define ATTN_ENTRY(dt, T, D, BM, BN, W, MINB)                                                             \
    extern "C" __global__ void __launch_bounds__(W * 32, MINB) attn_fwd_mma_##dt##_d##D##_m##BM##n##BN##w##W( \
        const AttnParams p) {                                                                             \
        attn_fwd<T, D, BM, BN, W>(p);                                                                     \
    }
#define ATTN_ENTRIES(dt, T)                  \
    ATTN_ENTRY(dt, T, 64, 128, 64, 4, 2)     \
    ATTN_ENTRY(dt, T, 64, 64, 64, 4, 2)      \
    ATTN_ENTRY(dt, T, 80, 128, 64, 4, 2)     \
    ATTN_ENTRY(dt, T, 128, 128, 64, 4, 2)    \
    ATTN_ENTRY(dt, T, 128, 128, 32, 4, 2)    \
    ATTN_ENTRY(dt, T, 128, 128, 64, 8, 1)    \
    ATTN_ENTRY(dt, T, 128, 64, 64, 4, 2)     \
    ATTN_ENTRY(dt, T, 128, 256, 64, 8, 1)
ATTN_ENTRIES(bf16, BF16)
ATTN_ENTRIES(f16, F16)
