// Direct 3-D convolution for narrow outputs (Cout <= 8), channels-last, 3×3 spatial taps, spatial
// stride 1, any kt / time stride / padding: the Wan VAE decoder's conv_out (96 → 3 channels,
// diffusers autoencoder_kl_wan.py `WanCausalConv3d`), where the implicit-GEMM kernels pad N to a
// 32- or 128-wide tile. Same contract as kernels/conv3d.cu: x [B,T,H,W,Cin], prev [B,P,H,W,Cin] (the
// causal cache, frames logically before x, read in place), w [Cout,kt,3,3,Cin], bias [Cout],
// residual and out [B,To,Ho,Wo,Cout]; logical time [pad_t zero frames ; prev ; x]; pad_h/pad_w zeros
// before row/column 0, anything past H/W reads as zero. f32 FMA products and sums whatever the
// storage dtype (f32 storage stays f32-exact: no TF32), bias then residual added in f32, one
// rounding to the output. `residual` may be `out` itself (each element is read, then written, by one
// thread); nothing else may alias `out`.
//
// A CTA of 128 threads (16 × 8) computes a 16 × 32 tile of output pixels of one output frame, all
// Cout channels: each thread 2 rows × 2 columns × COUT accumulators in registers. It loops over the
// kt time taps and blocks of 16 input channels; per block it stages the input halo (18 × 34 pixels)
// in shared memory as f32 channel planes (two 16-byte loads per pixel, one whole 32-byte sector in
// bf16/f16, when Cin % 16 == 0 and x/prev are 16-byte aligned, else element loads), and the block's
// weights as [channel][tap][Cout] f32. A thread then streams its 4 × 4 input window row by row (two
// 8-byte shared loads per row, conflict-free: a half-warp reads 32 consecutive words) against the
// channel's 9·COUT weights (broadcast 16-byte loads) held in registers: 36·COUT FMAs per channel for
// 4 input rows. Blocks of 16 channels (8 before, with 32-row tiles) make each pixel's loads one whole
// 32-byte sector in bf16, where 8 channels used half of one: under ncu (H100) the 8-channel kernel read
// 3.6 GB from DRAM for the decoder's conv_out (4 frames of 480×832, 0.46 GB of input) at 65% of DRAM
// and 82% of L2 throughput. Its time did not move measurably (1.36 ms, 18 TFLOP/s, on an H100): the
// bytes per time tap remain, since each output frame's CTAs read their three input frames apart. The
// sum order of every output is fixed (time tap, channel, kernel row, kernel column),
// whatever the tile.
//
// OF output frames per CTA (entries `..._c{COUT}f{OF}`, OF > 1): the CTA stages each input frame its
// OF frames read once and multiplies it into every output frame whose time tap reads it, so at time
// stride 1 and kt = 3 an input frame is staged (1 + 2/OF) times in all instead of 3 (the re-reads
// above). Per output the sum runs in the same order (its time taps ascending), so every OF gives the
// same bits.
//
// CTAs are numbered with the output frame group fastest: the CTAs that read one input frame run
// together, so each input frame comes from DRAM about once and its re-reads hit L2.
#include "common.cuh"

// Geometry, passed by value (Conv3dDims in runtime/gpu/params.rs: 19 x i64), as kernels/conv3d.cu.
struct Conv3dDims {
    i64 batch, t, p, h, w, cin, cout;
    i64 to, ho, wo;
    i64 kt, kh, kw;
    i64 st, sh, sw;
    i64 pad_t, pad_h, pad_w;
};

namespace narrow {

constexpr int BX = 16, BY = 8, THREADS = BX * BY;  // threads along a row, rows of threads
constexpr int RW = 2;                               // output columns per thread
constexpr int K = 3;                                // spatial taps per axis
constexpr int CB = 16;                              // input channels per stage (one 32-byte bf16 sector)
constexpr int TW = BX * RW, HW = TW + K - 1;        // tile width, halo width (the plane pitch)
static_assert(RW + K - 1 == 4, "the compute loop reads a 4-wide window as two float2");

template <int COUT>
struct Shape {
    static constexpr int RH = 2;                  // output rows per thread
    static constexpr int TH = BY * RH, HH = TH + K - 1;
    static constexpr int PLANE = HH * HW;                // floats per channel plane (even: 8-byte rows)
    static constexpr int WTAP = K * K * COUT;            // weights of one channel
    static constexpr int WS = (WTAP + 3) / 4 * 4;        // padded to 16-byte loads
};

// One pixel's group of CB channels as raw 16-byte chunks (2 for bf16/f16, 4 for f32): a staging
// batch issues all its loads before converting any, so a round waits for memory once per batch.
template <typename T>
struct Group {
    static constexpr int CHUNKS = CB * (int)sizeof(typename T::storage) / 16;
    static constexpr int PER = 16 / (int)sizeof(typename T::storage);  // values per chunk
    uint4 q[CHUNKS];

    __device__ __forceinline__ void load(const typename T::storage* __restrict__ p) {
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) q[j] = reinterpret_cast<const uint4*>(p)[j];
    }
    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) q[j] = make_uint4(0, 0, 0, 0);
    }
    __device__ __forceinline__ void to_f32(float v[CB]) const {
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) {
            const u32 r[4] = {q[j].x, q[j].y, q[j].z, q[j].w};
            if constexpr (PER == 4) {
#pragma unroll
                for (int e = 0; e < 4; e++) v[4 * j + e] = __uint_as_float(r[e]);
            } else {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    v[8 * j + 2 * e] = T::load((u16)(r[e] & 0xffffu));
                    v[8 * j + 2 * e + 1] = T::load((u16)(r[e] >> 16));
                }
            }
        }
    }
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((u64)p & 15) == 0; }

template <typename T, int COUT, int OF>
__device__ void conv3d_narrow(const typename T::storage* __restrict__ x, const typename T::storage* __restrict__ prev,
                              const typename T::storage* __restrict__ w, const typename T::storage* __restrict__ bias,
                              const typename T::storage* residual, typename T::storage* out, const Conv3dDims d) {
    typedef typename T::storage S;
    typedef Shape<COUT> G;
    constexpr int RH = G::RH, TH = G::TH, PLANE = G::PLANE, WS = G::WS, WTAP = G::WTAP;
    // Staging: NPIX pixels of the halo per thread, PB of them in flight (40 registers of raw data), NW
    // weights per thread.
    constexpr int NPIX = (PLANE + THREADS - 1) / THREADS;
    constexpr int PB = 10 / Group<T>::CHUNKS < NPIX ? 10 / Group<T>::CHUNKS : NPIX;
    constexpr int NW = (OF * CB * WS + THREADS - 1) / THREADS;
    __shared__ __align__(16) float xs[CB * PLANE];
    __shared__ __align__(16) float ws[OF * CB * WS];  // [output frame of the group][channel][tap][Cout]

    const int tx = threadIdx.x % BX, ty = threadIdx.x / BX;
    // The launcher keeps spatial sizes, channels and paddings below 2^31 (runtime/ops/conv/narrow.rs).
    const int H = (int)d.h, W = (int)d.w, cin = (int)d.cin, cout = (int)d.cout, kt = (int)d.kt;
    const int Ho = (int)d.ho, Wo = (int)d.wo;
    const i64 groups = (d.to + OF - 1) / OF, tiles_w = (d.wo + TW - 1) / TW;
    const i64 bg = (i64)blockIdx.x % (d.batch * groups), tile = (i64)blockIdx.x / (d.batch * groups);
    const i64 b = bg / groups, to0 = bg % groups * OF;
    const int nf = (int)(d.to - to0 < OF ? d.to - to0 : OF);  // output frames of this group
    const int ox0 = (int)(tile % tiles_w) * TW, oy0 = (int)(tile / tiles_w) * TH;
    const int iy0 = oy0 - (int)d.pad_h, ix0 = ox0 - (int)d.pad_w;
    const i64 frame_elems = d.h * d.w * d.cin;
    // 16-byte loads of CB channels: rows of Cin % 16 == 0 channels from 16-byte aligned tensors keep every
    // 16-channel group aligned (bf16/f16: 32 bytes, f32: 64).
    const bool vec = cin % CB == 0 && aligned16(x) && (prev == nullptr || aligned16(prev));

    float acc[OF][RH][RW][COUT];
#pragma unroll
    for (int f = 0; f < OF; f++)
#pragma unroll
        for (int i = 0; i < RH; i++)
#pragma unroll
            for (int j = 0; j < RW; j++)
#pragma unroll
                for (int c = 0; c < COUT; c++) acc[f][i][j][c] = 0.f;

    // Input frames (indices into [prev ; x]) from the first output frame's first tap to the last one's
    // last; output frame f reads frame lt at time tap lt − (to0 + f)·st + pad_t, where that is in [0, kt).
    const i64 lt_first = to0 * d.st - d.pad_t, lt_last = (to0 + nf - 1) * d.st - d.pad_t + kt - 1;
    for (i64 lt = lt_first; lt <= lt_last; lt++) {
        // A causal zero frame adds nothing (the same for the whole CTA).
        if (lt < 0) continue;
        const S* frame = lt < d.p ? prev + (b * d.p + lt) * frame_elems : x + (b * d.t + (lt - d.p)) * frame_elems;
        for (int c0 = 0; c0 < cin; c0 += CB) {
            __syncthreads();  // the previous block's planes and weights are read
            // The thread index, read anew each block: the staging offsets and bounds below are then
            // recomputed per block instead of hoisted out of both loops, where ~NPIX offsets and
            // predicates stayed live through the FMA loop and spilled at the 128-register bound.
            int tid;
            asm volatile("mov.u32 %0, %%tid.x;" : "=r"(tid));
            // This block's weights, ws[f][k][tap][co] for output frame f's time tap on this frame, zero past
            // Cin, Cout and WTAP and for frames that do not read it: loaded first and converted last, so
            // their loads overlap the input's.
            S wv[NW];
#pragma unroll
            for (int j = 0; j < NW; j++) {
                const int i = tid + j * THREADS, f = i / (CB * WS), fi = i - f * (CB * WS), k = fi / WS, r = fi - k * WS;
                const int c = c0 + k, tap = r / COUT, co = r - tap * COUT;
                const i64 dt = lt - ((to0 + f) * d.st - d.pad_t);
                wv[j] = S(0);  // +0 in every dtype
                if (i < OF * CB * WS && f < nf && dt >= 0 && dt < kt && r < WTAP && c < cin && co < cout)
                    wv[j] = w[(((i64)co * kt + dt) * (K * K) + tap) * cin + c];
            }
            if (vec) {
#pragma unroll 1
                for (int j0 = 0; j0 < NPIX; j0 += PB) {
                    Group<T> g[PB];
#pragma unroll
                    for (int j = 0; j < PB; j++) {
                        const int i = tid + (j0 + j) * THREADS, hy = i / HW, hx = i - hy * HW, gy = iy0 + hy, gx = ix0 + hx;
                        g[j].zero();
                        if (j0 + j < NPIX && i < PLANE && (unsigned)gy < (unsigned)H && (unsigned)gx < (unsigned)W) {
                            g[j].load(frame + ((i64)gy * W + gx) * cin + c0);
                        }
                    }
#pragma unroll
                    for (int j = 0; j < PB; j++) {
                        const int i = tid + (j0 + j) * THREADS;
                        if (j0 + j < NPIX && i < PLANE) {
                            float v[CB];
                            g[j].to_f32(v);
#pragma unroll
                            for (int k = 0; k < CB; k++) xs[k * PLANE + i] = v[k];
                        }
                    }
                }
            } else {
                // Element loads, channel fastest (8 lanes read one pixel's channels), SB in flight per
                // thread; channels past Cin are zero, as are their weights.
                constexpr int SB = 8;
                for (int i0 = 0; i0 < PLANE * CB; i0 += THREADS * SB) {
                    float v[SB];
#pragma unroll
                    for (int j = 0; j < SB; j++) {
                        const int i = i0 + tid + j * THREADS, p = i / CB, c = c0 + i % CB;
                        const int hy = p / HW, hx = p - hy * HW, gy = iy0 + hy, gx = ix0 + hx;
                        v[j] = 0.f;
                        if (i < PLANE * CB && (unsigned)gy < (unsigned)H && (unsigned)gx < (unsigned)W && c < cin) {
                            v[j] = T::load(frame[((i64)gy * W + gx) * cin + c]);
                        }
                    }
#pragma unroll
                    for (int j = 0; j < SB; j++) {
                        const int i = i0 + tid + j * THREADS;
                        if (i < PLANE * CB) xs[(i % CB) * PLANE + i / CB] = v[j];
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < NW; j++) {
                const int i = tid + j * THREADS;
                if (i < OF * CB * WS) ws[i] = T::load(wv[j]);
            }
            __syncthreads();

            const float* base = xs + ty * RH * HW + tx * RW;
#pragma unroll 1
            for (int k = 0; k < CB; k++) {
                const float* plane = base + k * PLANE;
#pragma unroll
                for (int f = 0; f < OF; f++) {
                    const i64 dt = lt - ((to0 + f) * d.st - d.pad_t);
                    if (f >= nf || dt < 0 || dt >= kt) continue;  // the same for the whole CTA
                    float wr[WS];
#pragma unroll
                    for (int j = 0; j < WS / 4; j++) {
                        const float4 q = reinterpret_cast<const float4*>(ws + (f * CB + k) * WS)[j];
                        wr[4 * j] = q.x, wr[4 * j + 1] = q.y, wr[4 * j + 2] = q.z, wr[4 * j + 3] = q.w;
                    }
#pragma unroll
                    for (int iy = 0; iy < RH + K - 1; iy++) {
                        const float2 a = *reinterpret_cast<const float2*>(plane + iy * HW);
                        const float2 e = *reinterpret_cast<const float2*>(plane + iy * HW + 2);
                        const float v[4] = {a.x, a.y, e.x, e.y};
#pragma unroll
                        for (int ry = 0; ry < RH; ry++) {
                            const int dh = iy - ry;
                            if (dh < 0 || dh >= K) continue;
#pragma unroll
                            for (int rx = 0; rx < RW; rx++)
#pragma unroll
                                for (int dw = 0; dw < K; dw++)
#pragma unroll
                                    for (int co = 0; co < COUT; co++)
                                        acc[f][ry][rx][co] = fmaf(v[rx + dw], wr[(dh * K + dw) * COUT + co], acc[f][ry][rx][co]);
                        }
                    }
                }
            }
        }
    }

#pragma unroll
    for (int f = 0; f < OF; f++) {
        if (f >= nf) continue;
        const i64 bt = b * d.to + to0 + f;
#pragma unroll
        for (int ry = 0; ry < RH; ry++) {
            const int oy = oy0 + ty * RH + ry;
            if (oy >= Ho) continue;
#pragma unroll
            for (int rx = 0; rx < RW; rx++) {
                const int ox = ox0 + tx * RW + rx;
                if (ox >= Wo) continue;
                const i64 o = ((bt * Ho + oy) * (i64)Wo + ox) * cout;
#pragma unroll
                for (int co = 0; co < COUT; co++) {
                    if (co >= cout) continue;
                    float v = acc[f][ry][rx][co];
                    if (bias) v += T::load(bias[co]);
                    if (residual) v += T::load(residual[o + co]);
                    out[o + co] = T::store(v);
                }
            }
        }
    }
}

}  // namespace narrow

// Entries `conv3d_narrow_{dtype}_c{COUT}`: COUT 1, 2, 3, 4 and 8 (Cout 5..7 run the 8-wide entry with
// zero weights in the padding channels, which are never stored), one output frame per CTA; and
// `conv3d_narrow_{dtype}_c{COUT}f4`, four output frames per CTA, for COUT up to 3 (48 accumulators;
// at COUT 4 the 64 spill). At most 128 registers, so at least 4 CTAs per SM (up to 38 KiB of static
// shared memory each); the f4 entries at most 168 (they spill at 128), 3 CTAs per SM (up to 46 KiB).
#define CONV3D_NARROW(s, T, C, OF, NAME)                                                                    \
    extern "C" __global__ void __launch_bounds__(narrow::THREADS, OF == 1 ? 4 : 3) NAME(                                    \
        const T::storage* x, const T::storage* prev, const T::storage* w, const T::storage* bias,           \
        const T::storage* residual, T::storage* out, const Conv3dDims d) {                                   \
        narrow::conv3d_narrow<T, C, OF>(x, prev, w, bias, residual, out, d);                                 \
    }
#define CONV3D_NARROW_1(s, T, C) CONV3D_NARROW(s, T, C, 1, conv3d_narrow_##s##_c##C)
#define CONV3D_NARROW_F4(s, T, C) CONV3D_NARROW(s, T, C, 4, conv3d_narrow_##s##_c##C##f4)
#define CONV3D_NARROW_ALL(s, T)                                                                               \
    CONV3D_NARROW_1(s, T, 1) CONV3D_NARROW_1(s, T, 2) CONV3D_NARROW_1(s, T, 3) CONV3D_NARROW_1(s, T, 4)    \
    CONV3D_NARROW_1(s, T, 8) CONV3D_NARROW_F4(s, T, 1) CONV3D_NARROW_F4(s, T, 2) CONV3D_NARROW_F4(s, T, 3)
WANRT_FOR_DTYPES(CONV3D_NARROW_ALL)
