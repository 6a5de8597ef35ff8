// Video patchify / unpatchify: pure data movement between (B, C, T, H, W) volumes and (B, N, features)
// token rows, N = T'·H'·W' in row-major (f, h, w) order. One thread per output element, 64-bit indices.
#include "common.cuh"

struct PatchDims {
    u64 batch, channels, frames, height, width;  // the volume
    u64 pt, ph, pw;                              // patch size
};

// tokens[b, n, ((c·pt + kt)·ph + kh)·pw + kw] = volume[b, c, f·pt+kt, h·ph+kh, w·pw+kw]
// (the flattening order of a Conv3d weight [D, C, pt, ph, pw], so the patch embedding is a Linear).
#define PATCHIFY(sfx, T)                                                                            \
    extern "C" __global__ void patchify_##sfx(const T::storage* __restrict__ vol,                   \
                                              T::storage* __restrict__ tok, PatchDims d) {          \
        const u64 gf = d.frames / d.pt, gh = d.height / d.ph, gw = d.width / d.pw;                  \
        const u64 feat = d.channels * d.pt * d.ph * d.pw;                                           \
        const u64 n = d.batch * gf * gh * gw * feat;                                                \
        GRID_STRIDE(i, n) {                                                                         \
            u64 r = i;                                                                              \
            const u64 kw = r % d.pw; r /= d.pw;                                                     \
            const u64 kh = r % d.ph; r /= d.ph;                                                     \
            const u64 kt = r % d.pt; r /= d.pt;                                                     \
            const u64 c = r % d.channels; r /= d.channels;                                          \
            const u64 w = r % gw; r /= gw;                                                          \
            const u64 h = r % gh; r /= gh;                                                          \
            const u64 f = r % gf; r /= gf;                                                          \
            const u64 b = r;                                                                        \
            const u64 src = (((b * d.channels + c) * d.frames + f * d.pt + kt) * d.height + h * d.ph + kh) \
                                * d.width + w * d.pw + kw;                                          \
            tok[i] = vol[src];                                                                      \
        }                                                                                           \
    }

// volume[b, c, f·pt+kt, h·ph+kh, w·pw+kw] = tokens[b, n, ((kt·ph + kh)·pw + kw)·C + c]
// (the layout of Wan's proj_out features: patch position slowest, channel fastest).
#define UNPATCHIFY(sfx, T)                                                                          \
    extern "C" __global__ void unpatchify_##sfx(const T::storage* __restrict__ tok,                 \
                                                T::storage* __restrict__ vol, PatchDims d) {        \
        const u64 gh = d.height / d.ph, gw = d.width / d.pw;                                        \
        const u64 n = d.batch * d.channels * d.frames * d.height * d.width;                         \
        GRID_STRIDE(i, n) {                                                                         \
            u64 r = i;                                                                              \
            const u64 x = r % d.width; r /= d.width;                                                \
            const u64 y = r % d.height; r /= d.height;                                              \
            const u64 t = r % d.frames; r /= d.frames;                                              \
            const u64 c = r % d.channels; r /= d.channels;                                          \
            const u64 b = r;                                                                        \
            const u64 token = ((t / d.pt) * gh + y / d.ph) * gw + x / d.pw;                         \
            const u64 k = ((t % d.pt) * d.ph + y % d.ph) * d.pw + x % d.pw;                         \
            const u64 tokens = (d.frames / d.pt) * gh * gw;                                         \
            vol[i] = tok[(b * tokens + token) * (d.pt * d.ph * d.pw * d.channels) + k * d.channels + c]; \
        }                                                                                           \
    }

WANRT_FOR_DTYPES(PATCHIFY)
WANRT_FOR_DTYPES(UNPATCHIFY)
