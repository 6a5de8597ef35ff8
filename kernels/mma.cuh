// Warp-level tensor-core helpers for sm_80 and newer: mma.sync m16n8k16, ldmatrix, cp.async. Inline PTX
// only (NVRTC alone, no toolkit headers).
//
// Fragment layouts of mma.sync.aligned.m16n8k16.row.col (PTX ISA, "Matrix fragments for mma.m16n8k16"),
// for lane = 4·g + t (g = lane >> 2 in 0..7, t = lane & 3 in 0..3); each .b32 register holds two 16-bit
// values, the lower column/row index in the low half:
//   A (16×16, row-major, 4 regs): a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..2t+1]
//                                 a2 = A[g][2t+8..2t+9] a3 = A[g+8][2t+8..2t+9]
//   B (16×8, k×n, 2 regs):        b0 = B[2t..2t+1][g]   b1 = B[2t+8..2t+9][g]
//   C/D (16×8, f32, 4 regs):      c0 = C[g][2t] c1 = C[g][2t+1] c2 = C[g+8][2t] c3 = C[g+8][2t+1]
//
// ldmatrix.m8n8.x4 loads four 8×8 b16 matrices; lanes 8i..8i+7 give the shared addresses of the 8 rows
// (16 contiguous bytes each) of matrix i, and register ri of lane (g, t) receives, of matrix i:
//   plain:  M[g][2t], M[g][2t+1]        .trans: M[2t][g], M[2t+1][g]
#pragma once
#include "common.cuh"

// 32-bit shared-window address of a generic pointer into shared memory (what ldmatrix and cp.async take).
__device__ __forceinline__ u32 smem_u32(const void* p) {
    u32 r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

// 16-byte global→shared copy bypassing L1. `valid == false` copies nothing and zero-fills the 16 bytes
// (src-size 0), which is how out-of-range rows become zeros; `src` must still be a mapped address.
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

// D = A·B + D for one m16n8k16 tile, f32 accumulation. The tag picks the input type.
__device__ __forceinline__ void mma16816(BF16, float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma16816(F16, float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two f32 rounded (to nearest even) into one .b32 of two 16-bit values, `lo` in the low half. PTX's
// cvt.rn.{bf16x2,f16x2}.f32 d, a, b puts a in the upper half.
__device__ __forceinline__ u32 pack2(BF16, float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ u32 pack2(F16, float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// 2^x on the special-function unit (relative error about 2^-22; -inf gives +0).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// ---- TF32 (sm_80+): mma.sync m16n8k8 on tf32 operands and the 3xTF32 split. ----
//
// Fragment layouts of mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (PTX ISA, "Matrix fragments
// for mma.m16n8k8", .tf32), lane = 4·g + t; one tf32 (an f32 bit pattern, low 13 bits ignored) per
// .b32 register:
//   A (16×8, row-major, 4 regs): a0 = A[g][t]  a1 = A[g+8][t]  a2 = A[g][t+4]  a3 = A[g+8][t+4]
//   B (8×8, k×n, 2 regs):        b0 = B[t][g]  b1 = B[t+4][g]
//   C/D (16×8, f32, 4 regs):     as m16n8k16 above.

// x rounded to tf32 (10 fraction bits, to nearest, ties away from zero), as an f32 bit pattern with
// the low 13 bits zero.
__device__ __forceinline__ u32 to_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// The 3xTF32 split of CUTLASS's `OpMultiplyAddFastF32` ("3xTF32", CUTLASS docs): x = big + small + r
// with big = tf32(x), small = tf32(x - big) (x - big is exact in f32), |r| ≤ 2^-22·|x|.
__device__ __forceinline__ void tf32_split(float x, u32& big, u32& small) {
    big = to_tf32(x);
    small = to_tf32(x - __uint_as_float(big));
}

// D = A·B + D for one m16n8k8 tile, tf32 inputs, f32 accumulation.
__device__ __forceinline__ void mma1688_tf32(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
