// Fused attention forward for Hopper (sm_90a only; FlashAttention-3 scheme): out = softmax(scale·Q·Kᵀ)·V
// per (batch, head), non-causal, head dim 128, bf16/f16 inputs, f32 softmax and accumulation.
//
// One CTA of 384 threads owns BM = 128 query rows of one (batch, head), in three warpgroups:
//   warpgroup 0, the producer (registers lowered to 24 with setmaxnreg): one thread issues the bulk
//     tensor copies (TMA) of the Q tile once and of the K and V tiles (BN keys each) into a ring of
//     STAGES shared-memory slots, K one tile ahead of V. Each slot has a "full" mbarrier (the copy's
//     byte count completes it) and an "empty" one (the 8 consumer warps arrive when their wgmmas have
//     read the slot).
//   warpgroups 1 and 2, the consumers (registers raised to 240): each owns 64 query rows and visits the
//     key tiles last to first (so the only partial tile, which needs the key mask, comes first). Batch i
//     issues S_i = Q·K_iᵀ (wgmma, A and B from shared memory), rescales O by the previous softmax's
//     correction while S_i runs, issues O += P_{i-1}·V_{i-1} (wgmma, A = P from registers, B = V from
//     shared memory transposed), waits for S_i only and runs the online softmax of S_i (exp2, scale
//     folded into the exponent) while the P·V wgmma is still on the tensor cores. The rounded
//     probabilities stay in registers: the S accumulator layout is the A-fragment layout of the P·V
//     wgmma (see wgmma.cuh).
//   With PP ("ping-pong"), two named barriers make the consumer warpgroups take turns issuing their
//     batches, so one warpgroup's softmax overlaps the other's tensor-core work.
// Rows past Nq and keys past Nk are zero-filled by TMA (the tensor maps carry the true lengths); keys
// past Nk are masked to -inf; rows past Nq are never stored. At the end each consumer divides O by the
// row sum, rounds it, stages it in its own (no longer read) rows of the Q tile and writes it with
// 16-byte stores.
//
// Layout: q, k, v, out are (B, N, H, d) with element strides, read in place through 4-d tensor maps whose
// dimension 0 is d and dimensions 1..3 are token, head and batch in increasing stride order (the host
// sorts them; `*_order` says which is which). Shared tiles use the 128-byte swizzle: the 128 columns of a
// row are two 64-column blocks, each a separate TMA box of 128-byte rows (layout and descriptors in
// wgmma.cuh). Output offsets are 64-bit.
#include "wgmma.cuh"

// Kernel parameters, passed by value in the parameter space (TMA reads the tensor maps there, hence
// __grid_constant__); mirrored by `WgmmaAttnImage` in runtime/gpu/params.rs. 512 bytes.
struct WgParams {
    TensorMap q_map, k_map, v_map;
    u64 o;              // device address of out[0, 0, 0, 0]
    i64 o_stride[3];    // element strides of out over (batch, token, head); d is unit-stride
    int q_order, k_order, v_order;  // bits 2i..2i+1: which of token (0), head (1), batch (2) is map dim i+1
    int heads;          // H; blockIdx.y = batch·H + head
    int nq, nk;         // query and key lengths
    float scale_log2;   // softmax scale × log2(e)
    int pad[17];
};
static_assert(sizeof(WgParams) == 512, "WgParams must match the host mirror");

#ifdef WANRT_SM90A

extern __shared__ __align__(1024) unsigned char wg_smem[];

constexpr int WG_BM = 128;          // query rows per CTA (two consumer warpgroups of 64)
constexpr u32 WG_SCHED_BAR = 3;     // named barriers 3 and 4: ping-pong turns (1 and 2: epilogues)

// The map coordinate of dimension `i` (1..3) given the order code.
__device__ __forceinline__ int map_coord(int order, int i, int tok, int head, int batch) {
    const int which = (order >> (2 * (i - 1))) & 3;
    return which == 0 ? tok : (which == 1 ? head : batch);
}
// One TMA box: columns [col, col + 64) of rows [tok, tok + box rows) of head `head`, batch `batch`.
__device__ __forceinline__ void load_box(u32 dst, const TensorMap* map, int order, u32 bar, int col, int tok, int head,
                                         int batch) {
    tma_load_4d(dst, map, bar, col, map_coord(order, 1, tok, head, batch), map_coord(order, 2, tok, head, batch),
                map_coord(order, 3, tok, head, batch));
}

__device__ __forceinline__ void st_shared_u32(u32 addr, u32 v) {
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ uint4 ld_shared_v4(u32 addr) {
    uint4 v;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr) : "memory");
    return v;
}

// This warp is done reading a slot (its wgmma_wait returned): one arrival per warp (8 per slot use).
__device__ __forceinline__ void release_slot(u32 bar, int lane) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
}

// S = Q·Kᵀ over d = D: D/16 wgmmas. K step kk reads columns 16kk.. of the Q and K tiles: 64-column block
// kk/4, 32-byte offset (kk%4)·32 inside it (descriptor address units are 16 bytes).
template <class T, int D, int BN>
__device__ __forceinline__ void issue_qk(float (&s)[BN / 2], u64 dq, u64 dk) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        const u64 qo = (u64)(((kk / 4) * WG_BM * 128 + (kk % 4) * 32) >> 4);
        const u64 ko = (u64)(((kk / 4) * BN * 128 + (kk % 4) * 32) >> 4);
        wgmma_ss(T(), s, dq + qo, dk + ko, kk > 0 ? 1u : 0u);
    }
}
// O += P·V over the BN keys: K step kk reads keys 16kk.. = two 8-row groups of the V tile, 2048 bytes on.
template <class T, int BN>
__device__ __forceinline__ void issue_pv(float (&o)[64], const u32 (&pa)[BN / 16][4], u64 dv) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) wgmma_rs_tb(T(), o, pa[kk], dv + (u64)((kk * 2048) >> 4), 1u);
}

// P (f32, in the S accumulators) rounded to the A fragments of the P·V K steps (layout in wgmma.cuh).
template <class T, int BN>
__device__ __forceinline__ void pack_p(const float (&s)[BN / 2], u32 (&pa)[BN / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
        pa[kk][0] = pack2(T(), s[8 * kk + 0], s[8 * kk + 1]);
        pa[kk][1] = pack2(T(), s[8 * kk + 2], s[8 * kk + 3]);
        pa[kk][2] = pack2(T(), s[8 * kk + 4], s[8 * kk + 5]);
        pa[kk][3] = pack2(T(), s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// O (relative to the previous running max) onto the new one: row g by corr[0], row g + 8 by corr[1].
__device__ __forceinline__ void rescale(float (&o)[64], const float (&corr)[2]) {
#pragma unroll
    for (int c = 0; c < 16; ++c) {
        o[4 * c + 0] *= corr[0];
        o[4 * c + 1] *= corr[0];
        o[4 * c + 2] *= corr[1];
        o[4 * c + 3] *= corr[1];
    }
}

// Keys ≥ nk of the tile starting at key n0 get -inf (only the last tile can hold any).
template <int BN>
__device__ __forceinline__ void mask_keys(float (&s)[BN / 2], int n0, int nk, int q4) {
    if (n0 + BN > nk) {
#pragma unroll
        for (int c = 0; c < BN / 8; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                if (n0 + 8 * c + 2 * q4 + (e & 1) >= nk) s[4 * c + e] = neg_inf();
    }
}

// Online softmax of one tile for this thread's two rows (hf = 0: row g, hf = 1: row g + 8). Updates the
// running max (log2 units, scale folded in) and this thread's partial row sums (its 2 of every 8
// columns; the quad is summed at the end), overwrites s with P = 2^(scale_log2·s - m) and sets
// corr = 2^(m_old - m_new), the factor the output accumulated so far still needs.
template <int NS>
__device__ __forceinline__ void softmax_tile(float (&s)[NS], float (&m_run)[2], float (&l_run)[2], float (&corr)[2],
                                             float sl2) {
    float m_use[2];
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        float mx = neg_inf();
#pragma unroll
        for (int c = 0; c < NS / 4; ++c) mx = fmaxf(mx, fmaxf(s[4 * c + 2 * hf], s[4 * c + 2 * hf + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // The scale is positive (checked by the launcher), so the max commutes with it. Every tile holds a
        // valid key, so m_new is finite; the guard would keep an all-masked row at exponent 0 rather than
        // -inf - -inf = NaN. corr is 0 on the first tile (m_run = -inf), where the output is still 0.
        const float m_new = fmaxf(m_run[hf], mx * sl2);
        m_use[hf] = m_new == neg_inf() ? 0.f : m_new;
        corr[hf] = fast_exp2(m_run[hf] - m_use[hf]);
        m_run[hf] = m_new;
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < NS / 4; ++c)
#pragma unroll
            for (int e = 2 * hf; e < 2 * hf + 2; ++e) {
                const float pe = fast_exp2(fmaf(s[4 * c + e], sl2, -m_use[hf]));
                s[4 * c + e] = pe;
                sum += pe;
            }
        l_run[hf] = l_run[hf] * corr[hf] + sum;
    }
}

template <class T, int D, int BN, int STAGES, bool PP>
__device__ __forceinline__ void attn_wgmma(const WgParams& p) {
    static_assert(D == 128, "the P·V wgmma and the epilogue are written for head dim 128");
    static_assert(BN % 16 == 0 && BN <= 256, "key tile: a multiple of 16, at most one TMA box (256 rows)");
    constexpr u32 Q_BYTES = WG_BM * D * 2;
    constexpr u32 KV_BYTES = BN * D * 2;
    constexpr int CB = D / 64;  // 64-column blocks per row
    constexpr int NS = BN / 2;  // S accumulators per thread

    // Shared layout (from a 1024-byte aligned base): Q tile, STAGES K tiles, STAGES V tiles, mbarriers.
    const u32 sQ = (smem_u32(wg_smem) + 1023u) & ~1023u;
    const u32 sK = sQ + Q_BYTES;
    const u32 sV = sK + STAGES * KV_BYTES;
    const u32 bars = sV + STAGES * KV_BYTES;
    const u32 q_full = bars;
    auto k_full = [&](int s) { return bars + 8u * (1 + s); };
    auto k_empty = [&](int s) { return bars + 8u * (1 + STAGES + s); };
    auto v_full = [&](int s) { return bars + 8u * (1 + 2 * STAGES + s); };
    auto v_empty = [&](int s) { return bars + 8u * (1 + 3 * STAGES + s); };

    const int wg = (int)threadIdx.x / 128;
    const int m0 = (int)blockIdx.x * WG_BM;
    const int b = (int)blockIdx.y / p.heads, h = (int)blockIdx.y - b * p.heads;
    const int nk = p.nk;
    const int ntiles = (nk + BN - 1) / BN;

    if (threadIdx.x == 0) {
        mbar_init(q_full, 1);
#pragma unroll
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(k_full(s), 1);
            mbar_init(v_full(s), 1);
            mbar_init(k_empty(s), 8);
            mbar_init(v_empty(s), 8);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (wg == 0) {
        // ---- producer ----
        setmaxnreg_dec<24>();
        if (threadIdx.x == 0) {
            tma_prefetch_map(&p.q_map);
            tma_prefetch_map(&p.k_map);
            tma_prefetch_map(&p.v_map);
            mbar_arrive_expect_tx(q_full, Q_BYTES);
#pragma unroll
            for (int c = 0; c < CB; ++c) load_box(sQ + c * WG_BM * 128, &p.q_map, p.q_order, q_full, 64 * c, m0, h, b);
            // Visit v (key tile ntiles-1-v, last to first: the consumers' order) uses slot v % STAGES for
            // the (v / STAGES)-th time; the consumers released the slot's previous contents first. K runs
            // one visit ahead of V: V_v is first read one batch after K_v (O += P_v·V_v comes with S_{v+1}).
            auto load_kv = [&](u32 base, const TensorMap* map, int order, u32 full, u32 empty, int v) {
                const int slot = v % STAGES;
                const u32 use = (u32)(v / STAGES);
                if (use > 0) mbar_wait(empty + 8u * slot, (use - 1) & 1);
                mbar_arrive_expect_tx(full + 8u * slot, KV_BYTES);
#pragma unroll
                for (int c = 0; c < CB; ++c)
                    load_box(base + slot * KV_BYTES + c * BN * 128, map, order, full + 8u * slot, 64 * c,
                             (ntiles - 1 - v) * BN, h, b);
            };
            load_kv(sK, &p.k_map, p.k_order, k_full(0), k_empty(0), 0);
#pragma unroll 1
            for (int v = 0; v < ntiles; ++v) {
                if (v + 1 < ntiles) load_kv(sK, &p.k_map, p.k_order, k_full(0), k_empty(0), v + 1);
                load_kv(sV, &p.v_map, p.v_order, v_full(0), v_empty(0), v);
            }
        }
    } else {
        // ---- consumers ----
        setmaxnreg_inc<240>();
        const int cw = wg - 1;                       // consumer 0 or 1: query rows 64·cw..
        const int tid = (int)threadIdx.x - 128 * wg;  // thread within the warpgroup
        const int lane = tid & 31, warp = tid >> 5;
        const int g = lane >> 2, q4 = lane & 3;
        const u32 sched_self = WG_SCHED_BAR + cw, sched_other = WG_SCHED_BAR + 1 - cw;

        // Descriptors: Q and K K-major (SBO = 1024, LBO unused), V MN-major (LBO = one 64-column block
        // of the V tile, SBO = 1024).
        const u64 dq = desc_sw128(sQ + cw * 64 * 128, 16, 1024);
        const u64 dk0 = desc_sw128(sK, 16, 1024);
        const u64 dv0 = desc_sw128(sV, BN * 128, 1024);
        constexpr u64 SLOT = KV_BYTES >> 4;

        float o[64];
        float s[NS];
#pragma unroll
        for (int i = 0; i < 64; ++i) o[i] = 0.f;
#pragma unroll
        for (int i = 0; i < NS; ++i) s[i] = 0.f;
        float m_run[2] = {neg_inf(), neg_inf()}, l_run[2] = {0.f, 0.f}, corr[2];
        u32 pa[BN / 16][4];
        const float sl2 = p.scale_log2;

        // Ping-pong: consumer 0 issues first. Each consumer syncs on its own barrier before each batch of
        // wgmmas and arrives on the other's after it; consumer 1 skips its last arrival, so both barriers
        // see as many arrivals as syncs (ntiles + 1 batches each).
        if (PP && cw == 1) named_arrive(sched_other, 256);
        mbar_wait(q_full, 0);

        // Key tiles are visited last to first (the producer loads them in that order), so the only partial
        // tile, which needs the key mask, is the first one and the loop below has no masking branch.
        // Visit i reads slot i % STAGES, filled for the (i / STAGES)-th time.
        // Batch 0: S of the last tile.
        mbar_wait(k_full(0), 0);
        if (PP) named_sync(sched_self, 256);
        wgmma_fence();
        issue_qk<T, D, BN>(s, dq, dk0);
        wgmma_commit();
        if (PP) named_arrive(sched_other, 256);
        wgmma_wait<0>();
        fence_regs(s);
        release_slot(k_empty(0), lane);
        mask_keys<BN>(s, (ntiles - 1) * BN, nk, q4);
        softmax_tile(s, m_run, l_run, corr, sl2);

        // Batch i = 1..ntiles-1: S_i, then O = O·corr_{i-1} + P_{i-1}·V_{i-1}; the softmax of S_i then runs
        // while P_{i-1}·V_{i-1} is still on the tensor cores. The wait for that product sits at the top of
        // the next visit, in another basic block: within one block ptxas schedules a wgmma wait ahead of
        // independent work (observed with NVRTC 13.0), which would serialize the softmax behind the
        // product. The O rescale sits between the two issues, so it runs while S_i is computed.
        int si = 0, sp = 0;  // slots of visits i and i-1
        u32 ui = 0, up = 0;  // their fill counts (phase parity of the full barriers)
#pragma unroll 1
        for (int i = 1; i < ntiles; ++i) {
            // P_{i-2}·V_{i-2} is complete (nothing pending at i = 1): its V slot goes back to the producer.
            wgmma_wait<0>();
            fence_regs(o);
            if (i > 1) release_slot(v_empty(sp), lane);
            sp = si;
            up = ui;
            if (++si == STAGES) {
                si = 0;
                ++ui;
            }
            pack_p<T, BN>(s, pa);
            mbar_wait(k_full(si), ui & 1);
            if (PP) named_sync(sched_self, 256);
            wgmma_fence();
            issue_qk<T, D, BN>(s, dq, dk0 + si * SLOT);
            wgmma_commit();
            rescale(o, corr);
            mbar_wait(v_full(sp), up & 1);
            wgmma_fence();
            issue_pv<T, BN>(o, pa, dv0 + sp * SLOT);
            wgmma_commit();
            if (PP) named_arrive(sched_other, 256);
            wgmma_wait<1>();  // S_i done (groups complete in order); P_{i-1}·V_{i-1} may still run
            fence_regs(s);
            release_slot(k_empty(si), lane);
            softmax_tile(s, m_run, l_run, corr, sl2);
        }
        wgmma_wait<0>();
        fence_regs(o);
        if (ntiles > 1) release_slot(v_empty(sp), lane);

        // Last batch: O = O·corr + P·V of the last visit. Nobody refills the slot, so it is not released.
        pack_p<T, BN>(s, pa);
        if (PP) named_sync(sched_self, 256);
        rescale(o, corr);
        mbar_wait(v_full(si), ui & 1);
        wgmma_fence();
        issue_pv<T, BN>(o, pa, dv0 + si * SLOT);
        wgmma_commit();
        if (PP && cw == 0) named_arrive(sched_other, 256);
        wgmma_wait<0>();
        fence_regs(o);

        // Epilogue: O /= l, rounded, staged in this warpgroup's rows of the Q tile (same 128-byte swizzle:
        // the 4-byte writes of a warp then hit 32 distinct banks), then 16-byte stores of whole rows.
        float inv[2];
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            float l = l_run[hf];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            inv[hf] = l > 0.f ? 1.f / l : 0.f;
        }
        const u32 stage = sQ + cw * 64 * 128;
#pragma unroll
        for (int c = 0; c < D / 8; ++c)
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
                const int r = warp * 16 + g + 8 * hf;  // r % 8 == g
                const u32 addr = stage + (c / 8) * WG_BM * 128 + r * 128 + (((c % 8) ^ g) * 16) + q4 * 4;
                st_shared_u32(addr, pack2(T(), o[4 * c + 2 * hf] * inv[hf], o[4 * c + 2 * hf + 1] * inv[hf]));
            }
        named_sync(1 + cw, 128);
        u16* og = (u16*)p.o + (i64)b * p.o_stride[0] + (i64)h * p.o_stride[2];
        constexpr int CH = D / 8;  // 16-byte chunks per row
#pragma unroll
        for (int it = 0; it < 64 * CH / 128; ++it) {
            const int idx = it * 128 + tid;
            const int r = idx / CH, c = idx % CH;
            const int row = m0 + cw * 64 + r;
            const uint4 v = ld_shared_v4(stage + (c / 8) * WG_BM * 128 + r * 128 + (((c % 8) ^ (r & 7)) * 16));
            if (row < p.nq) *(uint4*)(og + (i64)row * p.o_stride[1] + c * 8) = v;
        }
    }
}

// ---- Probes (used by tests/gpu_attention_hopper.rs): one warpgroup runs one of the two products of the
// attention kernel, with the same tiles, copies, descriptors and fragment layouts, on a single tile, so a
// failure can be pinned on one layout. Dynamic shared memory: 1024 + the tiles + 8 bytes.

// A 64×128 f32 accumulator (wgmma.m64n128 layout, see wgmma.cuh) to `out`, row-major.
__device__ __forceinline__ void probe_store(float* out, const float (&d)[64], int tid) {
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, q4 = lane & 3;
#pragma unroll
    for (int c = 0; c < 16; ++c)
#pragma unroll
        for (int e = 0; e < 4; ++e) out[(16 * warp + g + 8 * (e >> 1)) * 128 + 8 * c + 2 * q4 + (e & 1)] = d[4 * c + e];
}

// Loads `boxes` 64-column boxes (box rows as encoded in the map) of tile coordinates (0, 0, 0) into
// consecutive `box_bytes` blocks at `dst` and waits for them.
__device__ __forceinline__ void probe_load(u32 dst, const TensorMap* map, u32 box_bytes, u32 bar) {
    if (threadIdx.x == 0) {
        mbar_arrive_expect_tx(bar, 2 * box_bytes);
        tma_load_4d(dst, map, bar, 0, 0, 0, 0);
        tma_load_4d(dst + box_bytes, map, bar, 64, 0, 0, 0);
    }
    mbar_wait(bar, 0);
}

// S = A·Bᵀ for rows 64·half.. of a 128×128 A tile (loaded as the Q tile) and a 128×128 B tile (as a K
// tile of 128 keys), through issue_qk.
template <class T>
__device__ __forceinline__ void probe_qk(const TensorMap* a_map, const TensorMap* b_map, int half, float* out) {
    const u32 sA = (smem_u32(wg_smem) + 1023u) & ~1023u, sB = sA + 32768, bars = sB + 32768;
    if (threadIdx.x == 0) {
        mbar_init(bars, 1);
        mbar_init(bars + 8, 1);
        mbar_init_fence();
    }
    __syncthreads();
    probe_load(sA, a_map, 16384, bars);
    probe_load(sB, b_map, 16384, bars + 8);
    float s[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) s[i] = 0.f;
    wgmma_fence();
    issue_qk<T, 128, 128>(s, desc_sw128(sA + half * 64 * 128, 16, 1024), desc_sw128(sB, 16, 1024));
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(s);
    probe_store(out, s, (int)threadIdx.x);
}

// O = P·V for a 64×128 P read from `p` (row-major) straight into A fragments, and a 128-key V tile
// (loaded as the V tiles), through issue_pv.
template <class T>
__device__ __forceinline__ void probe_pv(const u16* p, const TensorMap* v_map, float* out) {
    const u32 sV = (smem_u32(wg_smem) + 1023u) & ~1023u, bars = sV + 32768;
    if (threadIdx.x == 0) {
        mbar_init(bars, 1);
        mbar_init_fence();
    }
    __syncthreads();
    probe_load(sV, v_map, 16384, bars);
    const int warp = (int)threadIdx.x >> 5, lane = (int)threadIdx.x & 31, g = lane >> 2, q4 = lane & 3;
    u32 pa[8][4];
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
        const u16* r0 = p + (16 * warp + g) * 128 + 16 * kk + 2 * q4;
        const u16* r1 = r0 + 8 * 128;
        pa[kk][0] = *(const u32*)r0;
        pa[kk][1] = *(const u32*)r1;
        pa[kk][2] = *(const u32*)(r0 + 8);
        pa[kk][3] = *(const u32*)(r1 + 8);
    }
    float o[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.f;
    wgmma_fence();
    issue_pv<T, 128>(o, pa, desc_sw128(sV, 128 * 128, 1024));
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(o);
    probe_store(out, o, (int)threadIdx.x);
}

#endif  // WANRT_SM90A

// Entry points `attn_fwd_wgmma_{dtype}_d128_n{BN}s{STAGES}[p]` (p: ping-pong); the variant table in
// runtime/ops/attention/wgmma.rs lists exactly these. On other targets they compile to a trap (the
// launcher only runs them on compute capability 9.0, where the registry compiles for sm_90a).
#ifdef WANRT_SM90A
#define WG_BODY(T, BN, ST, PP) attn_wgmma<T, 128, BN, ST, PP>(p);
#else
#define WG_BODY(T, BN, ST, PP) asm volatile("trap;");
#endif
#define WG_ENTRY(dt, T, BN, ST, PP, sfx)                                                                           \
    extern "C" __global__ void __launch_bounds__(384, 1) attn_fwd_wgmma_##dt##_d128_n##BN##s##ST##sfx(            \
        const __grid_constant__ WgParams p) {                                                                      \
        WG_BODY(T, BN, ST, PP)                                                                                     \
    }
#define WG_ENTRIES(dt, T)                 \
    WG_ENTRY(dt, T, 128, 2, true, p)      \
    WG_ENTRY(dt, T, 128, 2, false, )      \
    WG_ENTRY(dt, T, 128, 3, true, p)      \
    WG_ENTRY(dt, T, 176, 2, true, p)
WG_ENTRIES(bf16, BF16)
WG_ENTRIES(f16, F16)

// Probe entry points (128 threads, one CTA): `attn_wgmma_probe_{qk,pv}_{dtype}`.
#ifdef WANRT_SM90A
#define PROBE_QK(T) probe_qk<T>(&a_map, &b_map, half, (float*)out);
#define PROBE_PV(T) probe_pv<T>((const u16*)p, &v_map, (float*)out);
#else
#define PROBE_QK(T) asm volatile("trap;");
#define PROBE_PV(T) asm volatile("trap;");
#endif
#define PROBE_ENTRIES(dt, T)                                                                                      \
    extern "C" __global__ void __launch_bounds__(128, 1) attn_wgmma_probe_qk_##dt(                               \
        const __grid_constant__ TensorMap a_map, const __grid_constant__ TensorMap b_map, int half, u64 out) {   \
        PROBE_QK(T)                                                                                               \
    }                                                                                                             \
    extern "C" __global__ void __launch_bounds__(128, 1) attn_wgmma_probe_pv_##dt(                               \
        u64 p, const __grid_constant__ TensorMap v_map, u64 out) {                                                \
        PROBE_PV(T)                                                                                               \
    }
PROBE_ENTRIES(bf16, BF16)
PROBE_ENTRIES(f16, F16)
