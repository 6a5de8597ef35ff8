// Latent update kernels of the flow-matching schedulers: one scheduler step over n latent elements,
// executing a host-computed plan (models/schedulers/plan.rs: UniPcUpdate, EulerUpdate).
//
// Each kernel is a line-by-line copy of plan.rs' unipc_element / euler_element, so its output is
// bit-identical to the CPU executor's:
// - every float op is one IEEE op rounded to nearest even, written as __fmul_rn / __fadd_rn /
//   __fsub_rn / __fdiv_rn so the compiler cannot contract a multiply and an add into an FMA;
// - bf16 rounding is done on the bits (round to nearest even, any NaN -> 0x7FC0), as torch's
//   c10::BFloat16 and plan.rs do;
// - compile without --use_fast_math / -ftz=true (subnormals must be kept, as on the CPU).
// No includes: NVRTC alone compiles this file. Indices are 64-bit with a grid-stride loop.

// Same fields, order and 4-byte types as plan.rs' #[repr(C)] UniPcUpdate (60 bytes), passed by value.
struct UniPcUpdate {
    unsigned int v_bf16;
    unsigned int corrector_order;  // 0 (first step), 1 or 2
    unsigned int predictor_order;  // 1 or 2
    float sigma;
    float c_x, c_m, c_res, c_r, c_rho0, c_rho1;
    float p_x, p_m, p_res, p_r, p_zero;
};

// plan.rs' #[repr(C)] EulerUpdate (8 bytes).
struct EulerUpdate {
    unsigned int v_bf16;
    float dt;
};

__device__ __forceinline__ float bf16_bits_to_f32(unsigned short b) {
    return __uint_as_float(((unsigned int)b) << 16);
}

__device__ __forceinline__ float bf16_round(float x) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float(0x7fc00000u);
    u += ((u >> 16) & 1u) + 0x7fffu;
    return __uint_as_float(u & 0xffff0000u);
}

__device__ __forceinline__ float load_v(const float* v, unsigned long long i) { return v[i]; }
__device__ __forceinline__ float load_v(const unsigned short* v, unsigned long long i) {
    return bf16_bits_to_f32(v[i]);
}

// x: sample in, x_{k+1} out. m_new: m_{k-2} in (read by an order-2 corrector only), m_k out.
// m_prev: m_{k-1} (read only when corrector_order > 0 or predictor_order == 2; may be null otherwise).
// last: last corrected sample in (read by the corrector only), this step's corrected sample out.
template <typename V, bool V_BF16>
__device__ __forceinline__ void unipc_step(const UniPcUpdate& p, const V* __restrict__ v, float* __restrict__ x,
                                           float* __restrict__ m_new, const float* __restrict__ m_prev,
                                           float* __restrict__ last, unsigned long long n) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float xi = x[i];
        // convert: m = x - sigma*v, the product in v's dtype
        float prod = __fmul_rn(p.sigma, load_v(v, i));
        if (V_BF16) prod = bf16_round(prod);
        const float m = __fsub_rn(xi, prod);
        // corrector (UniC)
        float xc = xi;
        if (p.corrector_order != 0) {
            const float m1 = m_prev[i];
            const float xb = __fsub_rn(__fmul_rn(p.c_x, last[i]), __fmul_rn(p.c_m, m1));
            const float dt = __fsub_rn(m, m1);
            float res;
            if (p.corrector_order == 1) {
                res = __fadd_rn(0.0f, __fmul_rn(p.c_rho1, dt));
            } else {
                const float d = __fdiv_rn(__fsub_rn(m_new[i], m1), p.c_r);
                res = __fadd_rn(__fmul_rn(p.c_rho0, d), __fmul_rn(p.c_rho1, dt));
            }
            xc = __fsub_rn(xb, __fmul_rn(p.c_res, res));
        }
        // predictor (UniP)
        const float xb = __fsub_rn(__fmul_rn(p.p_x, xc), __fmul_rn(p.p_m, m));
        float xn;
        if (p.predictor_order == 1) {
            xn = __fsub_rn(xb, p.p_zero);
        } else {
            const float d = __fdiv_rn(__fsub_rn(m_prev[i], m), p.p_r);
            xn = __fsub_rn(xb, __fmul_rn(p.p_res, __fmul_rn(0.5f, d)));
        }
        x[i] = xn;
        m_new[i] = m;
        last[i] = xc;
    }
}

// x <- x + dt*v; with a bf16 v the product and the result are rounded to bf16.
template <typename V, bool V_BF16>
__device__ __forceinline__ void euler_step(const EulerUpdate& p, const V* __restrict__ v, float* __restrict__ x,
                                           unsigned long long n) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float prod = __fmul_rn(p.dt, load_v(v, i));
        x[i] = V_BF16 ? bf16_round(__fadd_rn(x[i], bf16_round(prod))) : __fadd_rn(x[i], prod);
    }
}

// The entry point is chosen by v's dtype; launchers check that plan.v_bf16 agrees with it.
extern "C" __global__ void unipc_step_f32(UniPcUpdate p, const float* v, float* x, float* m_new,
                                          const float* m_prev, float* last, unsigned long long n) {
    unipc_step<float, false>(p, v, x, m_new, m_prev, last, n);
}

extern "C" __global__ void unipc_step_bf16(UniPcUpdate p, const unsigned short* v, float* x, float* m_new,
                                           const float* m_prev, float* last, unsigned long long n) {
    unipc_step<unsigned short, true>(p, v, x, m_new, m_prev, last, n);
}

extern "C" __global__ void euler_step_f32(EulerUpdate p, const float* v, float* x, unsigned long long n) {
    euler_step<float, false>(p, v, x, n);
}

extern "C" __global__ void euler_step_bf16(EulerUpdate p, const unsigned short* v, float* x, unsigned long long n) {
    euler_step<unsigned short, true>(p, v, x, n);
}
