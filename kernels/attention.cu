// Non-causal multi-head attention forward, flash-style: one block owns BQ queries of one (batch, head)
// and streams the keys in tiles of BK through shared memory with an online softmax, so memory is
// O(N) whatever Nq and Nk are. Plain f32 FMA math (no tensor cores): inputs are converted to f32 when
// a tile is loaded; scores, softmax statistics and the output accumulate in f32; one rounding at the
// end. Tensors use the models' [B, N, H, d] layout directly. The optional additive f32 bias is
// [B or 1, H, Nq, Nk] (relative-position bias); a query row whose scores are all -inf gives zeros.
//
// Tile table (256 threads = 16 row groups x 16 lanes; a thread owns 4 consecutive query rows):
//   S = Q K^T : a thread computes rows tq*4+i (i<4) x keys tk+16j (j<4), float4 reads along d;
//   softmax  : row max / sum across the 16 lanes of a row group with xor shuffles;
//   O += P V : a thread accumulates rows tq*4+i x float4 chunks tk+16u of d.
// Shared memory (f32): Q [BQ][d+4], K [BK][d+4] (reused for P [BK][BQ+4] once S is in registers),
// V [BK][d+4]; the +4 pad makes the float4 row reads of a quarter warp hit distinct banks.
// d=128: 101,376 bytes (fits the 99 KiB opt-in limit of sm_86/sm_89).
#include "ops.cuh"

struct AttnParams {
    u64 q, k, v, bias, out;  // device pointers; bias 0 = none
    u64 batch, nq, nk, heads;
    u64 bias_batch_stride;   // elements between the bias planes of consecutive samples (0 = broadcast)
    float scale;             // multiplies q.k before the bias is added
    float pad_;
};

#define ATT_BQ 64
#define ATT_BK 64
#define ATT_THREADS 256

template <int D>
struct AttTile {
    static constexpr int STR = D + 4;           // Q/K/V row stride in floats
    static constexpr int PSTR = ATT_BQ + 4;     // P row stride (P is key-major: [key][query])
    static constexpr int NCH = D / 4;           // float4 chunks per row
    static constexpr int CH_PER = (NCH + 15) / 16;
    static_assert(D % 4 == 0, "head dim must be a multiple of 4");
    static_assert(PSTR <= STR, "P must fit in K's tile");
};

__device__ __forceinline__ float group16_max(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float group16_sum(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T, int D>
__device__ __forceinline__ void attention(const AttnParams& p) {
    typedef AttTile<D> Tl;
    constexpr int STR = Tl::STR, PSTR = Tl::PSTR, NCH = Tl::NCH, CH_PER = Tl::CH_PER;
    const float NEG_INF = -__int_as_float(0x7f800000);
    const float LOG2E = 1.4426950408889634f;

    extern __shared__ float4 smem4[];
    float* qs = (float*)smem4;
    float* ks = qs + ATT_BQ * STR;
    float* vs = ks + ATT_BK * STR;
    float* ps = ks;

    const int tid = threadIdx.x, tq = tid >> 4, tk = tid & 15;
    const u64 q0 = (u64)blockIdx.x * ATT_BQ, h = blockIdx.y, b = blockIdx.z;
    const u64 H = p.heads, nq = p.nq, nk = p.nk;
    const typename T::storage* qg = (const typename T::storage*)p.q;
    const typename T::storage* kg = (const typename T::storage*)p.k;
    const typename T::storage* vg = (const typename T::storage*)p.v;
    typename T::storage* og = (typename T::storage*)p.out;
    const float* bias = p.bias ? (const float*)p.bias + b * p.bias_batch_stride + h * nq * nk : nullptr;

    for (int idx = tid; idx < ATT_BQ * D; idx += ATT_THREADS) {
        const int r = idx / D, c = idx % D;
        const u64 qi = q0 + r;
        qs[r * STR + c] = qi < nq ? T::load(qg[((b * nq + qi) * H + h) * D + c]) : 0.f;
    }

    float m[4], l[4], o[4][CH_PER][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        m[i] = NEG_INF;
        l[i] = 0.f;
#pragma unroll
        for (int u = 0; u < CH_PER; ++u)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[i][u][e] = 0.f;
    }

    for (u64 k0 = 0; k0 < nk; k0 += ATT_BK) {
        __syncthreads();  // the previous tile's P and V are consumed (and Q is loaded)
        for (int idx = tid; idx < ATT_BK * D; idx += ATT_THREADS) {
            const int r = idx / D, c = idx % D;
            const u64 ki = k0 + r;
            float kv = 0.f, vv = 0.f;  // zero rows past Nk: their P is 0 and 0 * V must not be NaN
            if (ki < nk) {
                const u64 off = ((b * nk + ki) * H + h) * D + c;
                kv = T::load(kg[off]);
                vv = T::load(vg[off]);
            }
            ks[r * STR + c] = kv;
            vs[r * STR + c] = vv;
        }
        __syncthreads();

        float s[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
#pragma unroll 4
        for (int c4 = 0; c4 < NCH; ++c4) {
            float4 qv[4], kv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) qv[i] = *(const float4*)&qs[(tq * 4 + i) * STR + c4 * 4];
#pragma unroll
            for (int j = 0; j < 4; ++j) kv[j] = *(const float4*)&ks[(tk + 16 * j) * STR + c4 * 4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    float a = s[i][j];
                    a = fmaf(qv[i].x, kv[j].x, a);
                    a = fmaf(qv[i].y, kv[j].y, a);
                    a = fmaf(qv[i].z, kv[j].z, a);
                    a = fmaf(qv[i].w, kv[j].w, a);
                    s[i][j] = a;
                }
        }
        __syncthreads();  // every thread is done reading K before P overwrites it

        // Online softmax in the log2 domain: t = (q.k * scale + bias) * log2(e).
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const u64 qi = q0 + tq * 4 + i;
            float mx = NEG_INF;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const u64 ki = k0 + tk + 16 * j;
                float t = NEG_INF;
                if (ki < nk) {
                    t = s[i][j] * p.scale;
                    if (bias && qi < nq) t += bias[qi * nk + ki];
                    t *= LOG2E;
                }
                s[i][j] = t;
                mx = fmaxf(mx, t);
            }
            mx = group16_max(mx);
            const float m_new = fmaxf(m[i], mx);
            const float m_use = m_new == NEG_INF ? 0.f : m_new;  // all -inf so far: keep exp2 finite
            const float alpha = exp2f(m[i] - m_use);
            float rs = 0.f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                s[i][j] = exp2f(s[i][j] - m_use);
                rs += s[i][j];
            }
            rs = group16_sum(rs);
            l[i] = l[i] * alpha + rs;
            m[i] = m_new;
#pragma unroll
            for (int u = 0; u < CH_PER; ++u)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[i][u][e] *= alpha;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
            *(float4*)&ps[(tk + 16 * j) * PSTR + tq * 4] = make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
        __syncthreads();

        const int kmax = (nk - k0) < (u64)ATT_BK ? (int)(nk - k0) : ATT_BK;
#pragma unroll 4
        for (int kk = 0; kk < kmax; ++kk) {
            const float4 pv = *(const float4*)&ps[kk * PSTR + tq * 4];
            const float pr[4] = {pv.x, pv.y, pv.z, pv.w};
#pragma unroll
            for (int u = 0; u < CH_PER; ++u) {
                const int ch = tk + 16 * u;
                if (ch < NCH) {
                    const float4 vv = *(const float4*)&vs[kk * STR + ch * 4];
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        o[i][u][0] = fmaf(pr[i], vv.x, o[i][u][0]);
                        o[i][u][1] = fmaf(pr[i], vv.y, o[i][u][1]);
                        o[i][u][2] = fmaf(pr[i], vv.z, o[i][u][2]);
                        o[i][u][3] = fmaf(pr[i], vv.w, o[i][u][3]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const u64 qi = q0 + tq * 4 + i;
        if (qi >= nq) continue;
        const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
        typename T::storage* orow = og + ((b * nq + qi) * H + h) * D;
#pragma unroll
        for (int u = 0; u < CH_PER; ++u) {
            const int ch = tk + 16 * u;
            if (ch < NCH)
#pragma unroll
                for (int e = 0; e < 4; ++e) orow[ch * 4 + e] = T::store(o[i][u][e] * inv);
        }
    }
}

#define ATTENTION_D(st, T, dd)                                                                            \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_##st##_d##dd(const AttnParams p) { \
        attention<T, dd>(p);                                                                              \
    }
#define ATTENTION(st, T) ATTENTION_D(st, T, 64) ATTENTION_D(st, T, 80) ATTENTION_D(st, T, 128)
WANRT_FOR_DTYPES(ATTENTION)
