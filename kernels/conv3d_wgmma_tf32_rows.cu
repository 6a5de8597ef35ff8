// f32 implicit-GEMM 3D convolution on wgmma (sm_90a) with the 3xTF32 split, for convs three taps wide
// at width stride 1 with one column of padding each side (the Wan VAE's 3×3×3 causal convs and its
// per-frame 3×3 convs): conv3d_wgmma_rows.cu's geometry (padded-width GEMM rows, one stage = one (dt,
// dh, channel block) whose gathered input rows serve the three kw taps) with conv3d_tf32.cu's
// arithmetic (read its header: the split, the accuracy model, why partial sums are flushed).
//
//   GEMM  M = B·To·Ho·(W + 2) positions of the padded width (row q reads input column u − 1, u = q mod
//         (W + 2); the rows u >= W are computed and dropped), N = Cout, K = kt·kh·3·Cin.
//
// Products, 3xTF32 (CUTLASS's "3xTF32", `OpMultiplyAddFastF32`): every f32 operand a is split as a =
// big + small, big = tf32(a), small = tf32(a − big) (cvt.rn.tf32.f32: see tf32_split_rn), and each k8
// step runs three wgmma.m64nNk8.f32.tf32.tf32 (K = 8 per instruction; PTX ISA, "Asynchronous Warpgroup
// Level Matrix Multiply-Accumulate", .tf32) in conv3d_tf32.cu's order: small_a·big_b, big_a·small_b,
// big_a·big_b (small·small, at most 2^-22 of the product, dropped).
//
// Where the split happens (so that it is done once per element and the shared-memory traffic stays
// below the 128 bytes per clock an SM delivers):
//   A (the gathered input rows) from registers: wgmma's register form (`wgmma_rs_tf32`, CUTLASS
//     `GMMA::ALayout_64x8`). Each thread loads its fragment of a (dw, k8) step from the raw cp.async
//     tile with one ldmatrix.x4 and splits it in registers; big and small feed the three products, so
//     A is read from shared memory once per step instead of three times by the tensor cores and needs
//     no split copy in shared memory. The shift by dw rows is a different ldmatrix address.
//   B (the weights, 3·BN rows per stage) from shared memory: after a stage lands, a conversion pass
//     rewrites each raw element with its big part in place and writes its small part to a second
//     buffer of the same layout, then fence.proxy.async and a barrier make both visible to wgmma.
//   The conversion of stage s + 1 runs while the tensor cores work on stage s (wgmma is asynchronous),
//   so B needs two small buffers and the raw ring at least three slots (s being multiplied, s + 1
//   being converted, s + 2 loading).
// At the tensor cores' full tf32 rate (1024 FMA per clock per SM) the B operand alone is read at 64
// bytes per clock (N·32 bytes per 64·N·8 FMA, any N); the conversion pass adds 32 (12 bytes per B
// element per 3·128 FMA), cp.async 11-16 and the A fragment loads 7-14 (N = 192 / 96). Splitting A in
// shared memory too (both operands by descriptor) would add the A split's traffic and the tensor cores'
// reads of A (43 bytes per clock at N = 96) and pass the 128-byte limit.
//
// Accumulation (conv3d_tf32.cu's header): wgmma, like mma.sync, aligns the products of a k8 step and
// the accumulator to the largest exponent and truncates. The MMAs of one stage (3 taps × 16 channels,
// 6 k8 steps, 18 wgmma) go into a partial that starts at zero (scale-d = 0 on the first product) and
// is added to the f32 accumulator with one FADD per element (round to nearest) once its wgmma are
// complete (the m128n192s3p1g2 tile: every two stages). tools/tf32_accumulation.py's H100 model
// (random normal and SiLU data, weights N(0, 1/K)) gives relative RMS errors at K = 2592 / 10368 of
// 3.8e-7 / 4.3e-7 for partials of one stage and 6.8e-7 / 7.0e-7 for two, against 3.4e-7 / 6.1e-7 for
// conv3d_tf32.cu's flush of every k8 step, 1.8e-6 for an f32 FMA chain at K = 10368 and 7.3e-5 for a
// chain through the tensor cores.
//
// Partials and the pipeline. wgmma runs asynchronously: a partial can be read only after
// wgmma.wait_group says its MMAs are complete, and the A fragments of a step must stay untouched until
// then too (PTX ISA: registers of an in-flight wgmma). Every step is its own commit group, and its
// fragments one entry of a ring of RING steps (3 at n96, 2 at n192): before a step rewrites its entry
// it waits for the step RING earlier (wgmma.wait_group RING − 1). So by the end of stage s's issue,
// stage s − 1 is complete in this warpgroup, and after the next barrier in every warpgroup: its slot
// and small buffer can be refilled. ptxas retires a wgmma by counting commit groups in straight-line
// code only (reading a partial whose MMAs were issued before a loop's back edge serializes every wgmma
// of the kernel, C7514), so the stages run in unrolled groups of GROUP with nothing in flight from one
// group to the next:
//   two partials (n96, PARTS = 2): within a group stage s + u is issued into one partial while stage
//     s + u − 1's, complete by then, is flushed from the other; the tensor cores wait for a flush once
//     per group. The stage count is padded to a multiple of GROUP with zero-filled stages (none for the
//     VAE's layers). 48 + 2·48 accumulator registers.
//   one partial (n192, and an n96 variant): 96 + 96 accumulator registers leave no room for a second;
//     the partial spans the group's stages and is flushed at its end.
//
// Shared layout (BK = 16 channels a stage: 64-byte rows; three raw slots and two small buffers of the
// n192 B tiles are 206.5 KiB; 32-channel stages would not fit):
//   A: 130 rows (the tile's 128 and the two that tap dw = 2 reads past it) of 4 chunks of 16 bytes
//     (4 floats), chunk-column major: row r of chunk c at c·LBO + r·16 with LBO = 130·16 (130 ≡ 2 mod
//     8: a cp.async phase (rows r, r + 1 × chunks 0-3) covers the 32 banks once; an ldmatrix matrix (8
//     rows × 4 floats of one chunk column) reads 128 contiguous bytes).
//   B: per kw tap BN rows of 64 bytes, K-major with the 64-byte swizzle (chunk c of row r at c ^ ((r /
//     2) % 4), 512-byte aligned tiles, SBO = 512; conv3d_wgmma_rows.cu's k32 B layout), the k8 step kk
//     32·kk bytes further. Big in the raw slot, small in small[s % 2] at the same offsets.
//
// Epilogue: conv3d_wgmma_rows.cu's, in f32: the accumulators staged in shared memory, then per thread
// 4 consecutive channels of a row: + bias + residual in f32, one 16-byte store when Cout % 4 == 0,
// element stores otherwise; rows u >= Wo skipped. A residual that is out itself is read before the same
// thread writes it.
#include "wgmma.cuh"

// The parameter block of conv3d_mma.cu (`ConvMmaImage` in runtime/gpu/params_conv.rs). Here M counts
// padded-width rows, ktiles the (dt, dh, 16-channel block) stages and cin_blocks the 16-channel blocks
// of a tap; vec_out = (Cout % 4 == 0); `piece` and the norm fields are unused.
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
    u64 norm_gamma;
    int norm_silu, pad1;
};

extern __shared__ __align__(1024) unsigned char convt_smem[];

#ifdef WANRT_SM90A

namespace conv_tf32_rows {
constexpr int BM = 128, THREADS = 256;
constexpr int BK = 16;                            // channels (floats) per stage and tap
constexpr int CH = BK / 4;                        // 16-byte chunks per row
constexpr int RSTEP = THREADS / CH;               // rows per loader pass
constexpr int KSTEPS = BK / 8;                    // k8 steps per tap
constexpr int STEPS = 3 * KSTEPS;                 // (dw, k8) steps per stage
constexpr int AROWS = BM + 2;                     // the tile's rows and the two tap dw = 2 reaches past it
constexpr int CS = (AROWS + 5) / 8 * 8 + 2;       // rows per chunk column: >= AROWS, ≡ 2 mod 8
constexpr u32 LBO = CS * 16;                      // bytes from one chunk column to the next
constexpr u32 A_SPAN = (CH * LBO + 511) / 512 * 512;  // B tiles stay 512-byte aligned (64-byte swizzle)
constexpr u32 BROW = BK * 4;                      // a B row: 64 bytes
}  // namespace conv_tf32_rows

__device__ __forceinline__ void fence_proxy_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// The 3xTF32 split with cvt.rn.tf32.f32 (round to nearest, ties to even; PTX ISA 7.8, sm_90): one
// F2FP.TF32 instruction where sm_80's cvt.rna.tf32.f32 (mma.cuh's tf32_split) is three or four (a
// compare for NaN/inf, an add, a select, a mask). Both round to nearest and differ only on exact ties,
// so the bounds are the same: |a − big| ≤ 2^-11·|a|, a − big is exact in f32, |a − big − small| ≤
// 2^-22·|a|; tools/tf32_accumulation.py's model gives the same errors with either (within 3%).
__device__ __forceinline__ u32 tf32_rn(float x) {
    u32 r;
    asm("cvt.rn.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
__device__ __forceinline__ void tf32_split_rn(float x, u32& big, u32& small) {
    big = tf32_rn(x);
    small = tf32_rn(x - __uint_as_float(big));
}

template <int BN, int STAGES, int PARTS, int GROUP, int RING1>
__device__ __forceinline__ void conv3d_tf32_rows_tile(const ConvParams& p) {
    using namespace conv_tf32_rows;
    constexpr u32 B_TAP = BN * BROW, B_BYTES = 3 * B_TAP;  // one kw tap's tile, a stage's three
    constexpr u32 SLOT = A_SPAN + B_BYTES;                 // a raw stage: A, then B (big after conversion)
    constexpr u32 SMALL = STAGES * SLOT;                   // the two small-part B buffers follow the slots
    constexpr int AI = (AROWS + RSTEP - 1) / RSTEP;
    constexpr int CHUNKS = B_BYTES / 16, CONV = (CHUNKS + THREADS - 1) / THREADS;
    constexpr int PIECES = 3, CP = (CONV + PIECES - 1) / PIECES;  // conversion pieces, chunks per piece
    constexpr int NR = BN / 2;                             // accumulator registers per thread
    constexpr int RING = RING1;                            // steps whose fragments stay in registers
    constexpr int LDC = BN + 8;
    static_assert(PARTS == 1 || PARTS == 2, "one or two partials");
    static_assert(STAGES >= 3, "a slot being multiplied, one being converted, one loading");
    static_assert(STEPS % RING == 0 && RING <= STEPS - PIECES, "the ring retires a stage before the mid-stage barrier");
    static_assert(B_TAP % 512 == 0 && SLOT % 512 == 0, "B tiles 512-byte aligned");
    static_assert(BM * LDC * 4 <= SMALL + 2 * B_BYTES, "epilogue staging must fit the pipeline buffers");

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = tid >> 7;
    const int n_tile = (int)(blockIdx.x % (unsigned)p.n_tiles), m_tile = (int)(blockIdx.x / (unsigned)p.n_tiles);
    const int m0 = m_tile * BM, n0 = n_tile * BN;
    const u32 smem = (smem_u32(convt_smem) + 1023u) & ~1023u;
    unsigned char* smem_ptr = convt_smem + (smem - smem_u32(convt_smem));

    const float* w = (const float*)p.w;
    const int Cin = p.Cin, Wp = p.W + 2;
    const i64 frame = (i64)p.H * p.W * Cin;
    const int taps = p.kt * p.kh * 3;
    const int chunk = tid % CH, lr = tid / CH;

    // Per A row this thread loads (conv3d_wgmma_rows.cu): element offsets of its input pixel at (dt, dh)
    // = (0, 0) in prev and in x, and a mask: bit dt·kh + dh set when that stage reads a real pixel, bit
    // 16 + dt when time tap dt reads a cached frame. Rows past M have none. The launcher keeps kt·kh <= 16
    // and x, prev under 2^31 elements.
    u32 a_mask[AI];
    int a_prev[AI], a_x[AI];
#pragma unroll
    for (int i = 0; i < AI; ++i) {
        const int q = m0 + lr + i * RSTEP;
        a_mask[i] = 0;
        a_prev[i] = a_x[i] = 0;
        if (q < p.M) {
            int r = q / Wp;
            const int wi = q - r * Wp - 1;
            const int ho = r % p.Ho;
            r /= p.Ho;
            const int to = r % p.To, b = r / p.To;
            const int f0 = to * p.st - p.pad_t, h0 = ho * p.sh - p.pad_top;
            const i64 pix = ((i64)h0 * p.W + wi) * Cin;
            a_prev[i] = (int)(((i64)b * p.P + f0) * frame + pix);
            a_x[i] = (int)(((i64)b * p.T + f0 - p.P) * frame + pix);
            u32 mask = 0;
            if ((unsigned)wi < (unsigned)p.W)
                for (int dt = 0, t = 0; dt < p.kt; ++dt) {
                    if (f0 + dt < p.P) mask |= 1u << (16 + dt);
                    for (int dh = 0; dh < p.kh; ++dh, ++t)
                        if (f0 + dt >= 0 && (unsigned)(h0 + dh) < (unsigned)p.H) mask |= 1u << t;
                }
            a_mask[i] = mask;
        }
    }

    // B rows of this thread: rows lr + i·RSTEP of each kw tap; their element offsets in w (the launcher
    // keeps w under 2^31 elements), 0 with the copy disabled for rows past Cout. Destinations: A row r
    // of chunk c at c·LBO + r·16, B row r's chunk at r·64 + 16·(c ^ ((r / 2) % 4)), the same per pass.
    constexpr int BR = (BN + RSTEP - 1) / RSTEP;
    int b_off[BR];
    u32 b_ok = 0;
#pragma unroll
    for (int i = 0; i < BR; ++i) {
        const int n = n0 + lr + i * RSTEP;
        const bool ok = lr + i * RSTEP < BN && n < p.Cout;
        b_off[i] = ok ? n * taps * Cin : 0;
        b_ok |= (u32)ok << i;
    }
    const u32 a_dst = chunk * LBO + lr * 16, b_dst = lr * BROW + ((chunk ^ ((lr >> 1) & 3)) << 4);

    // Stages: `stages` real ones, `total` with the zero-filled ones that make the count a multiple of
    // GROUP (none for the VAE's layers: 9 or 3 (dt, dh) taps × Cin / 16). The stage being loaded: (dt,
    // dh) as `ld_tap` = dt·kh + dh, and its 16-channel block. Offsets in 32 bits (wrapping, so that a
    // disabled row's is harmless): an enabled one is an element of x or prev.
    const int stages = p.ktiles;
    const int total = (stages + GROUP - 1) / GROUP * GROUP;
    const u32 frame32 = (u32)frame, row32 = (u32)(p.W * Cin);
    int ld_cb = 0, ld_tap = 0, ld_dt = 0, ld_dh = 0;
    auto load_stage = [&](int s, int slot) {
        const bool real = s < stages;
        const u32 sA = smem + (u32)slot * SLOT + a_dst, sB = smem + (u32)slot * SLOT + A_SPAN + b_dst;
        const int ch = ld_cb * BK + chunk * 4;
        const u32 tap_off = (u32)ld_dt * frame32 + (u32)ld_dh * row32 + (u32)ch;
        const u32 from_prev = real ? 1u << (16 + ld_dt) : 0u, tap_bit = real ? 1u << ld_tap : 0u;
#pragma unroll
        for (int i = 0; i < AI; ++i) {
            if (AROWS % RSTEP != 0 && i == AI - 1 && lr >= AROWS - (AI - 1) * RSTEP) break;
            const bool v = a_mask[i] & tap_bit, fp = a_mask[i] & from_prev;
            const i64 off = (int)((u32)(fp ? a_prev[i] : a_x[i]) + tap_off);
            const u64 src = (fp ? p.prev : p.x) + (u64)off * 4;
            cp_async_16(sA + i * RSTEP * 16, (const void*)(v ? src : p.w), v);
        }
        // B: the three kw taps' BN × 16 weight tiles.
        const float* wt = w + (ld_tap * 3 * Cin + ch);
#pragma unroll
        for (int i = 0; i < BR; ++i) {
            if (BN % RSTEP != 0 && i == BR - 1 && lr >= BN - (BR - 1) * RSTEP) break;
            const bool v = real && (b_ok >> i & 1);
            const float* src = v ? wt + b_off[i] : w;
#pragma unroll
            for (int dw = 0; dw < 3; ++dw) cp_async_16(sB + i * RSTEP * BROW + dw * B_TAP, v ? src + dw * Cin : w, v);
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

    // The conversion pass of the B tiles in `slot`: each raw element becomes its big part in place and
    // its small part goes to small buffer `half` (stage parity), at the same offset (so the swizzle
    // holds). Consecutive threads take consecutive 16-byte chunks; a thread's CONV chunks in PIECES
    // pieces of up to CP, loaded together (the registers beside the partials are few), one piece before
    // each of the stage's last PIECES steps.
    auto convert_piece = [&](int slot, int half, int piece) {
        unsigned char* raw = smem_ptr + (u32)slot * SLOT + A_SPAN + tid * 16;
        unsigned char* sml = smem_ptr + SMALL + (u32)half * B_BYTES + tid * 16;
        auto has = [&](int i) { return i < CONV && (CHUNKS % THREADS == 0 || tid + i * THREADS < CHUNKS); };
        float4 v[CP];
#pragma unroll
        for (int k = 0; k < CP; ++k)
            if (has(piece * CP + k)) v[k] = *(const float4*)(raw + (piece * CP + k) * THREADS * 16);
#pragma unroll
        for (int k = 0; k < CP; ++k)
            if (has(piece * CP + k)) {
                uint4 big, small;
                tf32_split_rn(v[k].x, big.x, small.x);
                tf32_split_rn(v[k].y, big.y, small.y);
                tf32_split_rn(v[k].z, big.z, small.z);
                tf32_split_rn(v[k].w, big.w, small.w);
                *(uint4*)(raw + (piece * CP + k) * THREADS * 16) = big;
                *(uint4*)(sml + (piece * CP + k) * THREADS * 16) = small;
            }
    };

    // A fragments by ldmatrix (.x4, b16 view): matrix i is rows 16·(warp % 4) + 8·(i % 2) .. + 7 of
    // chunk 2kk + i / 2, and lane 4g + t receives b16 columns 2t, 2t + 1 of row g, i.e. float t of
    // that row's chunk: a0..a3 of the tf32 fragment (wgmma.cuh). Lane l gives the row address of matrix
    // l / 8, row l % 8; step (dw, kk) adds 2kk·LBO + 16·dw (the dw shift). 8 rows × 16 bytes of one chunk
    // column are 128 contiguous bytes: no bank conflicts.
    const u32 a_lane = ((lane >> 4) & 1) * LBO + (u32)(wg * 64 + (warp & 3) * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * 16;

    float acc[NR];
#pragma unroll
    for (int i = 0; i < NR; ++i) acc[i] = 0.f;
    auto flush = [&](float (&part)[NR]) {
        fence_regs(part);
#pragma unroll
        for (int i = 0; i < NR; ++i) acc[i] += part[i];
    };

    // The fragments of the steps in flight: RING steps' big and small parts.
    u32 fb[RING][4], fs[RING][4];

    // Prologue: stages 0..STAGES-2 in flight, stage 0 converted.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < total) load_stage(s, s);
        cp_async_commit();
    }
    cp_async_wait<STAGES - 2>();
    __syncthreads();
#pragma unroll 1
    for (int piece = 0; piece < PIECES; ++piece) convert_piece(0, 0, piece);
    fence_proxy_async_smem();
    __syncthreads();

    // One stage s (in `slot`, small buffer s % 2) into `part`; `first`: the first stage of the partial
    // (its first product overwrites it). Per step small_a·big_b, big_a·small_b, big_a·big_b
    // (conv3d_tf32.cu's order within a step), one commit group. A step's fragment registers are a ring
    // entry that the step RING earlier read: before the split rewrites them, wait until at most RING − 1
    // younger steps are pending (the step's values are loaded before that wait). Descriptors: the
    // stage's two B bases, a step (dw, kk) (dw·BN·64 + 32·kk) / 16 further.
    //
    // After the first STEPS − PIECES steps the ring waits have retired stage s − 1 in this warpgroup
    // (RING <= STEPS − PIECES), so `prev` (stage s − 1's partial, two partials) is flushed there. At the
    // barrier that follows, stage s + 1 has landed (STAGES − 3 younger copy groups pending) and every
    // warpgroup is done with stage s − 1, whose slot then takes stage s + STAGES − 1 and whose small
    // buffer stage s + 1's small parts: the copies are issued, and the conversion of stage s + 1 runs a
    // piece before each remaining step, while the tensor cores work through the queued ones.
    // fence.proxy.async here and the caller's barrier hand the conversion to the next stage.
    int slot = 0, conv_slot = 1 % STAGES, load_slot = STAGES - 1;
    auto stage = [&](float (&part)[NR], float (&prev)[NR], bool flush_prev, int s, bool first) {
        const u32 a = smem + (u32)slot * SLOT + a_lane;
        const u64 db = desc_sw64(smem + (u32)slot * SLOT + A_SPAN, 16, 512);
        const u64 ds = desc_sw64(smem + SMALL + (u32)(s & 1) * B_BYTES, 16, 512);
        auto step = [&](int j) {
            const int dw = j / KSTEPS, kk = j % KSTEPS, r = j % RING;
            const u64 off = (u64)((dw * B_TAP + kk * 32) >> 4);
            u32 v[4];
            ldsm_x4(a + 2 * kk * LBO + dw * 16, v[0], v[1], v[2], v[3]);
            wgmma_wait<RING - 1>();
#pragma unroll
            for (int e = 0; e < 4; ++e) tf32_split_rn(__uint_as_float(v[e]), fb[r][e], fs[r][e]);
            wgmma_fence();
            wgmma_rs_tf32(part, fs[r], db + off, j > 0 || !first);
            wgmma_rs_tf32(part, fb[r], ds + off, 1u);
            wgmma_rs_tf32(part, fb[r], db + off, 1u);
            wgmma_commit();
        };
#pragma unroll
        for (int j = 0; j < STEPS - PIECES; ++j) step(j);
        if (flush_prev) flush(prev);
        cp_async_wait<STAGES - 3>();
        __syncthreads();
        if (s + STAGES - 1 < total) load_stage(s + STAGES - 1, load_slot);
        cp_async_commit();
        const bool convert = s + 1 < total;
#pragma unroll
        for (int j = STEPS - PIECES; j < STEPS; ++j) {
            if (convert) convert_piece(conv_slot, (s + 1) & 1, j - (STEPS - PIECES));
            step(j);
        }
        fence_proxy_async_smem();
        slot = conv_slot;
        conv_slot = conv_slot + 1 == STAGES ? 0 : conv_slot + 1;
        load_slot = load_slot + 1 == STAGES ? 0 : load_slot + 1;
    };

    // The stages run in groups of GROUP, unrolled, with no wgmma in flight from one group to the next
    // (see the header: ptxas). Two partials: within a group stage s + u is issued while stage s + u − 1's
    // partial is flushed, and the group ends by waiting for its last stage (the tensor cores' only idle
    // moment). One partial: it spans the group's stages and is flushed at the group's end.
    if constexpr (PARTS == 2) {
        float part0[NR], part1[NR];
#pragma unroll
        for (int i = 0; i < NR; ++i) part0[i] = part1[i] = 0.f;
#pragma unroll 1
        for (int s = 0; s < total; s += GROUP) {
#pragma unroll
            for (int u = 0; u < GROUP; ++u) {
                if (u & 1)
                    stage(part1, part0, true, s + u, true);
                else
                    stage(part0, part1, u > 0, s + u, true);
                __syncthreads();
            }
            wgmma_wait<0>();
            flush((GROUP - 1) & 1 ? part1 : part0);
        }
    } else {
        float part[NR];
#pragma unroll
        for (int i = 0; i < NR; ++i) part[i] = 0.f;
#pragma unroll 1
        for (int s = 0; s < total; s += GROUP) {
#pragma unroll
            for (int u = 0; u < GROUP; ++u) {
                stage(part, part, false, s + u, u == 0);
                if (u + 1 < GROUP) __syncthreads();
            }
            wgmma_wait<0>();
            flush(part);
            __syncthreads();
        }
    }

    // Epilogue (conv3d_wgmma_rows.cu's, f32 out), skipping the padded-width rows u >= Wo: tile row r is
    // position q = m0 + r, output row (q / Wp)·Wo + q % Wp.
    cp_async_wait<0>();
    __syncthreads();
    float* staged = (float*)smem_ptr;
    const int g = lane >> 2, qd = lane & 3;
#pragma unroll
    for (int c = 0; c < BN / 8; ++c)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
            const int row = wg * 64 + (warp & 3) * 16 + g + hf * 8, col = 8 * c + 2 * qd;
            *(float2*)(staged + row * LDC + col) = make_float2(acc[4 * c + 2 * hf], acc[4 * c + 2 * hf + 1]);
        }
    __syncthreads();
    const float* bias = (const float*)p.bias;
    const float* res = (const float*)p.residual;
    float* out = (float*)p.out;
    constexpr int C4 = BN / 4;
#pragma unroll 1
    for (int i = tid; i < BM * C4; i += THREADS) {
        const int r = i / C4, c = (i - r * C4) * 4;
        const int q = m0 + r, n = n0 + c;
        if (q >= p.M || n >= p.Cout) continue;
        const int line = q / Wp, u = q - line * Wp;
        if (u >= p.Wo) continue;
        const float4 s4 = *(const float4*)(staged + r * LDC + c);
        float v[4] = {s4.x, s4.y, s4.z, s4.w};
        if (bias) {
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (n + j < p.Cout) v[j] += bias[n + j];
        }
        const i64 o = ((i64)line * p.Wo + u) * p.Cout + n;
        if (p.vec_out) {
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

#define CONVT_BODY(BN, S, P, G) conv3d_tf32_rows_tile<BN, S, P, G, BN == 96 ? 3 : 2>(p);
#else
#define CONVT_BODY(BN, S, P, G) asm volatile("trap;");
#endif  // WANRT_SM90A

// Entry points `conv3d_wgmma_tf32_rows_f32_m128n{BN}s{STAGES}p{PARTS}g{GROUP}`, the table in
// runtime/ops/conv/wgmma_tf32_rows.rs: BN output channels, STAGES raw slots, PARTS partials, GROUP
// stages per wgmma group (per flush with one partial). A trap on targets other than sm_90a. One CTA per
// SM: the accumulators and partials take 144 (n96, two partials) or 192 (n192) of a thread's registers
// (tests/kernels_sass.rs checks that none spill). Fragment rings of 3 steps at n96, 2 at n192.
#define CONVT_ENTRY(BN, S, P, G)                                                                                 \
    extern "C" __global__ void __launch_bounds__(256, 1) conv3d_wgmma_tf32_rows_f32_m128n##BN##s##S##p##P##g##G( \
        const ConvParams p) {                                                                                    \
        CONVT_BODY(BN, S, P, G)                                                                                  \
    }
CONVT_ENTRY(96, 4, 2, 2)
CONVT_ENTRY(96, 5, 2, 2)
CONVT_ENTRY(96, 4, 1, 1)
CONVT_ENTRY(192, 3, 1, 1)
CONVT_ENTRY(192, 3, 1, 2)
