// Channels-last resampling and layout changes of the Wan VAE (diffusers autoencoder_kl_wan.py):
// nearest 2x spatial upsampling, the temporal frame interleave of `WanResample`'s upsample3d, and the
// conversions between PyTorch's [B,C,T,H,W] and channels-last [B,T,H,W,C]. Pure data movement (and
// one optional clamp), one output element per iteration of a 64-bit grid-stride loop.
#include "ops.cuh"

// out [N, 2H, 2W, C] from x [N, H, W, C]: each pixel repeated 2x2 (nn.Upsample(scale_factor=2,
// mode="nearest-exact"), which for an exact factor 2 reads source pixel floor(o / 2)).
template <typename T>
__device__ void upsample2x(const typename T::storage* x, typename T::storage* out, u64 n, u64 h, u64 w, u64 c) {
    const u64 total = n * 4 * h * w * c;
    GRID_STRIDE(i, total) {
        u64 r = i;
        const u64 ch = r % c; r /= c;
        const u64 ow = r % (2 * w); r /= 2 * w;
        const u64 oh = r % (2 * h);
        const u64 img = r / (2 * h);
        out[i] = x[((img * h + oh / 2) * w + ow / 2) * c + ch];
    }
}

// out [B, 2T, H, W, C] from x [B, T, H, W, 2C]: frame 2t+j is channels [jC, (j+1)C) of frame t (the
// reshape(b, 2, c, t, h, w) / stack of upsample3d, channels-last).
template <typename T>
__device__ void time_interleave(const typename T::storage* x, typename T::storage* out, u64 b, u64 t, u64 hw, u64 c) {
    const u64 total = b * 2 * t * hw * c;
    GRID_STRIDE(i, total) {
        u64 r = i;
        const u64 ch = r % c; r /= c;
        const u64 p = r % hw; r /= hw;
        const u64 of = r % (2 * t);
        const u64 bi = r / (2 * t);
        out[i] = x[((bi * t + of / 2) * hw + p) * 2 * c + (of & 1) * c + ch];
    }
}

// out [B, T, S, C] (channels-last, S = H*W) from frames t0 .. t0 + T of x [B, C, t_in, S], converted to
// O's dtype (a window of frames, so the VAE encoder converts one chunk at a time).
template <typename X, typename O>
__device__ void to_channels_last(const typename X::storage* x, typename O::storage* out, u64 b, u64 c, u64 t, u64 s,
                                 u64 t_in, u64 t0) {
    const u64 total = b * c * t * s;
    GRID_STRIDE(i, total) {
        u64 r = i;
        const u64 ch = r % c; r /= c;
        const u64 p = r % s; r /= s;
        const u64 f = r % t;
        const u64 bi = r / t;
        out[i] = O::store(X::load(x[((bi * c + ch) * t_in + t0 + f) * s + p]));
    }
}

// out [B, C, T, S] from channels-last x [B, T, S, C], converted to O's dtype, clamped to [lo, hi]
// when `clamp` is set (the decoder's final torch.clamp, applied before the rounding; NaN propagates).
template <typename X, typename O>
__device__ void from_channels_last(const typename X::storage* x, typename O::storage* out, u64 b, u64 c, u64 t, u64 s,
                                   int clamp, float lo, float hi) {
    const u64 total = b * c * t * s;
    GRID_STRIDE(i, total) {
        u64 r = i;
        const u64 p = r % s; r /= s;
        const u64 f = r % t; r /= t;
        const u64 ch = r % c;
        const u64 bi = r / c;
        float v = X::load(x[((bi * t + f) * s + p) * c + ch]);
        if (clamp) v = v < lo ? lo : (v > hi ? hi : v);  // NaN stays NaN, as torch.clamp
        out[i] = O::store(v);
    }
}

// A spatial window of channels-last frames: out[f, y, x, :] = x[f, y, x, :] for f < frames, y < h,
// x < w, each side addressed through its own row and frame strides (in elements), so either can be a
// window of a larger frame (the VAE decoder's tiles: the halo'd input crop and the interior output).
template <typename T>
__device__ void copy_window(const typename T::storage* x, typename T::storage* out, u64 frames, u64 h, u64 w,
                            u64 c, u64 x_row, u64 x_frame, u64 o_row, u64 o_frame) {
    const u64 total = frames * h * w * c;
    GRID_STRIDE(i, total) {
        u64 r = i;
        const u64 ch = r % c; r /= c;
        const u64 px = r % w; r /= w;
        const u64 py = r % h;
        const u64 f = r / h;
        out[f * o_frame + py * o_row + px * c + ch] = x[f * x_frame + py * x_row + px * c + ch];
    }
}

// Packed forms (`*_v8`): a thread moves 8 channels with 16-byte accesses (two for f32), bitwise like
// the scalar forms; the launchers take them when c % 8 == 0 and both tensors are 16-byte aligned (the
// scalar forms do one 2-byte access and four 64-bit divisions per element). upsample2x_v8 reads each
// source pack once and stores it to its four destination pixels.
template <typename T>
struct Pack8 {
    static constexpr int WORDS = sizeof(typename T::storage) / 2;  // 16-byte words per 8 elements
    Raw16 v[WORDS];
    __device__ __forceinline__ void load(const typename T::storage* p) {
#pragma unroll
        for (int k = 0; k < WORDS; ++k) v[k] = reinterpret_cast<const Raw16*>(p)[k];
    }
    // One st.global.v4 per word: written as a plain struct store, NVRTC 13.0 splits upsample2x_v8's four
    // stores of one pack into 32-bit ones.
    __device__ __forceinline__ void store(typename T::storage* p) const {
#pragma unroll
        for (int k = 0; k < WORDS; ++k)
            asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"l"(reinterpret_cast<Raw16*>(p) + k), "r"(v[k].w[0]),
                         "r"(v[k].w[1]), "r"(v[k].w[2]), "r"(v[k].w[3])
                         : "memory");
    }
};

template <typename T>
__device__ void upsample2x_v8(const typename T::storage* x, typename T::storage* out, u64 n, u64 h, u64 w, u64 c) {
    const u64 c8 = c / 8, total = n * h * w * c8;
    GRID_STRIDE(i, total) {
        const u64 pix = i / c8, ch = (i - pix * c8) * 8;
        const u64 r = pix / w, iw = pix - r * w;
        const u64 img = r / h, ih = r - img * h;
        Pack8<T> v;
        v.load(x + pix * c + ch);
        typename T::storage* o = out + ((img * 2 * h + 2 * ih) * 2 * w + 2 * iw) * c + ch;
        v.store(o);
        v.store(o + c);
        v.store(o + 2 * w * c);
        v.store(o + 2 * w * c + c);
    }
}

template <typename T>
__device__ void time_interleave_v8(const typename T::storage* x, typename T::storage* out, u64 b, u64 t, u64 hw, u64 c) {
    const u64 c8 = c / 8, total = b * 2 * t * hw * c8;
    GRID_STRIDE(i, total) {
        u64 r = i / c8;
        const u64 ch = (i - r * c8) * 8;
        const u64 p = r % hw;
        r /= hw;
        const u64 of = r % (2 * t), bi = r / (2 * t);
        Pack8<T> v;
        v.load(x + ((bi * t + of / 2) * hw + p) * 2 * c + (of & 1) * c + ch);
        v.store(out + i * 8);
    }
}

#define RESAMPLE(s, T)                                                                                     \
    extern "C" __global__ void upsample2x_##s(const T::storage* x, T::storage* out, u64 n, u64 h, u64 w, u64 c) { \
        upsample2x<T>(x, out, n, h, w, c);                                                                 \
    }                                                                                                      \
    extern "C" __global__ void time_interleave_##s(const T::storage* x, T::storage* out, u64 b, u64 t, u64 hw,  \
                                                   u64 c) {                                                \
        time_interleave<T>(x, out, b, t, hw, c);                                                           \
    }                                                                                                      \
    extern "C" __global__ void upsample2x_v8_##s(const T::storage* x, T::storage* out, u64 n, u64 h, u64 w, u64 c) { \
        upsample2x_v8<T>(x, out, n, h, w, c);                                                              \
    }                                                                                                      \
    extern "C" __global__ void time_interleave_v8_##s(const T::storage* x, T::storage* out, u64 b, u64 t,      \
                                                      u64 hw, u64 c) {                                     \
        time_interleave_v8<T>(x, out, b, t, hw, c);                                                        \
    }                                                                                                      \
    extern "C" __global__ void copy_window_##s(const T::storage* x, T::storage* out, u64 frames, u64 h, u64 w, \
                                               u64 c, u64 x_row, u64 x_frame, u64 o_row, u64 o_frame) {   \
        copy_window<T>(x, out, frames, h, w, c, x_row, x_frame, o_row, o_frame);                           \
    }
WANRT_FOR_DTYPES(RESAMPLE)

#define LAYOUTS(sx, X, so, O)                                                                              \
    extern "C" __global__ void to_channels_last_##sx##_##so(const X::storage* x, O::storage* out, u64 b, u64 c, \
                                                            u64 t, u64 s, u64 t_in, u64 t0) {              \
        to_channels_last<X, O>(x, out, b, c, t, s, t_in, t0);                                              \
    }                                                                                                      \
    extern "C" __global__ void from_channels_last_##sx##_##so(const X::storage* x, O::storage* out, u64 b,    \
                                                              u64 c, u64 t, u64 s, int clamp, float lo,    \
                                                              float hi) {                                  \
        from_channels_last<X, O>(x, out, b, c, t, s, clamp, lo, hi);                                       \
    }
WANRT_FOR_DTYPE_PAIRS(LAYOUTS)
