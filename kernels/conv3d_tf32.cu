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
// each product as big_a·big_b + big_a·small_b + small_a·big_b (three mma.sync into one accumulator,
// CUTLASS's order: the small terms first); small_a·small_b (≤ 2^-22·|ab|) is dropped. tf32×tf32
// products are exact in f32, so each product is off by at most about 3·2^-22·|ab| (the dropped term
// and the two roundings of the small parts); the sums are f32 accumulations on the tensor cores.
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
};

extern __shared__ __align__(16) unsigned char conv_smem[];

namespace conv_tf32 {
constexpr int BK = 16;       // K tile: 16 channels (floats) of one tap
constexpr int LDS = BK + 8;  // padded shared row, floats
constexpr int CH = BK / 4;   // 16-byte chunks per row
}  // namespace conv_tf32

template <int BM, int BN, int WM, int WN, int STAGES>
__device__ __forceinline__ void conv3d_tf32_tile(const ConvParams& p) {
    using namespace conv_tf32;
    constexpr int THREADS = WM * WN * 32;
    constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
    constexpr int MT = WTM / 16, NT = WTN / 8;   // m16 and n8 tiles per warp
    static_assert(MT * 16 * WM == BM && NT * 8 * WN == BN, "warp tile must be m16 × n8 multiples");
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
    // at physical columns kk·8 + 2t, 2t + 1 (logical k t and t + 4).
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
#pragma unroll
        for (int kk = 0; kk < BK / 8; ++kk) {
            // B fragments of the whole warp tile, split once per k8 step.
            u32 bb[NT][2], bs[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float2 v = *(const float2*)(sB + b_lane + nt * 8 * LDS + kk * 8);
                tf32_split(v.x, bb[nt][0], bs[nt][0]);
                tf32_split(v.y, bb[nt][1], bs[nt][1]);
            }
            float2 av[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                av[mt][0] = *(const float2*)(sA + a_lane + mt * 16 * LDS + kk * 8);
                av[mt][1] = *(const float2*)(sA + a_lane + (mt * 16 + 8) * LDS + kk * 8);
            }
            if (kk == 0) {
                // Tile kt + STAGES - 1 is issued after the first k8 step's shared reads, so its address
                // arithmetic overlaps the MMAs.
                const int next = kt + STAGES - 1;
                if (next < ktiles) load_tile(next % STAGES);
                cp_async_commit();
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                u32 ab[4], as[4];
                tf32_split(av[mt][0].x, ab[0], as[0]);  // A[g][t]
                tf32_split(av[mt][1].x, ab[1], as[1]);  // A[g+8][t]
                tf32_split(av[mt][0].y, ab[2], as[2]);  // A[g][t+4]
                tf32_split(av[mt][1].y, ab[3], as[3]);  // A[g+8][t+4]
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    mma1688_tf32(acc[mt][nt], as, bb[nt][0], bb[nt][1]);
                    mma1688_tf32(acc[mt][nt], ab, bs[nt][0], bs[nt][1]);
                    mma1688_tf32(acc[mt][nt], ab, bb[nt][0], bb[nt][1]);
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
// allocator aims for (launch bounds).
#define CONV_TF32_ENTRY(BM, BN, WM, WN, W, S, MINB)                                                        \
    extern "C" __global__ void __launch_bounds__(W * 32, MINB) conv3d_tf32_f32_m##BM##n##BN##w##W##s##S( \
        const ConvParams p) {                                                                            \
        static_assert(WM * WN == W, "warp count");                                                       \
        conv3d_tf32_tile<BM, BN, WM, WN, S>(p);                                                          \
    }
CONV_TF32_ENTRY(128, 192, 2, 4, 8, 3, 1)
CONV_TF32_ENTRY(128, 128, 2, 4, 8, 4, 1)
CONV_TF32_ENTRY(128, 96, 4, 2, 8, 4, 2)
CONV_TF32_ENTRY(128, 64, 2, 2, 4, 4, 2)
CONV_TF32_ENTRY(64, 128, 2, 2, 4, 4, 2)
CONV_TF32_ENTRY(64, 64, 2, 2, 4, 4, 3)
CONV_TF32_ENTRY(128, 32, 4, 1, 4, 4, 3)
