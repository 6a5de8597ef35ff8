// Implicit-GEMM 3D convolution for f32 on tensor cores, sm_80 and newer: mma.sync m16n8k8 on tf32
// operands with the 3xTF32 split (CUTLASS's "3xTF32", `OpMultiplyAddFastF32`), which keeps f32-level
// accuracy. Channels-last, f32 in and out, f32 accumulation. The scheme is conv3d_mma.cu's (CUTLASS's
// "Implicit GEMM Convolution"), with f32 tiles:
//
//   GEMM  M = B·To·Ho·Wo output positions, N = Cout, K = taps·Cin, taps in (dt, dh, dw) order, channels
//         fastest (the weight layout [Cout, kt, kh, kw, Cin], so B rows are read in place).
//
// The K loop walks (tap, channel block of BK = 16 floats): a row of the A tile is 16 contiguous
// channels of one input pixel, four 16-byte cp.async chunks. Cin % 4 == 0 is required (a chunk is
// wholly in or out of Cin); the chunks past Cin in a tap's last block are zero-filled. The causal time
// axis [pad_t zero frames ; prev ; x], spatial padding and rows past M are zero-filled copies (src-size
// 0), prev and x are read in place: see conv3d_mma.cu.
//
// 3xTF32: every f32 operand a is split as a = big + small, big = tf32(a), small = tf32(a - big), and
// each product as big_a·big_b + big_a·small_b + small_a·big_b (three mma.sync); small_a·small_b
// (≤ 2^-22·|ab|) is dropped. tf32×tf32 products are exact in f32, so each product is off by at most
// about 3·2^-22·|ab| (the dropped term and the two roundings of the small parts).
//
// Accumulation: an mma.sync does not add in IEEE f32. It aligns its products and C to the largest
// exponent among them (a few extra bits), truncates what falls below, and truncates the sum to f32
// (round toward zero): Fasi, Higham, Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores"
// (PeerJ CS 7:e330, 2021); Khattak and Mikaitis, "Accurate models of NVIDIA tensor cores"
// (arXiv:2512.07004) for TF32 on A100/H100. Chaining the whole K range through C truncates every MMA
// at the running sum's ulp, toward zero: a bias that grows with K (3·K/8 MMAs). So the MMAs of each
// group of KF k8 steps (KF = 1 or 2 per entry: one K tile, or half of one where the registers for a
// whole tile's fragments would spill) go into a zero partial, whose truncations are at its own,
// smaller ulp, and the partial is added to the f32 accumulator with one FADD (round to nearest). In
// tools/tf32_accumulation.py's model of the H100 (random normal data, weights N(0, 1/K)) that takes
// the relative RMS error at K = 2592 / 10368 from 1.8e-5 / 7.3e-5 to 2.5e-7 / 4.7e-7 (KF = 2) or
// 3.4e-7 / 6.4e-7 (KF = 1), below the f32 FMA kernel's 0.9e-6 / 1.8e-6. Within a group the small
// products go first (CUTLASS's MmaTensorOpFastF32 order: small·big, big·small, big·big) and, with
// KF = 2, both steps' small products before the big ones: they sum at their own scale and are
// truncated once, when the first big product joins, instead of each at the big products' ulp (in the
// same model, big products first or interleaved steps are measurably worse).
//
// Shared layout: rows of BK = 16 floats padded to LDS = 24 (96 bytes). The mma only needs A and B to
// agree on which k a register holds, so a lane reads its two k values t and t + 4 of a k8 step as one
// 8-byte load of physical columns 2t, 2t + 1 (A rows g and g + 8: a0/a2 and a1/a3; B row n = g:
// b0/b1). With a row stride of 24 words (≡ 24 mod 32) the 16 lanes of each half-warp phase of those
// 8-byte loads (rows g..g+3, columns 2t) cover the 32 banks once. The loaders copy 16-byte chunks; a
// group of 8 threads (one phase) writes rows r and r + 2 (48 words apart, ≡ 16 mod 32), also
// conflict-free.
//
// Epilogue: the accumulators are staged in shared memory (reusing the pipeline buffers, in row slabs
// when the tile is larger), then each thread takes 4 consecutive output channels of a row: + bias +
// residual in f32, one 16-byte store when Cout % 4 == 0, else element stores.
#include "mma.cuh"

// Kernel parameters, passed by value: the same block as conv3d_mma.cu's `ConvParams` (one Rust mirror,
// `ConvMmaImage` in runtime/gpu/params_conv.rs), with cin_blocks = ceil(Cin / 16) and vec_out =
// (Cout % 4 == 0) for this kernel.
struct ConvParams {
    u64 x, prev, w, bias, residual, out;  // device addresses; prev, bias, residual may be 0
    int T, P, H, W, Cin;                  // x [B,T,H,W,Cin], prev [B,P,H,W,Cin]
    int To, Ho, Wo, Cout;                 // out [B,To,Ho,Wo,Cout]
    int kt, kh, kw;                       // w [Cout,kt,kh,kw,Cin]
    int st, sh, sw;                       // strides
    int pad_t, pad_top, pad_left;         // zero frames in front; spatial padding before row/col 0
    int M;                                // B·To·Ho·Wo
    int cin_blocks;                       // ceil(Cin / BK)
    int ktiles;                           // kt·kh·kw·cin_blocks
    int n_tiles;                          // ceil(Cout / BN); blockIdx.x = m_tile·n_tiles + n_tile
    int vec_out;                          // Cout % 4 == 0: 16-byte residual loads and output stores
    int pad0;
    u64 norm_gamma;  // conv3d_wgmma_rows.cu's fused WanRMS_norm (0 here)
    int norm_silu, pad1;
};

extern __shared__ __align__(16) unsigned char conv_smem[];

namespace conv_tf32 {
constexpr int BK = 16;       // K tile: 16 channels (floats) of one tap
constexpr int LDS = BK + 8;  // padded shared row, floats
constexpr int CH = BK / 4;   // 16-byte chunks per row
}  // namespace conv_tf32

// The 3xTF32 split of a lane's A fragment (a0..a3 = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4] from
// the float2 pairs of rows g and g + 8) and of its B fragment (b0, b1 = B[t][g], B[t+4][g]).
__device__ __forceinline__ void tf32_split_a(const float2 (&v)[2], u32 (&big)[4], u32 (&small)[4]) {
    tf32_split(v[0].x, big[0], small[0]);
    tf32_split(v[1].x, big[1], small[1]);
    tf32_split(v[0].y, big[2], small[2]);
    tf32_split(v[1].y, big[3], small[3]);
}
__device__ __forceinline__ void tf32_split_b(const float2 v, u32 (&big)[2], u32 (&small)[2]) {
    tf32_split(v.x, big[0], small[0]);
    tf32_split(v.y, big[1], small[1]);
}

// acc += A·B over the KF k8 steps of a flush group, 3xTF32: the MMAs go into a zero partial, the small
// products (small_a·big_b, big_a·small_b) of every step before the big ones, and the partial is added
// to acc with one FADD per element (IEEE round-to-nearest). See the header for why.
template <int KF>
__device__ __forceinline__ void mma_3xtf32_flush(float (&acc)[4], const u32 (&ab)[KF][4], const u32 (&as)[KF][4],
                                                 const u32 (&bb)[KF][2], const u32 (&bs)[KF][2]) {
    float part[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int s = 0; s < KF; ++s) {
        mma1688_tf32(part, as[s], bb[s][0], bb[s][1]);
        mma1688_tf32(part, ab[s], bs[s][0], bs[s][1]);
    }
#pragma unroll
    for (int s = 0; s < KF; ++s) mma1688_tf32(part, ab[s], bb[s][0], bb[s][1]);
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e] += part[e];
}

template <int BM, int BN, int WM, int WN, int STAGES, int KF>
__device__ __forceinline__ void conv3d_tf32_tile(const ConvParams& p) {
    using namespace conv_tf32;
    constexpr int THREADS = WM * WN * 32;
    constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
    constexpr int MT = WTM / 16, NT = WTN / 8;   // m16 and n8 tiles per warp
    static_assert(MT * 16 * WM == BM && NT * 8 * WN == BN, "warp tile must be m16 × n8 multiples");
    static_assert(KF >= 1 && (BK / 8) % KF == 0, "a flush group is whole k8 steps of one K tile");
    // Hold the operand whose split fragments take fewer registers (A: 8 per m16 tile and k8 step, B: 4
    // per n8 tile) for the whole group and split the other one tile at a time; each fragment is split
    // once either way.
    constexpr bool HOLD_B = NT * 4 <= MT * 8;
    constexpr int RSTEP = THREADS / CH;  // tile rows covered by one pass of the loaders
    constexpr int AR = BM / RSTEP, BR = (BN + RSTEP - 1) / RSTEP;
    static_assert(AR * RSTEP == BM && THREADS % 16 == 0, "BM must be a multiple of THREADS / 4");
    constexpr u32 A_BYTES = BM * LDS * 4, STAGE_BYTES = (BM + BN) * LDS * 4;
    constexpr int LDC = BN + 8;  // f32 staging row of the epilogue (float2 writes of a half-warp conflict-free)
    constexpr int PASSES = (BM * LDC * 4 + STAGES * STAGE_BYTES - 1) / (STAGES * STAGE_BYTES);
    static_assert(WM % PASSES == 0, "epilogue slabs must be whole warp rows");
    constexpr int PROWS = BM / PASSES;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n_tile = (int)(blockIdx.x % (unsigned)p.n_tiles), m_tile = (int)(blockIdx.x / (unsigned)p.n_tiles);
    const int m0 = m_tile * BM, n0 = n_tile * BN;
    const u32 smem = smem_u32(conv_smem);

    const float* w = (const float*)p.w;
    const int Cin = p.Cin;
    const i64 frame = (i64)p.H * p.W * Cin;  // elements per frame
    const int taps = p.kt * p.kh * p.kw;

    // Loader mapping: thread tid copies chunk lc of tile rows lr, lr + RSTEP, ... Each 16 threads cover
    // 4 consecutive rows; the 8 threads of a shared-store phase take rows r and r + 2 (see the header).
    const int lc = tid & 3, q = tid >> 3;
    const int lr = (q >> 1) * 4 + (q & 1) + ((tid >> 2) & 1) * 2;
    // Per A row, tap-invariant (as in conv3d_mma.cu): the first logical frame (-2^30 past M), row and
    // column, and the element offsets of that (frame, row, column) in prev and in x.
    int a_f[AR], a_h[AR], a_w[AR];
    i64 a_prev[AR], a_x[AR];
#pragma unroll
    for (int i = 0; i < AR; ++i) {
        const int m = m0 + lr + i * RSTEP;
        a_f[i] = -(1 << 30);
        a_h[i] = a_w[i] = 0;
        a_prev[i] = a_x[i] = 0;
        if (m < p.M) {
            int r = m / p.Wo;
            const int wo = m - r * p.Wo;
            const int ho = r % p.Ho;
            r /= p.Ho;
            const int to = r % p.To, b = r / p.To;
            a_f[i] = to * p.st - p.pad_t;
            a_h[i] = ho * p.sh - p.pad_top;
            a_w[i] = wo * p.sw - p.pad_left;
            const i64 pix = ((i64)a_h[i] * p.W + a_w[i]) * Cin;
            a_prev[i] = ((i64)b * p.P + a_f[i]) * frame + pix;
            a_x[i] = ((i64)b * p.T + a_f[i] - p.P) * frame + pix;
        }
    }
    int ld_cb = 0, ld_tap = 0, ld_dt = 0, ld_dh = 0, ld_dw = 0;

    auto load_tile = [&](int stage) {
        const u32 sA = smem + stage * STAGE_BYTES, sB = sA + A_BYTES;
        const int ch = ld_cb * BK + lc * 4;
        const bool ch_ok = ch < Cin;
        const i64 tap_off = ld_dt * frame + (i64)(ld_dh * p.W + ld_dw) * Cin + ch;
#pragma unroll
        for (int i = 0; i < AR; ++i) {
            const int f = a_f[i] + ld_dt, hi = a_h[i] + ld_dh, wi = a_w[i] + ld_dw;
            const bool v = ch_ok && f >= 0 && (unsigned)hi < (unsigned)p.H && (unsigned)wi < (unsigned)p.W;
            // Byte addresses as integers (an out-of-range offset is never a pointer); an invalid copy
            // still needs a mapped source address: w is never empty.
            const u64 src = f < p.P ? p.prev + (u64)(a_prev[i] + tap_off) * 4 : p.x + (u64)(a_x[i] + tap_off) * 4;
            cp_async_16(sA + (u32)(((lr + i * RSTEP) * LDS + lc * 4) * 4), (const void*)(v ? src : p.w), v);
        }
#pragma unroll
        for (int i = 0; i < BR; ++i) {
            if (BN % RSTEP == 0 || lr + i * RSTEP < BN) {
                const int n = n0 + lr + i * RSTEP;
                const bool v = ch_ok && n < p.Cout;
                const float* src = v ? w + ((i64)n * taps + ld_tap) * Cin + ch : w;
                cp_async_16(sB + (u32)(((lr + i * RSTEP) * LDS + lc * 4) * 4), src, v);
            }
        }
        if (++ld_cb == p.cin_blocks) {
            ld_cb = 0;
            ++ld_tap;
            if (++ld_dw == p.kw) {
                ld_dw = 0;
                if (++ld_dh == p.kh) {
                    ld_dh = 0;
                    ++ld_dt;
                }
            }
        }
    };

    const int ktiles = p.ktiles;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_tile(s);
        cp_async_commit();
    }

    // Warp tile (wm, wn); lane (g, t) reads A rows wm·WTM + mt·16 + g (+ 8) and B rows wn·WTN + nt·8 + g
    // at physical columns s·8 + 2t, 2t + 1 of k8 step s (logical k t and t + 4).
    const int wm = warp / WN, wn = warp % WN;
    const int g = lane >> 2, t = lane & 3;
    const int a_lane = (wm * WTM + g) * LDS + 2 * t;  // floats
    const int b_lane = (wn * WTN + g) * LDS + 2 * t;

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

#pragma unroll 1
    for (int kt = 0; kt < ktiles; ++kt) {
        // Tile kt has landed for every thread, and every warp is done with tile kt - 1, whose stage
        // the next copy overwrites.
        cp_async_wait<STAGES - 2>();
        __syncthreads();

        const float* sA = (const float*)(conv_smem + (kt % STAGES) * STAGE_BYTES);
        const float* sB = (const float*)(conv_smem + (kt % STAGES) * STAGE_BYTES + A_BYTES);
        // A fragment (mt, k8 step s) / B fragment (nt, s) of this lane from shared memory.
        auto a_frag = [&](int mt, int s, float2 (&v)[2]) {
            v[0] = *(const float2*)(sA + a_lane + mt * 16 * LDS + s * 8);
            v[1] = *(const float2*)(sA + a_lane + (mt * 16 + 8) * LDS + s * 8);
        };
        auto b_frag = [&](int nt, int s) { return *(const float2*)(sB + b_lane + nt * 8 * LDS + s * 8); };
        // Tile kt + STAGES - 1 is issued after the first group's shared reads, so its address
        // arithmetic overlaps the MMAs.
        auto prefetch = [&]() {
            const int next = kt + STAGES - 1;
            if (next < ktiles) load_tile(next % STAGES);
            cp_async_commit();
        };
        // Not unrolled: with KF = 1, ptxas overlaps the two groups of an unrolled tile, keeping more
        // partials and fragments live, and the 128×192 and 128×96 entries spill.
#pragma unroll 1
        for (int k0 = 0; k0 < BK / 8; k0 += KF) {
            if constexpr (HOLD_B) {
                // Every B fragment of the group split once, A split per m16 tile.
                u32 bb[NT][KF][2], bs[NT][KF][2];
                float2 av[MT][KF][2];
#pragma unroll
                for (int s = 0; s < KF; ++s) {
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) tf32_split_b(b_frag(nt, k0 + s), bb[nt][s], bs[nt][s]);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) a_frag(mt, k0 + s, av[mt][s]);
                }
                if (k0 == 0) prefetch();
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    u32 ab[KF][4], as[KF][4];
#pragma unroll
                    for (int s = 0; s < KF; ++s) tf32_split_a(av[mt][s], ab[s], as[s]);
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) mma_3xtf32_flush<KF>(acc[mt][nt], ab, as, bb[nt], bs[nt]);
                }
            } else {
                // Every A fragment of the group split once, B split per n8 tile.
                u32 ab[MT][KF][4], as[MT][KF][4];
                float2 bv[NT][KF];
#pragma unroll
                for (int s = 0; s < KF; ++s) {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        float2 v[2];
                        a_frag(mt, k0 + s, v);
                        tf32_split_a(v, ab[mt][s], as[mt][s]);
                    }
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) bv[nt][s] = b_frag(nt, k0 + s);
                }
                if (k0 == 0) prefetch();
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    u32 bb[KF][2], bs[KF][2];
#pragma unroll
                    for (int s = 0; s < KF; ++s) tf32_split_b(bv[nt][s], bb[s], bs[s]);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) mma_3xtf32_flush<KF>(acc[mt][nt], ab[mt], as[mt], bb, bs);
                }
            }
        }
    }

    // Epilogue. Every copy has landed (the pending groups are empty) and every warp is past its last
    // shared read before the staging overwrites the buffers.
    cp_async_wait<0>();
    float* stage = (float*)conv_smem;
    const float* bias = (const float*)p.bias;
    const float* res = (const float*)p.residual;
    float* out = (float*)p.out;
    constexpr int C4 = BN / 4;
#pragma unroll
    for (int pass = 0; pass < PASSES; ++pass) {
        __syncthreads();  // the main loop's (or the previous slab's) reads of the buffers are done
        if (wm / (WM / PASSES) == pass) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int hf = 0; hf < 2; ++hf) {
                        const int row = wm * WTM - pass * PROWS + mt * 16 + g + hf * 8, col = wn * WTN + nt * 8 + 2 * t;
                        *(float2*)(stage + row * LDC + col) = make_float2(acc[mt][nt][2 * hf], acc[mt][nt][2 * hf + 1]);
                    }
        }
        __syncthreads();
#pragma unroll 1
        for (int i = tid; i < PROWS * C4; i += THREADS) {
            const int r = i / C4, c = (i - r * C4) * 4;
            const int m = m0 + pass * PROWS + r, n = n0 + c;
            if (m >= p.M || n >= p.Cout) continue;
            const float4 s = *(const float4*)(stage + r * LDC + c);
            float v[4] = {s.x, s.y, s.z, s.w};
            if (bias) {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (n + j < p.Cout) v[j] += bias[n + j];
            }
            const i64 o = (i64)m * p.Cout + n;
            if (p.vec_out) {
                // Cout % 4 == 0 and n % 4 == 0: all 4 channels exist and the 16-byte accesses are
                // aligned (base addresses 16-byte aligned, checked by the launcher). A residual that is
                // out itself is read before this thread writes the same 16 bytes.
                if (res) {
                    const float4 rv = *(const float4*)(res + o);
                    v[0] += rv.x, v[1] += rv.y, v[2] += rv.z, v[3] += rv.w;
                }
                *(float4*)(out + o) = make_float4(v[0], v[1], v[2], v[3]);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (n + j < p.Cout) out[o + j] = res ? v[j] + res[o + j] : v[j];
            }
        }
    }
}

// Entry points `conv3d_tf32_f32_m{BM}n{BN}w{warps}s{STAGES}`; the tile table in
// runtime/ops/conv/tf32.rs lists exactly these. WM × WN warps; MINB is the CTAs per SM the register
// allocator aims for (launch bounds); KF the k8 steps per flush of the partial accumulators: 1 for
// every tile, so that an output's sums are rounded the same way whichever tile the launcher picks from
// the GEMM's size (a tiled or frame-by-frame VAE pass then gives the untiled pass's bits; KF = 2 on
// some tiles made them differ in the last bits).
#define CONV_TF32_ENTRY(BM, BN, WM, WN, W, S, MINB, KF)                                                    \
    extern "C" __global__ void __launch_bounds__(W * 32, MINB) conv3d_tf32_f32_m##BM##n##BN##w##W##s##S( \
        const ConvParams p) {                                                                            \
        static_assert(WM * WN == W, "warp count");                                                       \
        conv3d_tf32_tile<BM, BN, WM, WN, S, KF>(p);                                                      \
    }
CONV_TF32_ENTRY(128, 192, 2, 4, 8, 3, 1, 1)
CONV_TF32_ENTRY(128, 128, 2, 4, 8, 4, 1, 1)
CONV_TF32_ENTRY(128, 96, 4, 2, 8, 4, 2, 1)
CONV_TF32_ENTRY(128, 64, 2, 2, 4, 4, 2, 1)
CONV_TF32_ENTRY(64, 128, 2, 2, 4, 4, 2, 1)
CONV_TF32_ENTRY(64, 64, 2, 2, 4, 4, 3, 1)
CONV_TF32_ENTRY(128, 32, 4, 1, 4, 4, 3, 1)
