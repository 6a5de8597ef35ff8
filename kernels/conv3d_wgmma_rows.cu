// Implicit-GEMM 3D convolution on wgmma (sm_90a) for convs three taps wide at stride 1 with one column
// of padding each side (the Wan VAE's 3×3×3 causal convs and its per-frame 3×3 convs): every input row
// gathered into shared memory serves all three kw taps. conv3d_wgmma.cu gathers the A tile once per
// tap, so at 96 channels its 128×96 tile moves 28 KiB from L2 per 1.6 MFLOP and runs at the L2's
// bandwidth (about 330 TFLOP/s on an H100); here one (dt, dh, 64-channel) stage gathers 130 input rows
// once and multiplies them with the three kw taps' weights, 54 KiB per 4.7 MFLOP.
//
// Rows of the GEMM are positions of the *padded* width: M = B·To·Ho·(W + 2), row q = ((b·To + to)·Ho +
// ho)·(W + 2) + u, reading input column u − 1 (u = 0 and u = W + 1 are the zero padding). Output row
// q at tap dw then reads A row q + dw: with the tile's rows consecutive in q, tap dw is the same A tile
// shifted by dw rows. Rows with u >= W are computed and discarded (2 of every W + 2).
//
// The A tile uses wgmma's unswizzled K-major layout, so a shift by one row is a descriptor 16 bytes
// further (the 128-byte swizzle ties a row's layout to its address bits): core matrices of 8 rows ×
// 16 bytes, row r of 16-byte chunk c at c·LBO + r·16 (SBO = 128 from one 8-row group to the next,
// LBO = 137·16: 137 ≡ 1 mod 8 puts the eight chunks of a row in distinct banks for the cp.async
// writes). B (the weights, K-major [cout][tap][cin]) keeps conv3d_wgmma.cu's 128-byte swizzle (the
// 64-byte one for 32-channel blocks), one tile of BN rows per kw tap. Pipeline: STAGES stages of (A,
// three B tiles), one cp.async group each, as conv3d_wgmma.cu.
// Waiting for a stage's products one stage later (wgmma_wait<1>, loads STAGES − 2 ahead, so the tensor
// cores multiply through the barrier and the next loads) ran no faster on an H100 at any VAE layer
// (96 channels: 367 → 358-369 TFLOP/s; 192 and 384: within ±3% of the tiles below), so the wait stays
// where it is. At 96 channels no stage count, tile height or wait moves the rate off ~368. ncu (H100,
// 480p up_blocks.3 resblock conv): m128n96s3k32 keeps L2 82.7% busy (the three weight tiles are 69%
// of a stage's bytes, reloaded by every CTA) with the tensor pipe 41% busy; m256n96s3k32 halves the
// weight bytes per FLOP (L2 67.9%) but, one CTA of 8 warps per SM loading and multiplying in turn, is
// bound by latency (tensor 38%, issue slots 33%) at the same 2.42 ms. The warp-specialized m256 tile
// (WS below: the gathers on a third warpgroup, the multiplying ones waiting on mbarriers with one
// stage's wgmmas in flight) lifts them on an H100: 368 → 404 TFLOP/s (decoder, 480p) and 418
// (encoder) at 4 stages, 378 and 385 at 720p; the same tile without the loading warpgroup gave 352-361.
// Taller WS tiles carry fewer L2 bytes per FLOP (the 258, 386 or 514 gathered rows share one set of
// weight tiles): m384 (three m64 blocks a warpgroup) 400 → 433 TFLOP/s at 480p, 380 → 422 at 720p (H100;
// ncu: L2 80% → 78% busy, 2.06 → 1.97 ms). At 192 channels a WS m256n192 tile (192 accumulators a
// thread: loaders at 40 registers, their row offsets and masks in a shared-memory table) lost to the
// plain one (539 vs 611 TFLOP/s) and was dropped. m512n96 (192 accumulators, loaders at 40 registers, their
// rows in a shared-memory table; c1b6e8b) lost to m384 (332 vs 368-454 TFLOP/s, H200) and was dropped.
// Persistent m384 (PERSIST below): 454 → 484 at 480p, 421 → 492 at 720p (H200, dec.up3.res96). Next
// lead: the weights shared across CTAs (TMA multicast in a 2-CTA cluster).
#include "wgmma.cuh"

// The parameter block of conv3d_mma.cu (`ConvMmaImage` in runtime/gpu/params_conv.rs). Here M counts
// padded-width rows, ktiles the (dt, dh, channel block) stages and cin_blocks the 64-channel blocks of
// a stage; `piece` is unused.
struct ConvParams {
    u64 x, prev, w, bias, residual, out;
    int T, P, H, W, Cin;
    int To, Ho, Wo, Cout;
    int kt, kh, kw;
    int st, sh, sw;
    int pad_t, pad_top, pad_left;
    int M;
    int cin_blocks;
    int ktiles;
    int n_tiles;
    int vec_out;
    int piece;
    u64 norm_gamma;  // WanRMS_norm's gamma [Cout] (0: no norm), see the epilogue
    int norm_silu, pad1;
};

extern __shared__ __align__(1024) unsigned char convr_smem[];

#ifdef WANRT_SM90A

__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Arrives on `bar` once every cp.async this thread issued so far has landed (the barrier's count
// includes this arrival: .noinc).
__device__ __forceinline__ void cp_async_arrive_noinc(u32 bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

// WS (warp-specialized): a third warpgroup issues every gather (LT = 128 loader threads) and signals
// each stage's arrival on an mbarrier (`full`); the two multiplying warpgroups wait on it, keep one
// stage's wgmmas in flight (wgmma_wait<1>) and release the stage before it (`empty`). No block-wide
// barrier in the main loop; the loaders hand their registers to the multiplying warpgroups
// (setmaxnreg, within the MINB CTAs per SM of the launch bounds) and leave before the epilogue, which
// the two multiplying warpgroups run on named barrier 1. Otherwise all 256 threads load and multiply in
// turn, a __syncthreads a stage.
// PERSIST (WS at m256 and m384, entry suffix `p`): a grid of at most one CTA per SM walks the tiles
// (tile = blockIdx.x, + gridDim.x, ...), the loaders running ahead into the next tile's stages while the
// multiplying warpgroups finish a tile and write it out (through a staging area of its own instead of
// the pipeline buffers), so the pipeline fill and the CTA's start are paid once per SM, not per tile.
template <class T, int BM, int BN, int STAGES, int BK, bool WS, int MINB, bool PERSIST>
__device__ __forceinline__ void conv3d_rows_tile(const ConvParams& p) {
    constexpr int CONSUMERS = 256, EPI = 128;  // CONSUMERS: the multiplying threads, which run the epilogue; EPI: rows per pass
    // WS registers per thread: 384 threads × the launch cap (65536 / (384·MINB), rounded down to 8) split as
    // 128 loaders × LOAD_REGS + 256 multipliers × MMA_REGS (ptxas allocates each side's code within its
    // share). m384 (three m64 blocks a warpgroup, 144 accumulators) moves more to the multipliers; its
    // loaders keep 88 for their 13 rows' offsets and masks.
    constexpr u32 LOAD_REGS = MINB == 2 ? 56 : BM == 384 ? 88 : 136, MMA_REGS = MINB == 2 ? 88 : BM == 384 ? 208 : 184;
    static_assert(!WS || 128 * LOAD_REGS + 256 * MMA_REGS <= 384 * ((65536 / (384 * MINB)) / 8 * 8), "register split past the cap");
    constexpr int LT = WS ? 128 : 256;        // threads issuing the gathers
    constexpr int MH = BM / EPI;              // m64 row blocks per warpgroup
    constexpr int CH = BK / 8, RSTEP = LT / CH, KSTEPS = BK / 16;  // 16-byte chunks per row, rows per pass
    constexpr int AROWS = BM + 2;                 // the tile's rows and the two that tap dw = 2 reaches past it
    constexpr int CS = (AROWS + 6) / 8 * 8 + 1;   // rows per chunk column: >= AROWS, ≡ 1 mod 8
    constexpr u32 LBO = CS * 16;
    constexpr u32 A_SPAN = (CH * LBO + 1023) / 1024 * 1024;  // B tiles stay 1024-byte aligned
    constexpr u32 BROW = BK * 2, B_BYTES = BN * BROW;  // B rows: 128 bytes, 128-byte swizzle (k64); 64, 64-byte (k32)
    constexpr u32 STAGE_BYTES = A_SPAN + 3 * B_BYTES;
    constexpr int AI = (AROWS + RSTEP - 1) / RSTEP, BI = (3 * BN + RSTEP - 1) / RSTEP;
    constexpr int LDC = BN + 8;
    static_assert(BK == 64 || BK == 32, "channel blocks of 64 or 32");
    static_assert(BM == 128 || BM == 256 || (BM == 384 && WS), "128 or 256 rows, or 384 warp-specialized");
    // Staging, plus the fused norm's per-chunk partial sums and per-row inverse norms.
    static_assert(EPI * LDC * 4 + EPI * (BN / 8 + 1) * 4 <= STAGES * STAGE_BYTES, "epilogue staging must fit the pipeline buffers");
    static_assert(!PERSIST || WS, "persistent tiles are warp-specialized");

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = tid >> 7;
    // The tile this CTA works on: (M tile, N tile) = (tile / n_tiles, tile % n_tiles).
    int m0 = (int)(blockIdx.x / (unsigned)p.n_tiles) * BM, n0 = (int)(blockIdx.x % (unsigned)p.n_tiles) * BN;
    auto set_tile = [&](int tile) {
        m0 = (int)((unsigned)tile / (unsigned)p.n_tiles) * BM, n0 = (int)((unsigned)tile % (unsigned)p.n_tiles) * BN;
    };
    const int tiles_end = (p.M + BM - 1) / BM * p.n_tiles;  // PERSIST: the tiles the grid walks
    const u32 smem = (smem_u32(convr_smem) + 1023u) & ~1023u;
    unsigned char* smem_ptr = convr_smem + (smem - smem_u32(convr_smem));

    const u16* w = (const u16*)p.w;
    const int Cin = p.Cin, Wp = p.W + 2;
    const i64 frame = (i64)p.H * p.W * Cin;
    const int taps = p.kt * p.kh * 3;
    const int ltid = WS ? tid - CONSUMERS : tid;  // negative: a WS multiplying thread, which loads nothing
    const bool loader = ltid >= 0;
    const int chunk = ltid % CH, lr = ltid / CH;
    // WS: full[s] (LT cp.async arrivals) and empty[s] (CONSUMERS arrivals) after the stages.
    const u32 bars = smem + STAGES * STAGE_BYTES;
    auto full = [&](int st) { return bars + 8u * (u32)st; };
    auto empty = [&](int st) { return bars + 8u * (u32)(STAGES + st); };
    if constexpr (WS) {
        if (tid == 0) {
            for (int st = 0; st < STAGES; ++st) {
                mbar_init(full(st), LT);
                mbar_init(empty(st), CONSUMERS);
            }
            mbar_init_fence();
        }
        __syncthreads();
    }

    // Per A row this thread loads: element offsets of its input pixel at (dt, dh) = (0, 0) in prev and
    // in x, and a mask: bit dt·kh + dh set when that stage reads a real pixel (frame >= 0, row inside,
    // column u − 1 inside), bit 16 + dt when time tap dt reads a cached frame. Rows past M have none. The
    // launcher keeps kt·kh <= 16 and x, prev under 2^31 elements (32-bit offsets: registers for two CTAs
    // per SM).
    u32 a_mask[AI];
    int a_prev[AI], a_x[AI];
    auto build_rows = [&] {
#pragma unroll
        for (int i = 0; i < AI; ++i) {
            const int q = m0 + lr + i * RSTEP;
            u32 mask = 0;
            int off_prev = 0, off_x = 0;
            if (loader && q < p.M) {
                int r = q / Wp;
                const int wi = q - r * Wp - 1;
                const int ho = r % p.Ho;
                r /= p.Ho;
                const int to = r % p.To, b = r / p.To;
                const int f0 = to * p.st - p.pad_t, h0 = ho * p.sh - p.pad_top;
                const i64 pix = ((i64)h0 * p.W + wi) * Cin;
                off_prev = (int)(((i64)b * p.P + f0) * frame + pix);
                off_x = (int)(((i64)b * p.T + f0 - p.P) * frame + pix);
                if ((unsigned)wi < (unsigned)p.W)
                    for (int dt = 0, t = 0; dt < p.kt; ++dt) {
                        if (f0 + dt < p.P) mask |= 1u << (16 + dt);
                        for (int dh = 0; dh < p.kh; ++dh, ++t)
                            if (f0 + dt >= 0 && (unsigned)(h0 + dh) < (unsigned)p.H) mask |= 1u << t;
                    }
            }
            a_mask[i] = mask;
            a_prev[i] = off_prev;
            a_x[i] = off_x;
        }
    };
    if constexpr (!PERSIST) build_rows();  // PERSIST: by the loaders, per tile

    // The stage being loaded: (dt, dh) as `ld_tap` = dt·kh + dh, and its BK-channel block.
    int ld_cb = 0, ld_tap = 0, ld_dt = 0, ld_dh = 0;
    auto load_stage = [&](int stage) {
        const u32 sA = smem + stage * STAGE_BYTES, sB = sA + A_SPAN;
        const int ch = ld_cb * BK + chunk * 8;
        const i64 tap_off = ld_dt * frame + (i64)ld_dh * p.W * Cin + ch;
        const u32 from_prev = 1u << (16 + ld_dt), tap_bit = 1u << ld_tap;
#pragma unroll
        for (int i = 0; i < AI; ++i) {
            const int row = lr + i * RSTEP;
            if (AI * RSTEP != AROWS && row >= AROWS) break;
            const bool v = a_mask[i] & tap_bit;
            const u64 src = (a_mask[i] & from_prev) ? p.prev + (u64)(a_prev[i] + tap_off) * 2 : p.x + (u64)(a_x[i] + tap_off) * 2;
            cp_async_16(sA + chunk * LBO + (u32)row * 16, (const void*)(v ? src : p.w), v);
        }
        // B: the three kw taps' BN × BK weight tiles. Where BN is a multiple of the rows per pass, a
        // thread's rows are the same in each tap (three row bases for n96 at k64, not nine); else rows
        // j = dw·BN + n run flat.
        const int wtap = ld_tap * 3 * Cin + ch;
        if constexpr (BN % RSTEP == 0) {
#pragma unroll
            for (int i = 0; i < BN / RSTEP; ++i) {
                const int row = lr + i * RSTEP, n = n0 + row;
                const bool v = n < p.Cout;
                const int pos = BK == 64 ? chunk ^ (row & 7) : chunk ^ ((row >> 1) & 3);
                const u16* src = w + (i64)n * taps * Cin + wtap;
#pragma unroll
                for (int dw = 0; dw < 3; ++dw)
                    cp_async_16(sB + dw * B_BYTES + (u32)(row * BROW + (pos << 4)), v ? src + dw * Cin : w, v);
            }
        } else {
#pragma unroll
            for (int i = 0; i < BI; ++i) {
                const int j = lr + i * RSTEP;
                if (BI * RSTEP != 3 * BN && j >= 3 * BN) break;
                const int dw = j / BN, row = j - dw * BN, n = n0 + row;
                const bool v = n < p.Cout;
                const int pos = BK == 64 ? chunk ^ (row & 7) : chunk ^ ((row >> 1) & 3);
                const u16* src = v ? w + (i64)n * taps * Cin + wtap + dw * Cin : w;
                cp_async_16(sB + dw * B_BYTES + (u32)(row * BROW + (pos << 4)), src, v);
            }
        }
        if (++ld_cb == p.cin_blocks) {
            ld_cb = 0;
            ++ld_tap;
            if (++ld_dh == p.kh) {
                ld_dh = 0;
                ++ld_dt;
            }
        }
    };

    const int stages = p.ktiles;
    float acc[MH][BN / 2];
    auto zero_acc = [&] {
#pragma unroll
        for (int h = 0; h < MH; ++h)
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) acc[h][i] = 0.f;
    };

    // A stage's products: three kw taps × the K steps of its channel block × the m64 blocks.
    auto multiply = [&](int st) {
        const u32 sA = smem + (u32)st * STAGE_BYTES, sB = sA + A_SPAN;
        wgmma_fence();
#pragma unroll
        for (int dw = 0; dw < 3; ++dw) {
            const u64 db = BK == 64 ? desc_sw128(sB + dw * B_BYTES, 16, 1024) : desc_sw64(sB + dw * B_BYTES, 16, 512);
#pragma unroll
            for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
                for (int h = 0; h < MH; ++h) {
                    const u64 da = desc_interleave(sA + (u32)(h * EPI + wg * 64 + dw) * 16, LBO, 128);
                    wgmma_ss(T(), acc[h], da + (u64)((kk * 2 * LBO) >> 4), db + (u64)((kk * 32) >> 4), 1u);
                }
        }
        wgmma_commit();
    };

    auto epilogue = [&] {
        // Epilogue (as conv3d_wgmma.cu), skipping the padded-width rows u >= Wo, in passes of 128 rows:
        // pass h stages acc[h], tile rows h·128 + r, position q = m0 + h·128 + r, output row (q / Wp)·Wo +
        // q % Wp.
        // Every product is in registers (WS: of both warpgroups) before the staging overwrites the stages.
        auto epi_sync = [] {
            if constexpr (WS) named_sync(1, CONSUMERS);
            else __syncthreads();
        };
        cp_async_wait<0>();
        epi_sync();
        // PERSIST: after the barriers (the loaders are filling the pipeline buffers with the next tile).
        float* stage = (float*)(PERSIST ? smem_ptr + (bars - smem) + 256 : smem_ptr);
        const int g = lane >> 2, qd = lane & 3;
        const u16* bias = (const u16*)p.bias;
        const u16* res = (const u16*)p.residual;
        u16* out = (u16*)p.out;
        constexpr int C8 = BN / 8;
        // Fused WanRMS_norm (diffusers `WanRMS_norm`: F.normalize over channels · sqrt(C) · gamma, then SiLU
        // when norm_silu), on the f32 sums before any rounding. The launcher sets it only when this tile
        // holds every channel (one N tile, Cout % 8 == 0) and there is no residual. Each (row, 8-channel
        // chunk) writes its sum of squares to `part`, then one thread per row adds its chunks in order (a
        // fixed order: the same bits every run) and keeps 1 / max(||y||, 1e-12) in `inv_norm`.
        const u16* gamma = PERSIST ? nullptr : (const u16*)p.norm_gamma;  // PERSIST: no room for the norm's sums (the launcher refuses it)
        float* part = stage + EPI * LDC;
        float* inv_norm = part + EPI * C8;
        const float norm_scale = sqrtf((float)p.Cout);
        // Item i of the pass at tile row mh: false where it writes nothing (a row past M or a padded-width
        // position u >= Wo, channels past Cout), else true with its output element offset in o.
        auto item_offset = [&](int mh, int i, i64& o) -> bool {
            const int r = i / C8, c = (i - r * C8) * 8;
            const int q = mh + r, n = n0 + c;
            if (i >= EPI * C8 || q >= p.M || n >= p.Cout) return false;
            const int line = q / Wp, u = q - line * Wp;
            if (u >= p.Wo) return false;
            o = ((i64)line * p.Wo + u) * p.Cout + n;
            return true;
        };
        // Writes item i (its output at offset o): bias, norm, residual (its 16-byte pack `rv` where
        // vec_out), rounding.
        auto write_item = [&](int i, i64 o, uint4 rv) {
            const int r = i / C8, c = (i - r * C8) * 8, n = n0 + c;
            float v[8];
            const float4 lo = *(const float4*)(stage + r * LDC + c), hi = *(const float4*)(stage + r * LDC + c + 4);
            v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
            if (bias) {
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (n + j < p.Cout) v[j] += T::load(bias[n + j]);
            }
            if (gamma) {
                const float inv = inv_norm[r];
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    float y = v[j] * inv * norm_scale * T::load(gamma[n + j]);
                    if (p.norm_silu) y = y / (1.f + expf(-y));
                    v[j] = y;
                }
            }
            if (p.vec_out) {
                if (res) {
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
        };
#pragma unroll
        for (int h = 0; h < MH; ++h) {
            if (h > 0) epi_sync();  // every thread is done reading the previous pass's staging
#pragma unroll
            for (int c = 0; c < BN / 8; ++c)
#pragma unroll
                for (int hf = 0; hf < 2; ++hf) {
                    const int row = wg * 64 + (warp & 3) * 16 + g + hf * 8, col = 8 * c + 2 * qd;
                    *(float2*)(stage + row * LDC + col) = make_float2(acc[h][4 * c + 2 * hf], acc[h][4 * c + 2 * hf + 1]);
                }
            const int mh = m0 + h * EPI;
            epi_sync();
            if (gamma) {
#pragma unroll 1
                for (int i = tid; i < EPI * C8; i += CONSUMERS) {
                    const int r = i / C8, c = (i - r * C8) * 8;
                    float ss = 0.f;
                    if (c < p.Cout) {
#pragma unroll
                        for (int j = 0; j < 8; ++j) {
                            const float y = stage[r * LDC + c + j] + (bias ? T::load(bias[c + j]) : 0.f);
                            ss += y * y;
                        }
                    }
                    part[i] = ss;
                }
                epi_sync();
                for (int r = tid; r < EPI; r += CONSUMERS) {
                    float ss = 0.f;
#pragma unroll
                    for (int c = 0; c < C8; ++c) ss += part[r * C8 + c];
                    inv_norm[r] = 1.f / fmaxf(sqrtf(ss), 1e-12f);
                }
                epi_sync();
            }
            // In groups of G items, the group's residual packs loaded together, then used. Persistent,
            // G = 6 at n96: the multiplying warpgroups of the one CTA on the SM run this while no products
            // are in flight, so one load at a time per thread would wait six latencies in turn. In the other
            // tiles the grouping cost 10-30% (m384n96s4k32w 454 → 368 TFLOP/s without a residual, 403 → 283
            // with one; H200), so there G = 1.
            constexpr int ITEMS = (EPI * C8 + CONSUMERS - 1) / CONSUMERS;
            constexpr int G = !PERSIST ? 1 : ITEMS % 6 == 0 ? 6 : ITEMS % 4 == 0 ? 4 : 1;
#pragma unroll 1
            for (int k0 = 0; k0 < ITEMS; k0 += G) {
                uint4 rv[G];
                if (res && p.vec_out) {
#pragma unroll
                    for (int k = 0; k < G; ++k) {
                        i64 o;
                        rv[k] = item_offset(mh, tid + (k0 + k) * CONSUMERS, o) ? *(const uint4*)(res + o) : make_uint4(0u, 0u, 0u, 0u);
                    }
                }
#pragma unroll
                for (int k = 0; k < G; ++k) {
                    const int i = tid + (k0 + k) * CONSUMERS;
                    i64 o;
                    if (item_offset(mh, i, o)) write_item(i, o, rv[k]);
                }
            }
        }
    };

    if constexpr (WS) {
        if (loader) {
            setmaxnreg_dec<LOAD_REGS>();
            // Stage g (counted over this CTA's tiles) reuses the buffer of g − STAGES once both warpgroups
            // released it (phase g / STAGES − 1).
            auto load_tile = [&](int g0) {
#pragma unroll 1
                for (int s = 0; s < stages; ++s) {
                    const int g = g0 + s, st = g % STAGES;
                    if (g >= STAGES) mbar_wait(empty(st), (u32)((g / STAGES - 1) & 1));
                    load_stage(st);
                    cp_async_arrive_noinc(full(st));
                }
            };
            if constexpr (PERSIST) {
                for (int tile = (int)blockIdx.x, g0 = 0; tile < tiles_end; tile += gridDim.x, g0 += stages) {
                    set_tile(tile);
                    build_rows();
                    ld_cb = ld_tap = ld_dt = ld_dh = 0;
                    load_tile(g0);
                }
            } else {
                load_tile(0);
            }
            cp_async_commit();
            cp_async_wait<0>();
            return;  // the multiplying warpgroups waited for every stage: nothing of ours is in flight
        }
        setmaxnreg_inc<MMA_REGS>();
        auto multiply_tile = [&](int g0) {
            zero_acc();
#pragma unroll 1
            for (int s = 0; s < stages; ++s) {
                const int g = g0 + s, st = g % STAGES;
                mbar_wait(full(st), (u32)((g / STAGES) & 1));
                fence_proxy_async();  // the loaders' cp.async writes (generic proxy) before wgmma reads them
                multiply(st);
                wgmma_wait<1>();  // the previous stage's products are done: its buffer may be refilled
                if (s > 0) mbar_arrive(empty((g - 1) % STAGES));
            }
            wgmma_wait<0>();
#pragma unroll
            for (int h = 0; h < MH; ++h) fence_regs(acc[h]);
        };
        if constexpr (PERSIST) {
            for (int tile = (int)blockIdx.x, g0 = 0; tile < tiles_end; tile += gridDim.x, g0 += stages) {
                set_tile(tile);
                multiply_tile(g0);
                mbar_arrive(empty((g0 + stages - 1) % STAGES));  // the tile's last stage, free for the next tile
                epilogue();
            }
        } else {
            multiply_tile(0);
            epilogue();
        }
    } else {
        zero_acc();
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < stages) load_stage(s);
            cp_async_commit();
        }
#pragma unroll 1
        for (int s = 0; s < stages; ++s) {
            cp_async_wait<STAGES - 2>();
            fence_proxy_async();
            __syncthreads();
            multiply(s % STAGES);
            // The stage of s + STAGES − 1 last held s − 1, whose products every warpgroup waited for
            // before the barrier above.
            const int next = s + STAGES - 1;
            if (next < stages) load_stage(next % STAGES);
            cp_async_commit();
            wgmma_wait<0>();
#pragma unroll
            for (int h = 0; h < MH; ++h) fence_regs(acc[h]);
        }
        epilogue();
    }

}

#define CONVR_BODY(T, BM, BN, S, BK, WS, MINB, P) conv3d_rows_tile<T, BM, BN, S, BK, WS, MINB, P>(p);
#else
#define CONVR_BODY(T, BM, BN, S, BK, WS, MINB, P) asm volatile("trap;");
#endif  // WANRT_SM90A

// Entry points `conv3d_wgmma_rows_{dtype}_m{BM}n{BN}s{STAGES}k{BK}`, the table in
// runtime/ops/conv/wgmma_rows.rs: k64 for Cin % 64 == 0, k32 (blocks of 32 channels, half the bytes and
// products per stage) for Cin % 64 == 32, so that no stage multiplies zero-filled channels and the
// products of a stage stay one unconditional run (a conditional k step makes ptxas fence every wgmma).
// A trap on targets other than sm_90a. Two CTAs per SM for n96 (109 KiB at k64 s2, 82 and 109 KiB at
// k32 s3 and s4), one for n128 and n192 (n128 k32 spills at two: 128 registers). n8 is the decoder's
// conv_out (96 → 3 channels): its small stages (44 KiB at k32) leave room for three CTAs per SM.
// m256 tiles (not in the default table until measured): one CTA per SM, by registers (NVRTC 13,
// sm_90a: n96 172-186, n192 250; at two CTAs, 128, m256n96s3k32 spills), shared memory 106 KiB
// (n96 k32 s3), 141 (n96 k32 s4, k64 s2), 160 (n192 k32 s3; s2 lacks room for the epilogue's staging).
#define CONVR_ENTRY(dt, T, BM, BN, S, BK, MINB)                                                                      \
    extern "C" __global__ void __launch_bounds__(256, MINB) conv3d_wgmma_rows_##dt##_m##BM##n##BN##s##S##k##BK(     \
        const ConvParams p) {                                                                                        \
        CONVR_BODY(T, BM, BN, S, BK, false, MINB, false)                                                             \
    }
// The warp-specialized tiles, `..._m{BM}n{BN}s{S}k{BK}w`: 384 threads, one CTA per SM at m256 and taller
// (shared memory 141 KiB at m256n96 k32 s4, 130/173 at m384 s3/s4).
#define CONVR_ENTRY_WS(dt, T, BM, BN, S, BK, MINB)                                                                   \
    extern "C" __global__ void __launch_bounds__(384, MINB) conv3d_wgmma_rows_##dt##_m##BM##n##BN##s##S##k##BK##w( \
        const ConvParams p) {                                                                                        \
        CONVR_BODY(T, BM, BN, S, BK, true, MINB, false)                                                              \
    }
// Persistent (PERSIST above), `..._m{BM}n{BN}s{S}k{BK}wp`: the staging area beside the pipeline adds
// 128 × (BN + 8) floats (52 KiB at n96: 226 KiB at m384 s4).
#define CONVR_ENTRY_WSP(dt, T, BM, BN, S, BK)                                                                       \
    extern "C" __global__ void __launch_bounds__(384, 1) conv3d_wgmma_rows_##dt##_m##BM##n##BN##s##S##k##BK##wp(   \
        const ConvParams p) {                                                                                        \
        CONVR_BODY(T, BM, BN, S, BK, true, 1, true)                                                                  \
    }
#define CONVR_ENTRIES(dt, T)                \
    CONVR_ENTRY(dt, T, 128, 8, 4, 64, 2)    \
    CONVR_ENTRY(dt, T, 128, 8, 4, 32, 3)    \
    CONVR_ENTRY(dt, T, 128, 96, 2, 64, 2)   \
    CONVR_ENTRY(dt, T, 128, 96, 3, 64, 1)   \
    CONVR_ENTRY(dt, T, 128, 128, 2, 64, 1)  \
    CONVR_ENTRY(dt, T, 128, 192, 2, 64, 1)  \
    CONVR_ENTRY(dt, T, 128, 96, 3, 32, 2)   \
    CONVR_ENTRY(dt, T, 128, 96, 4, 32, 2)   \
    CONVR_ENTRY(dt, T, 128, 128, 3, 32, 1)  \
    CONVR_ENTRY(dt, T, 128, 192, 3, 32, 1)  \
    CONVR_ENTRY(dt, T, 256, 96, 3, 32, 1)   \
    CONVR_ENTRY(dt, T, 256, 96, 4, 32, 1)   \
    CONVR_ENTRY(dt, T, 256, 96, 2, 64, 1)   \
    CONVR_ENTRY(dt, T, 256, 192, 3, 32, 1)  \
    CONVR_ENTRY_WS(dt, T, 128, 96, 3, 32, 2) \
    CONVR_ENTRY_WS(dt, T, 128, 96, 4, 32, 2) \
    CONVR_ENTRY_WS(dt, T, 256, 96, 3, 32, 1) \
    CONVR_ENTRY_WS(dt, T, 256, 96, 4, 32, 1) \
    CONVR_ENTRY_WS(dt, T, 256, 96, 3, 64, 1) \
    CONVR_ENTRY_WS(dt, T, 384, 96, 3, 32, 1) \
    CONVR_ENTRY_WS(dt, T, 384, 96, 4, 32, 1) \
    CONVR_ENTRY_WSP(dt, T, 256, 96, 4, 32)   \
    CONVR_ENTRY_WSP(dt, T, 384, 96, 3, 32)   \
    CONVR_ENTRY_WSP(dt, T, 384, 96, 4, 32)
CONVR_ENTRIES(bf16, BF16)
CONVR_ENTRIES(f16, F16)
