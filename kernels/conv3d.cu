// Portable 3-D convolution, channels-last, as an implicit GEMM on CUDA cores: f32 FMA math over
// f32/bf16/f16 storage, f32 accumulation, bias and residual added in f32, one rounding to the output.
//
// `residual` may be `out` itself (each element is read, then written, by one thread); nothing else
// may alias `out`.
//
// Layouts: x [B,T,H,W,Cin], prev [B,P,H,W,Cin] (the causal cache: frames logically before x, read in
// place), w [Cout,kt,kh,kw,Cin], bias [Cout], residual and out [B,To,Ho,Wo,Cout]. The logical time
// axis is [pad_t zero frames ; prev's P frames ; x's T frames]; spatially, pad_h0/pad_w0 zeros lie
// before row/column 0 and anything past H/W reads as zero (the bottom/right padding is implied by
// Ho/Wo, which the launcher checks).
//
// Tiling: a block computes TILE_M output positions x TILE_N output channels, 16x16 threads each
// computing a 4x4 sub-tile strided by 16 (conflict-free shared reads). The reduction runs over the
// taps (dt, dh, dw), then over Cin in chunks of TILE_K, so every output sums in the same order
// whatever the tile position.
#include "common.cuh"

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16

// Geometry, passed by value (Conv3dDims in runtime/gpu/params.rs: 19 x i64).
struct Conv3dDims {
    i64 batch, t, p, h, w, cin, cout;
    i64 to, ho, wo;
    i64 kt, kh, kw;
    i64 st, sh, sw;
    i64 pad_t, pad_h, pad_w;
};

template <typename T>
__device__ void conv3d(const typename T::storage* __restrict__ x, const typename T::storage* __restrict__ prev,
                       const typename T::storage* __restrict__ w, const typename T::storage* __restrict__ bias,
                       const typename T::storage* residual, typename T::storage* out,
                       const Conv3dDims d) {
    __shared__ float as[TILE_K][TILE_M + 1];
    __shared__ float bs[TILE_K][TILE_N + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const i64 m_total = d.batch * d.to * d.ho * d.wo;
    const i64 m0 = (i64)blockIdx.x * TILE_M, n0 = (i64)blockIdx.y * TILE_N;

    // The output position this thread loads A rows for (row tid/4, four consecutive channels).
    const int lrow = tid >> 2, lk = (tid & 3) * 4;
    const i64 m = m0 + lrow;
    const bool m_ok = m < m_total;
    i64 b = 0, to = 0, ho = 0, wo = 0;
    if (m_ok) {
        i64 r = m;
        wo = r % d.wo; r /= d.wo;
        ho = r % d.ho; r /= d.ho;
        to = r % d.to; b = r / d.to;
    }
    // The output channel this thread loads B rows for.
    const i64 co_l = n0 + lrow;
    const bool n_ok = co_l < d.cout;
    const i64 taps = d.kt * d.kh * d.kw;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

    for (i64 tap = 0; tap < taps; tap++) {
        const i64 dw = tap % d.kw, dh = (tap / d.kw) % d.kh, dt = tap / (d.kw * d.kh);
        // Source row of this tap for this thread's output position, or null for a zero (padding).
        const typename T::storage* src = nullptr;
        if (m_ok) {
            const i64 lt = to * d.st + dt - d.pad_t;  // index into [prev ; x]
            const i64 hi = ho * d.sh + dh - d.pad_h, wi = wo * d.sw + dw - d.pad_w;
            if (lt >= 0 && hi >= 0 && hi < d.h && wi >= 0 && wi < d.w) {
                if (lt < d.p) src = prev + (((b * d.p + lt) * d.h + hi) * d.w + wi) * d.cin;
                else src = x + (((b * d.t + (lt - d.p)) * d.h + hi) * d.w + wi) * d.cin;
            }
        }
        const typename T::storage* wrow = n_ok ? w + (co_l * taps + tap) * d.cin : nullptr;
        for (i64 c0 = 0; c0 < d.cin; c0 += TILE_K) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const i64 c = c0 + lk + j;
                as[lk + j][lrow] = (src && c < d.cin) ? T::load(src[c]) : 0.f;
                bs[lk + j][lrow] = (wrow && c < d.cin) ? T::load(wrow[c]) : 0.f;
            }
            __syncthreads();
#pragma unroll
            for (int k = 0; k < TILE_K; k++) {
                float a[4], bv[4];
#pragma unroll
                for (int i = 0; i < 4; i++) a[i] = as[k][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; j++) bv[j] = bs[k][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
            }
            __syncthreads();
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const i64 mm = m0 + ty + 16 * i;
        if (mm >= m_total) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const i64 co = n0 + tx + 16 * j;
            if (co >= d.cout) continue;
            float v = acc[i][j];
            if (bias) v += T::load(bias[co]);
            const i64 o = mm * d.cout + co;
            if (residual) v += T::load(residual[o]);
            out[o] = T::store(v);
        }
    }
}

#define CONV3D(s, T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(256) conv3d_##s(                                            \
        const T::storage* x, const T::storage* prev, const T::storage* w, const T::storage* bias,           \
        const T::storage* residual, T::storage* out, const Conv3dDims d) {                                   \
        conv3d<T>(x, prev, w, bias, residual, out, d);                                                       \
    }
WANRT_FOR_DTYPES(CONV3D)
