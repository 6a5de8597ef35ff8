// Implicit-GEMM 3D convolution on tensor cores for sm_80 and newer (mma.sync m16n8k16, cp.async,
// ldmatrix), channels-last, bf16/f16 in and out, f32 accumulation. The scheme is CUTLASS's implicit
// GEMM ("Implicit GEMM Convolution", CUTLASS docs): the im2col matrix is never built; each CTA gathers
// its A tile straight from the activations while it streams the weights as B.
//
//   GEMM  M = B·To·Ho·Wo output positions (row m = ((b·To + to)·Ho + ho)·Wo + wo, the out layout),
//         N = Cout, K = taps·Cin with taps = kt·kh·kw in (dt, dh, dw) order, channels fastest (the
//         weight layout [Cout, kt, kh, kw, Cin], so B rows are read in place).
//
// The K loop walks (tap, channel block of BK = 32): every K tile lies inside one tap, so a row of the
// A tile is 32 contiguous channels of one input pixel (four 16-byte cp.async chunks), and the tap's
// (dt, dh, dw) is one warp-uniform increment per tile instead of a division per element. When Cin is
// not a multiple of 32 the last block of each tap is partly past Cin: those chunks of A and B are
// zero-filled (Cin % 8 == 0 is required, so a chunk is wholly in or out), costing MMA work only on
// the layers with Cin % 32 != 0 (the decoder's conv_in, Cin = 16).
//
// The time axis is logical: [pad_t zero frames ; prev's P frames ; x's T frames]. A row's input pixel
// for a tap is frame f = to·st + dt - pad_t of [prev ; x], row ho·sh + dh - pad_top, column
// wo·sw + dw - pad_left; causal zero frames, spatial padding, rows past M and channels past Cin are
// cp.async copies with src-size 0 (zero fill), never a padded copy of the activations. prev is read in
// place (f < P), then x (f - P).
//
// Pipeline: STAGES shared-memory stages of (A: BM×BK, B: BN×BK); tile j + STAGES - 1 is in flight
// while tile j is multiplied (one cp.async group per tile, an empty group past the end keeps the
// count). Shared rows are padded to BK + 8 elements (80 bytes): the 8 row addresses of an ldmatrix
// phase then fall in distinct 16-byte bank groups.
//
// Epilogue: the f32 accumulators are staged in shared memory (reusing the pipeline buffers, in row slabs
// when the tile is larger than them), then each thread takes 8 consecutive output channels of a row:
// + bias (f32) + residual (f32), one rounding, one 16-byte store (when Cout % 8 == 0; else element
// stores for the channels < Cout).
#include "mma.cuh"

// Kernel parameters, passed by value; mirrored by `ConvMmaImage` in runtime/gpu/params_conv.rs.
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
    int vec_out;                          // Cout % 8 == 0: 16-byte residual loads and output stores
    int pad0;
    u64 norm_gamma;  // conv3d_wgmma_rows.cu's fused WanRMS_norm (0 here)
    int norm_silu, pad1;
};

extern __shared__ __align__(16) unsigned char conv_smem[];

namespace conv {
constexpr int BK = 32;        // K tile: 32 channels of one tap
constexpr int LDS = BK + 8;   // padded shared row, elements
constexpr int CH = BK / 8;    // 16-byte chunks per row
}  // namespace conv

template <class T, int BM, int BN, int WM, int WN, int STAGES>
__device__ __forceinline__ void conv3d_mma_tile(const ConvParams& p) {
    using namespace conv;
    constexpr int THREADS = WM * WN * 32;
    constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
    constexpr int MT = WTM / 16, NT = WTN / 8;   // m16 and n8 tiles per warp
    static_assert(MT * 16 * WM == BM && NT * 8 * WN == BN && NT % 2 == 0, "warp tile must be m16 × (2·n8) multiples");
    constexpr int RSTEP = THREADS / CH;          // tile rows covered by one pass of the loaders
    // Passes per tile; the last B pass is partial when BN is not a multiple of RSTEP (96 over 64).
    constexpr int AR = BM / RSTEP, BR = (BN + RSTEP - 1) / RSTEP;
    static_assert(AR * RSTEP == BM, "BM must be a multiple of THREADS / 4");
    constexpr u32 A_BYTES = BM * LDS * 2, STAGE_BYTES = (BM + BN) * LDS * 2;
    constexpr int LDC = BN + 8;  // f32 staging row of the epilogue (keeps float2 writes of a half-warp conflict-free)
    // The epilogue stages the f32 tile in the pipeline buffers, in PASSES row slabs when it is larger
    // (each slab is whole warp rows).
    constexpr int PASSES = (BM * LDC * 4 + STAGES * STAGE_BYTES - 1) / (STAGES * STAGE_BYTES);
    static_assert(WM % PASSES == 0, "epilogue slabs must be whole warp rows");
    constexpr int PROWS = BM / PASSES;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n_tile = (int)(blockIdx.x % (unsigned)p.n_tiles), m_tile = (int)(blockIdx.x / (unsigned)p.n_tiles);
    const int m0 = m_tile * BM, n0 = n_tile * BN;
    const u32 smem = smem_u32(conv_smem);

    const u16* w = (const u16*)p.w;
    const int Cin = p.Cin;
    const i64 frame = (i64)p.H * p.W * Cin;  // elements per frame
    const int taps = p.kt * p.kh * p.kw;

    // Loader mapping: thread tid copies chunk column lc of tile rows lr, lr + RSTEP, ...
    const int lc = tid % CH, lr = tid / CH;
    // Per A row, tap-invariant, computed once: the first logical frame to·st - pad_t of [prev ; x]
    // (-2^30 past M, so every tap's frame is negative and the row zero-filled), the first input row and
    // column (negative inside the padding), and the element offsets of that (frame, row, column) in prev
    // and in x (possibly out of range: only offsets of in-range taps are dereferenced). A tap then adds
    // one warp-uniform offset dt·frame + (dh·W + dw)·Cin + channel.
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
    // The next K tile to load: channel block, tap and its (dt, dh, dw).
    int ld_cb = 0, ld_tap = 0, ld_dt = 0, ld_dh = 0, ld_dw = 0;

    auto load_tile = [&](int stage) {
        const u32 sA = smem + stage * STAGE_BYTES, sB = sA + A_BYTES;
        const int ch = ld_cb * BK + lc * 8;
        const bool ch_ok = ch < Cin;
        const i64 tap_off = ld_dt * frame + (i64)(ld_dh * p.W + ld_dw) * Cin + ch;
#pragma unroll
        for (int i = 0; i < AR; ++i) {
            const int f = a_f[i] + ld_dt, hi = a_h[i] + ld_dh, wi = a_w[i] + ld_dw;
            const bool v = ch_ok && f >= 0 && (unsigned)hi < (unsigned)p.H && (unsigned)wi < (unsigned)p.W;
            // Byte addresses as integers (an out-of-range offset is never a pointer); an invalid copy
            // still needs a mapped source address: w is never empty (x may be).
            const u64 src = f < p.P ? p.prev + (u64)(a_prev[i] + tap_off) * 2 : p.x + (u64)(a_x[i] + tap_off) * 2;
            cp_async_16(sA + (u32)(((lr + i * RSTEP) * LDS + lc * 8) * 2), (const void*)(v ? src : p.w), v);
        }
#pragma unroll
        for (int i = 0; i < BR; ++i) {
            if (BN % RSTEP == 0 || lr + i * RSTEP < BN) {
                const int n = n0 + lr + i * RSTEP;
                const bool v = ch_ok && n < p.Cout;
                const u16* src = v ? w + ((i64)n * taps + ld_tap) * Cin + ch : w;
                cp_async_16(sB + (u32)(((lr + i * RSTEP) * LDS + lc * 8) * 2), src, v);
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

    // Warp tile (wm, wn); ldmatrix lane addressing as in attention_mma.cu: A (row-major m×k) lane l
    // points at row l & 15, column (l >> 4)·8 (a0..a3); B stored [n][k] points at n (l & 7) + (l >> 4)·8,
    // k ((l >> 3) & 1)·8, giving b0, b1 of n8 tile 2·np and of tile 2·np + 1.
    const int wm = warp / WN, wn = warp % WN;
    const u32 a_lane = (u32)(((wm * WTM + (lane & 15)) * LDS + (lane >> 4) * 8) * 2);
    const u32 b_lane = (u32)(((wn * WTN + (lane & 7) + (lane >> 4) * 8) * LDS + ((lane >> 3) & 1) * 8) * 2);

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

#pragma unroll 1
    for (int kt = 0; kt < ktiles; ++kt) {
        // Tile kt has landed (at most STAGES - 2 younger groups pending) for every thread, and every
        // warp is done with tile kt - 1, whose stage the next copy overwrites.
        cp_async_wait<STAGES - 2>();
        __syncthreads();

        const u32 sA = smem + (u32)(kt % STAGES) * STAGE_BYTES, sB = sA + A_BYTES;
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            if (kk == 1) {
                // Tile kt + STAGES - 1 is issued between the two k16 steps (after kk = 0's ldmatrix, so
                // its address arithmetic overlaps kk = 0's MMAs rather than delaying them).
                const int next = kt + STAGES - 1;
                if (next < ktiles) load_tile(next % STAGES);
                cp_async_commit();
            }
            u32 a[MT][4], b[NT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
                ldsm_x4(sA + a_lane + (u32)((mt * 16 * LDS + kk * 16) * 2), a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np)
                ldsm_x4(sB + b_lane + (u32)((np * 16 * LDS + kk * 16) * 2), b[2 * np][0], b[2 * np][1], b[2 * np + 1][0],
                        b[2 * np + 1][1]);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) mma16816(T(), acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
        }
    }

    // Epilogue. Every copy has landed (the pending groups are empty) and every warp is past its last
    // ldmatrix before the staging overwrites the buffers.
    cp_async_wait<0>();
    float* stage = (float*)conv_smem;
    const int g = lane >> 2, t = lane & 3;
    const u16* bias = (const u16*)p.bias;
    const u16* res = (const u16*)p.residual;
    u16* out = (u16*)p.out;
    constexpr int C8 = BN / 8;
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
        for (int i = tid; i < PROWS * C8; i += THREADS) {
            const int r = i / C8, c = (i - r * C8) * 8;
            const int m = m0 + pass * PROWS + r, n = n0 + c;
            if (m >= p.M || n >= p.Cout) continue;
            float v[8];
            const float4 lo = *(const float4*)(stage + r * LDC + c), hi = *(const float4*)(stage + r * LDC + c + 4);
            v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
            if (bias) {
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (n + j < p.Cout) v[j] += T::load(bias[n + j]);
            }
            const i64 o = (i64)m * p.Cout + n;
            if (p.vec_out) {
                // Cout % 8 == 0 and n % 8 == 0: all 8 channels exist and the 16-byte accesses are
                // aligned (base addresses 16-byte aligned, checked by the launcher).
                if (res) {
                    const uint4 rv = *(const uint4*)(res + o);
                    const u32 rw[4] = {rv.x, rv.y, rv.z, rv.w};
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        v[2 * j] += T::load((u16)(rw[j] & 0xffffu));
                        v[2 * j + 1] += T::load((u16)(rw[j] >> 16));
                    }
                }
                uint4 ov;
                ov.x = pack2(T(), v[0], v[1]);
                ov.y = pack2(T(), v[2], v[3]);
                ov.z = pack2(T(), v[4], v[5]);
                ov.w = pack2(T(), v[6], v[7]);
                *(uint4*)(out + o) = ov;
            } else {
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (n + j < p.Cout) out[o + j] = T::store(res ? v[j] + T::load(res[o + j]) : v[j]);
            }
        }
    }
}

// Entry points `conv3d_mma_{dtype}_m{BM}n{BN}w{warps}s{STAGES}`; the tile table in
// runtime/ops/conv/mma.rs lists exactly these. WM × WN warps; MINB is the CTAs per SM the register
// allocator aims for (launch bounds).
#define CONV_ENTRY(dt, T, BM, BN, WM, WN, W, S, MINB)                                                          \
    extern "C" __global__ void __launch_bounds__(W * 32, MINB) conv3d_mma_##dt##_m##BM##n##BN##w##W##s##S( \
        const ConvParams p) {                                                                                \
        static_assert(WM * WN == W, "warp count");                                                           \
        conv3d_mma_tile<T, BM, BN, WM, WN, S>(p);                                                            \
    }
#define CONV_ENTRIES(dt, T)                        \
    CONV_ENTRY(dt, T, 256, 128, 4, 2, 8, 3, 1)     \
    CONV_ENTRY(dt, T, 256, 96, 4, 2, 8, 3, 1)      \
    CONV_ENTRY(dt, T, 128, 192, 2, 4, 8, 3, 1)     \
    CONV_ENTRY(dt, T, 128, 128, 2, 2, 4, 4, 2)     \
    CONV_ENTRY(dt, T, 128, 128, 2, 4, 8, 4, 2)     \
    CONV_ENTRY(dt, T, 128, 96, 2, 2, 4, 4, 2)      \
    CONV_ENTRY(dt, T, 128, 64, 2, 2, 4, 4, 3)      \
    CONV_ENTRY(dt, T, 64, 128, 2, 2, 4, 4, 3)      \
    CONV_ENTRY(dt, T, 64, 64, 2, 2, 4, 4, 4)       \
    CONV_ENTRY(dt, T, 128, 32, 4, 1, 4, 4, 4)
CONV_ENTRIES(bf16, BF16)
CONV_ENTRIES(f16, F16)
