// Implicit-GEMM 3D convolution with Hopper's warpgroup MMA (sm_90a): the contract of conv3d_mma.cu (same
// parameters, same zero-fill gather of causal frames and spatial padding, same epilogue) with the
// products on wgmma.m64nNk16. The default for bf16/f16 on sm_90 (runtime/ops/conv/wgmma.rs).
//
// Tile: BM = 64·WGS output rows × BN output channels (96, 128 or 192: the VAE's 96- and 192-channel
// layers fill their N tile exactly), one warpgroup per 64 rows. The reduction runs over pieces of one
// tap's channels: 64 per piece, or 32 when Cin % 64 != 0 (two pieces per K tile of 64), so Cin = 96
// wastes no MMA work (a 64-channel block per tap would zero-fill a quarter of it). Every thread gathers
// with cp.async (no TMA: the A tile is a gather, not a box) into shared memory laid out as wgmma's
// 128-byte swizzle (wgmma.cuh): row r of a tile is 128 bytes at r·128, its 16-byte chunk c at position
// c ^ (r % 8), tiles 1024-byte aligned. Both operands are K-major (A: [row][k], B: w's [cout][k]),
// descriptors with SBO = 1024.
//
// Per K tile: wait for its cp.async group, fence.proxy.async (the generic-proxy writes of cp.async
// become visible to wgmma's async-proxy reads), barrier; four wgmma k16 steps are committed, the next
// tile's copies are issued while they run, then wgmma.wait_group 0 (the stage the next iteration
// overwrites is free once every warpgroup has passed that wait and the next barrier). Variants measured
// on an H100 and dropped (benches/conv_bench.rs, 2026-12-05): one product kept in flight across the
// barrier, the A gather through L1 (cp.async.ca), 256-row tiles; none beat these three tiles.
#include "wgmma.cuh"

// Kernel parameters, passed by value: the layout of `ConvParams` in conv3d_mma.cu (one Rust image,
// `ConvMmaImage` in runtime/gpu/params_conv.rs, serves both).
struct ConvParams {
    u64 x, prev, w, bias, residual, out;
    int T, P, H, W, Cin;
    int To, Ho, Wo, Cout;
    int kt, kh, kw;
    int st, sh, sw;
    int pad_t, pad_top, pad_left;
    int M;
    int cin_blocks;  // ceil(Cin / piece): pieces per tap
    int ktiles;      // ceil(taps·cin_blocks / pieces per K tile)
    int n_tiles;     // ceil(Cout / 128)
    int vec_out;
    int piece;       // channels per piece: 64, or 32 when Cin % 64 != 0 (unused by conv3d_mma.cu)
    u64 norm_gamma;  // conv3d_wgmma_rows.cu's fused WanRMS_norm (0 here)
    int norm_silu, pad1;
};

extern __shared__ __align__(1024) unsigned char convw_smem[];

#ifdef WANRT_SM90A

__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

template <class T, int WGS, int BN, int STAGES>
__device__ __forceinline__ void conv3d_wgmma_tile(const ConvParams& p) {
    constexpr int BM = 64 * WGS, BK = 64, CH = BK / 8;
    constexpr int THREADS = WGS * 128;
    constexpr int RSTEP = THREADS / CH;
    constexpr int AR = BM / RSTEP, BR = (BN + RSTEP - 1) / RSTEP;
    static_assert(AR * RSTEP == BM, "tile rows must be a multiple of THREADS / 8");
    static_assert(BN % 16 == 0 && BN >= 16, "wgmma N");
    constexpr u32 A_BYTES = BM * 128, STAGE_BYTES = (BM + BN) * 128;
    constexpr int LDC = BN + 8;
    static_assert(BM * LDC * 4 <= STAGES * STAGE_BYTES, "epilogue staging must fit the pipeline buffers");

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = tid >> 7;
    const int n_tile = (int)(blockIdx.x % (unsigned)p.n_tiles), m_tile = (int)(blockIdx.x / (unsigned)p.n_tiles);
    const int m0 = m_tile * BM, n0 = n_tile * BN;
    // The launcher asks for 1 KiB more than the stages need: the swizzle wants 1024-byte aligned tiles.
    const u32 smem = (smem_u32(convw_smem) + 1023u) & ~1023u;
    unsigned char* smem_ptr = convw_smem + (smem - smem_u32(convw_smem));

    const u16* w = (const u16*)p.w;
    const int Cin = p.Cin;
    const i64 frame = (i64)p.H * p.W * Cin;
    const int taps = p.kt * p.kh * p.kw;
    const int lc = tid % CH, lr = tid / CH;

    // Per A row: element offsets of its first input pixel (tap 0) in prev and in x, and a mask: bit t
    // (t < 27) set when tap t reads a real pixel (frame >= 0, row and column inside the image), bit
    // 27 + dt when time tap dt reads a cached frame (prev). Rows past M have no bits. The launcher keeps
    // taps <= 27 and kt <= 3. The mask replaces per-copy bounds arithmetic in the loop, and frees the
    // registers the piece counters need.
    u32 a_mask[AR];
    i64 a_prev[AR], a_x[AR];
#pragma unroll
    for (int i = 0; i < AR; ++i) {
        const int m = m0 + lr + i * RSTEP;
        a_mask[i] = 0;
        a_prev[i] = a_x[i] = 0;
        if (m < p.M) {
            int r = m / p.Wo;
            const int wo = m - r * p.Wo;
            const int ho = r % p.Ho;
            r /= p.Ho;
            const int to = r % p.To, b = r / p.To;
            const int f0 = to * p.st - p.pad_t, h0 = ho * p.sh - p.pad_top, w0 = wo * p.sw - p.pad_left;
            const i64 pix = ((i64)h0 * p.W + w0) * Cin;
            a_prev[i] = ((i64)b * p.P + f0) * frame + pix;
            a_x[i] = ((i64)b * p.T + f0 - p.P) * frame + pix;
            u32 mask = 0;
            for (int dt = 0, t = 0; dt < p.kt; ++dt) {
                if (f0 + dt < p.P) mask |= 1u << (27 + dt);
                for (int dh = 0; dh < p.kh; ++dh)
                    for (int dw = 0; dw < p.kw; ++dw, ++t)
                        if (f0 + dt >= 0 && (unsigned)(h0 + dh) < (unsigned)p.H && (unsigned)(w0 + dw) < (unsigned)p.W)
                            mask |= 1u << t;
            }
            a_mask[i] = mask;
        }
    }
    // Pieces: `cpp` (p.piece: 64, or 32 when Cin % 64 != 0) channels of one tap; a K tile of 64 holds
    // one or two, in the order (dt, dh, dw, channel block). This thread's 16-byte chunk lc belongs to
    // piece lc / (cpp / 8) of the tile, at channel (lc % (cpp / 8))·8 of it. Its counters (the piece's
    // tap, its time tap and block, and the spatial offset of its tap) move ppt pieces per tile; pieces
    // past the last (dt == kt) are zero-filled.
    const int cpp = p.piece, ppt = BK / cpp, cpc = cpp / 8;
    const int sub = (lc % cpc) * 8;
    int ld_cb = 0, ld_tap = 0, ld_dt = 0, ld_dh = 0, ld_dw = 0;
    auto advance = [&]() {
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
    for (int j = lc / cpc; j > 0; --j) advance();

    auto load_tile = [&](int stage) {
        const u32 sA = smem + stage * STAGE_BYTES, sB = sA + A_BYTES;
        const int ch = ld_cb * cpp + sub;
        const bool ch_ok = ch < Cin && ld_dt < p.kt;
        const i64 tap_off = ld_dt * frame + (i64)(ld_dh * p.W + ld_dw) * Cin + ch;
        const u32 from_prev = 1u << (27 + ld_dt), tap_bit = 1u << ld_tap;
#pragma unroll
        for (int i = 0; i < AR; ++i) {
            const bool v = ch_ok && (a_mask[i] & tap_bit);
            const u64 src = (a_mask[i] & from_prev) ? p.prev + (u64)(a_prev[i] + tap_off) * 2 : p.x + (u64)(a_x[i] + tap_off) * 2;
            const int row = lr + i * RSTEP;
            const u32 dst = sA + (u32)(row * 128 + ((lc ^ (row & 7)) << 4));
            cp_async_16(dst, (const void*)(v ? src : p.w), v);
        }
#pragma unroll
        for (int i = 0; i < BR; ++i) {
            const int row = lr + i * RSTEP, n = n0 + row;
            if (BR * RSTEP != BN && row >= BN) break;
            const bool v = ch_ok && n < p.Cout;
            const u16* src = v ? w + ((i64)n * taps + ld_tap) * Cin + ch : w;
            cp_async_16(sB + (u32)(row * 128 + ((lc ^ (row & 7)) << 4)), src, v);
        }
        for (int j = 0; j < ppt; ++j) advance();
    };

    const int ktiles = p.ktiles;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_tile(s);
        cp_async_commit();
    }

    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;

#pragma unroll 1
    for (int kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<STAGES - 2>();
        fence_proxy_async();
        __syncthreads();
        const u32 sA = smem + (u32)(kt % STAGES) * STAGE_BYTES, sB = sA + A_BYTES;
        const u64 da = desc_sw128(sA + wg * 64 * 128, 16, 1024), db = desc_sw128(sB, 16, 1024);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) wgmma_ss(T(), acc, da + (u64)((kk * 32) >> 4), db + (u64)((kk * 32) >> 4), 1u);
        wgmma_commit();
        // The stage of tile kt + STAGES - 1 last held tile kt - 1, whose products every warpgroup waited
        // for before the barrier above.
        const int next = kt + STAGES - 1;
        if (next < ktiles) load_tile(next % STAGES);
        cp_async_commit();
        wgmma_wait<0>();
        fence_regs(acc);
    }

    // Epilogue (as conv3d_mma.cu): stage the f32 tile, then 8 channels per thread with bias and
    // residual, one rounding, 16-byte stores when Cout % 8 == 0. Accumulator d[4c + 2hf + e] is row
    // 16·(warp in warpgroup) + g + 8hf of the warpgroup's 64, column 8c + 2q + e (wgmma.cuh).
    cp_async_wait<0>();
    __syncthreads();
    float* stage = (float*)smem_ptr;
    const int g = lane >> 2, q = lane & 3;
#pragma unroll
    for (int c = 0; c < BN / 8; ++c)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int row = wg * 64 + (warp & 3) * 16 + g + hf * 8, col = 8 * c + 2 * q;
            *(float2*)(stage + row * LDC + col) = make_float2(acc[4 * c + 2 * hf], acc[4 * c + 2 * hf + 1]);
        }
    __syncthreads();
    const u16* bias = (const u16*)p.bias;
    const u16* res = (const u16*)p.residual;
    u16* out = (u16*)p.out;
    constexpr int C8 = BN / 8;
#pragma unroll 1
    for (int i = tid; i < BM * C8; i += THREADS) {
        const int r = i / C8, c = (i - r * C8) * 8;
        const int m = m0 + r, n = n0 + c;
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

#define CONVW_BODY(T, WGS, BN, S) conv3d_wgmma_tile<T, WGS, BN, S>(p);
#else
#define CONVW_BODY(T, WGS, BN, S) asm volatile("trap;");
#endif  // WANRT_SM90A

// Entry points `conv3d_wgmma_{dtype}_m{64·WGS}n{BN}s{STAGES}`; the table in runtime/ops/conv/wgmma.rs
// lists exactly these. On targets other than sm_90a they compile to a trap (the launcher runs them on
// compute capability 9.0 only, where the registry compiles for sm_90a). The 96- and 128-wide tiles
// (85 and 97 KiB) run two CTAs per SM; the 192-wide one (121 KiB, 96 accumulators a thread) one.
#define CONVW_ENTRY(dt, T, BM, WGS, BN, S, MINB)                                                                  \
    extern "C" __global__ void __launch_bounds__(WGS * 128, MINB) conv3d_wgmma_##dt##_m##BM##n##BN##s##S(        \
        const ConvParams p) {                                                                                     \
        CONVW_BODY(T, WGS, BN, S)                                                                                 \
    }
#define CONVW_ENTRIES(dt, T)                  \
    CONVW_ENTRY(dt, T, 128, 2, 96, 3, 2)      \
    CONVW_ENTRY(dt, T, 128, 2, 128, 3, 2)     \
    CONVW_ENTRY(dt, T, 128, 2, 192, 3, 1)
CONVW_ENTRIES(bf16, BF16)
CONVW_ENTRIES(f16, F16)
