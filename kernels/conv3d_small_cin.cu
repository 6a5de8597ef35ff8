// Direct 3-D convolution for tiny inputs (Cin <= 4), channels-last, 3×3 spatial taps, spatial stride 1,
// any kt / time stride / padding: the Wan VAE encoder's conv_in (3 → 96 channels, 3×3×3 causal;
// diffusers autoencoder_kl_wan.py `WanEncoder3d.conv_in`, a `WanCausalConv3d`), which the tensor-core
// kernels refuse (they copy Cin in 16-byte groups: Cin % 8 or % 4) and the portable kernel runs with
// each tap's 3 channels padded to a K block of 16. The mirror of kernels/conv3d_narrow.cu (Cout <= 8)
// and the same contract as kernels/conv3d.cu: x [B,T,H,W,Cin], prev [B,P,H,W,Cin] (the causal cache,
// frames logically before x, read in place), w [Cout,kt,3,3,Cin], bias [Cout], residual and out
// [B,To,Ho,Wo,Cout]; logical time [pad_t zero frames ; prev ; x]; pad_h/pad_w zeros before row/column
// 0, anything past H/W reads as zero. f32 FMA products and sums whatever the storage dtype (f32
// storage stays f32-exact: no TF32), bias then residual added in f32, one rounding to the output.
// `residual` may be `out` itself (each element is read, then written, by one thread); nothing else may
// alias `out`.
//
// A CTA of 256 threads owns a 16 × 32 tile of output pixels of one output frame. It stages the input
// halo of every time tap once, as f32 channel planes of 18 × 36 (the 34 halo columns rounded up to
// whole float4s), in dynamic shared memory (kt·Cin·2.5 KiB), then runs over blocks of 32 output
// channels: per block it stages the block's kt·9·Cin·32 weights as [dt][tap][ci][32 outputs] f32
// (kt·Cin·1.1 KiB) and computes the block in registers: four groups of two warps, each group 8
// channels, a thread 8 consecutive columns of one row × its group's 8 channels (64 accumulators). Per
// time tap, kernel row and input channel a thread reads its 10-wide input window as three float4
// (conflict-free for the two full ones: a quarter-warp reads two rows whose pitch of 9 float4 is odd)
// and reuses it for the three kernel columns, each against its group's 8 weights (two float4 that
// every lane of the warp reads: broadcasts): 3·64 FMAs for 3 + 6 shared loads, about 94% of the inner
// loop's instructions FFMA, so the kernel runs near the FMA rate. Staging the input once per tile
// rather than once per channel block keeps the loads, conversions and barriers at a few percent. The
// sum order of every output is fixed (time tap, kernel row, input channel, kernel column), whatever
// the tile, the channel block or the split.
//
// CTAs are numbered (tile, output frame, split): the `splits` CTAs of one tile and frame take every
// splits-th channel block (the launcher splits only grids too small to fill the device), and the CTAs
// that read one input frame run together, so each input frame comes from DRAM about once and its
// re-reads hit L2.
#include "common.cuh"

// Geometry, passed by value (Conv3dDims in runtime/gpu/params.rs: 19 x i64), as kernels/conv3d.cu.
struct Conv3dDims {
    i64 batch, t, p, h, w, cin, cout;
    i64 to, ho, wo;
    i64 kt, kh, kw;
    i64 st, sh, sw;
    i64 pad_t, pad_h, pad_w;
};

namespace small_cin {

constexpr int THREADS = 256;
constexpr int K = 3;                                   // spatial taps per axis
constexpr int RW = 8;                                  // output columns per thread
constexpr int CO = 8;                                  // output channels per thread (one group)
constexpr int GROUPS = THREADS / 64;                   // channel groups, two warps each
constexpr int COB = GROUPS * CO;                       // output channels per CTA
constexpr int TX = 4, TH = 16;                         // threads along a row, rows (one per thread)
constexpr int TW = TX * RW;                            // tile width
constexpr int HH = TH + K - 1;                         // halo rows
constexpr int PW = (TW + K - 1 + 3) / 4 * 4;           // halo columns, whole float4s: the plane pitch
constexpr int PLANE = HH * PW;                         // floats per channel plane
constexpr int WIN = (RW + K - 1 + 3) / 4;              // float4s of a thread's input window
static_assert(TX * TH * GROUPS == THREADS, "64 pixel threads per channel group");
static_assert((PW / 4) % 2 == 1, "an odd float4 pitch keeps a quarter-warp's two rows off each other's banks");
static_assert(TX * RW + 4 * WIN - RW <= PW, "the last thread's window stays inside the pitch");

// 8 values of one pixel's channel group as raw 16-byte chunks (1 for bf16/f16, 2 for f32).
template <typename T>
struct Pack8 {
    typedef typename T::storage S;
    static constexpr int CHUNKS = sizeof(S) == 4 ? 2 : 1;

    static __device__ __forceinline__ void load(const S* p, float v[8]) {
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) {
            const uint4 q = reinterpret_cast<const uint4*>(p)[j];
            const u32 r[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                if constexpr (CHUNKS == 2) {
                    v[4 * j + e] = __uint_as_float(r[e]);
                } else {
                    v[2 * e] = T::load((u16)(r[e] & 0xffffu));
                    v[2 * e + 1] = T::load((u16)(r[e] >> 16));
                }
            }
        }
    }
    static __device__ __forceinline__ void store(S* p, const float v[8]) {
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) {
            u32 r[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                if constexpr (CHUNKS == 2) {
                    r[e] = __float_as_uint(v[4 * j + e]);
                } else {
                    r[e] = (u32)T::store(v[2 * e]) | ((u32)T::store(v[2 * e + 1]) << 16);
                }
            }
            reinterpret_cast<uint4*>(p)[j] = make_uint4(r[0], r[1], r[2], r[3]);
        }
    }
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((u64)p & 15) == 0; }

template <typename T, int CIN>
__device__ void conv3d_small_cin(const typename T::storage* __restrict__ x, const typename T::storage* __restrict__ prev,
                                 const typename T::storage* __restrict__ w, const typename T::storage* __restrict__ bias,
                                 const typename T::storage* residual, typename T::storage* out, const Conv3dDims d) {
    typedef typename T::storage S;
    constexpr int NX = CIN * PLANE;                      // input floats of one time tap
    constexpr int NXP = (PLANE + THREADS - 1) / THREADS;  // halo pixels per thread and tap
    constexpr int TAPW = K * K * CIN;                    // weights of one output channel and time tap
    constexpr int WB = 8;                                // weights in flight per thread
    // Dynamic shared memory (runtime/ops/conv/small_cin.rs `shared_bytes`): kt·NX input floats, then
    // kt·TAPW·COB weights.
    extern __shared__ float4 smem4[];
    float* xs = reinterpret_cast<float*>(smem4);

    // Warps 2g and 2g + 1 are channel group g; their 64 threads are the tile's pixel threads, 4 along a
    // row (so a quarter-warp covers two rows).
    const int g = threadIdx.x / 64, pt = threadIdx.x % 64, tx = pt % TX, ty = pt / TX;
    // The launcher keeps spatial sizes, paddings, one input frame (H·W·Cin) and w below 2^31 elements
    // (runtime/ops/conv/small_cin.rs).
    const int H = (int)d.h, W = (int)d.w, cout = (int)d.cout, kt = (int)d.kt;
    const int Ho = (int)d.ho, Wo = (int)d.wo;
    float* ws = xs + kt * NX;
    const int blocks = (cout + COB - 1) / COB;
    // CTAs per (output frame, tile), each taking every `splits`-th channel block (the launcher picks
    // it from the grid's size): CTA = (tile · frames + frame) · splits + split.
    const i64 frames = d.batch * d.to, tiles_w = (d.wo + TW - 1) / TW;
    const i64 tiles = tiles_w * ((d.ho + TH - 1) / TH);
    const int splits = (int)((i64)gridDim.x / (frames * tiles)), split = (int)((i64)blockIdx.x % splits);
    const i64 cta = (i64)blockIdx.x / splits, bt = cta % frames, tile = cta / frames;
    const i64 b = bt / d.to, to = bt % d.to;
    const int ox0 = (int)(tile % tiles_w) * TW, oy0 = (int)(tile / tiles_w) * TH;
    const int iy0 = oy0 - (int)d.pad_h, ix0 = ox0 - (int)d.pad_w;
    const i64 frame_elems = d.h * d.w * CIN;

    // The input halo of every time tap, once: a pixel per thread and step (its Cin channels are adjacent
    // in x), all loads of a tap in flight before the first conversion; zero outside the frame and in the
    // pitch's last columns. A causal zero frame (lt < 0) is neither staged nor read.
    for (int dt = 0; dt < kt; dt++) {
        const i64 lt = to * d.st + dt - d.pad_t;  // index into [prev ; x]
        if (lt < 0) continue;
        const S* frame = lt < d.p ? prev + (b * d.p + lt) * frame_elems : x + (b * d.t + (lt - d.p)) * frame_elems;
        S xv[NXP][CIN];
#pragma unroll
        for (int j = 0; j < NXP; j++) {
            const int px = threadIdx.x + j * THREADS, hy = px / PW, hx = px - hy * PW, gy = iy0 + hy, gx = ix0 + hx;
            const bool in = px < PLANE && hx < TW + K - 1 && (unsigned)gy < (unsigned)H && (unsigned)gx < (unsigned)W;
            const S* src = frame + (in ? (gy * W + gx) * CIN : 0);
#pragma unroll
            for (int ci = 0; ci < CIN; ci++) xv[j][ci] = in ? src[ci] : S(0);  // S(0): +0 in every dtype
        }
        float* plane = xs + dt * NX;
#pragma unroll
        for (int j = 0; j < NXP; j++) {
            const int px = threadIdx.x + j * THREADS;
#pragma unroll
            for (int ci = 0; ci < CIN; ci++) {
                if (px < PLANE) plane[ci * PLANE + px] = T::load(xv[j][ci]);
            }
        }
    }

    const int nw = kt * TAPW * COB;
    for (int cb = split; cb < blocks; cb += splits) {
        const int co0 = cb * COB, cg = co0 + g * CO;
        // Warp-uniform: a group past Cout (in the last block of a partial Cout) stages but computes
        // nothing.
        const bool active = cg < cout;
        __syncthreads();  // the previous block's weights are read (and, first, the input is staged)
        {
            // The block's weights, ws[dt][tap][ci][co] = w[co0 + co][dt][tap][ci]: a warp writes 32
            // output channels of one (dt, tap, ci), so its shared stores are conflict-free; zero past
            // Cout. Offsets from the block's first channel in i32 (w is below 2^31 elements).
            const S* wb = w + (i64)co0 * (kt * TAPW);
            for (int i0 = 0; i0 < nw; i0 += WB * THREADS) {
                S wv[WB];
#pragma unroll
                for (int j = 0; j < WB; j++) {
                    const int i = i0 + j * THREADS + threadIdx.x, q = i / COB, col = i - q * COB;
                    wv[j] = S(0);
                    if (i < nw && co0 + col < cout) wv[j] = wb[col * (kt * TAPW) + q];
                }
#pragma unroll
                for (int j = 0; j < WB; j++) {
                    const int i = i0 + j * THREADS + threadIdx.x;
                    if (i < nw) ws[i] = T::load(wv[j]);
                }
            }
        }
        __syncthreads();
        if (!active) continue;

        float acc[RW][CO];
#pragma unroll
        for (int i = 0; i < RW; i++)
#pragma unroll
            for (int c = 0; c < CO; c++) acc[i][c] = 0.f;

        for (int dt = 0; dt < kt; dt++) {
            // A causal zero frame adds nothing (the same for the whole CTA).
            if (to * d.st + dt - d.pad_t < 0) continue;
            const float* xrow = xs + dt * NX + ty * PW + tx * RW;
            const float* wrow = ws + dt * TAPW * COB + g * CO;
#pragma unroll
            for (int dh = 0; dh < K; dh++) {
#pragma unroll
                for (int ci = 0; ci < CIN; ci++) {
                    float v[4 * WIN];
#pragma unroll
                    for (int q = 0; q < WIN; q++) {
                        const float4 a = reinterpret_cast<const float4*>(xrow + ci * PLANE + dh * PW)[q];
                        v[4 * q] = a.x, v[4 * q + 1] = a.y, v[4 * q + 2] = a.z, v[4 * q + 3] = a.w;
                    }
#pragma unroll
                    for (int dw = 0; dw < K; dw++) {
                        const float* wp = wrow + ((dh * K + dw) * CIN + ci) * COB;
                        const float4 w0 = reinterpret_cast<const float4*>(wp)[0], w1 = reinterpret_cast<const float4*>(wp)[1];
                        const float wr[CO] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
                        for (int rx = 0; rx < RW; rx++)
#pragma unroll
                            for (int c = 0; c < CO; c++) acc[rx][c] = fmaf(v[rx + dw], wr[c], acc[rx][c]);
                    }
                }
            }
        }

        // The thread's pixel from the thread index read anew: its output offsets are then computed here
        // rather than hoisted out of the block loop, where they stayed live through the FMA loop and
        // spilled at the 128-register bound (as in kernels/conv3d_narrow.cu).
        int tid;
        asm volatile("mov.u32 %0, %%tid.x;" : "=r"(tid));
        const int ep = tid % 64, ex = ep % TX, oy = oy0 + ep / TX;
        if (oy >= Ho) continue;
        float bv[CO];
#pragma unroll
        for (int c = 0; c < CO; c++) bv[c] = bias && cg + c < cout ? T::load(bias[cg + c]) : 0.f;
        // Whole groups of 8 channels as 16-byte accesses where Cout % 8 == 0 keeps them aligned; element
        // accesses otherwise.
        const bool vec = cout % CO == 0 && aligned16(out) && (residual == nullptr || aligned16(residual));
        const i64 row = (bt * Ho + oy) * (i64)Wo;
#pragma unroll
        for (int rx = 0; rx < RW; rx++) {
            const int ox = ox0 + ex * RW + rx;
            if (ox >= Wo) continue;
            const i64 o = (row + ox) * cout + cg;
            float v[CO];
#pragma unroll
            for (int c = 0; c < CO; c++) v[c] = bias ? acc[rx][c] + bv[c] : acc[rx][c];
            if (vec) {
                if (residual) {
                    float r[CO];
                    Pack8<T>::load(residual + o, r);
#pragma unroll
                    for (int c = 0; c < CO; c++) v[c] += r[c];
                }
                Pack8<T>::store(out + o, v);
            } else {
#pragma unroll
                for (int c = 0; c < CO; c++) {
                    if (cg + c >= cout) continue;
                    float e = v[c];
                    if (residual) e += T::load(residual[o + c]);
                    out[o + c] = T::store(e);
                }
            }
        }
    }
}

}  // namespace small_cin

// Entries `conv3d_small_cin_{dtype}_c{CIN}`, CIN 1..4 (the loops unroll over the channels). At most 128
// registers, so two CTAs (16 warps) per SM; kt·CIN·3744 bytes of dynamic shared memory each (34 KiB for
// conv_in's kt = 3, Cin = 3).
#define CONV3D_SMALL_CIN(s, T, C)                                                                               \
    extern "C" __global__ void __launch_bounds__(small_cin::THREADS, 2) conv3d_small_cin_##s##_c##C(          \
        const T::storage* x, const T::storage* prev, const T::storage* w, const T::storage* bias,             \
        const T::storage* residual, T::storage* out, const Conv3dDims d) {                                     \
        small_cin::conv3d_small_cin<T, C>(x, prev, w, bias, residual, out, d);                                 \
    }
#define CONV3D_SMALL_CIN_ALL(s, T) \
    CONV3D_SMALL_CIN(s, T, 1) CONV3D_SMALL_CIN(s, T, 2) CONV3D_SMALL_CIN(s, T, 3) CONV3D_SMALL_CIN(s, T, 4)
WANRT_FOR_DTYPES(CONV3D_SMALL_CIN_ALL)
