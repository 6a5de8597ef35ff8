// Hopper (sm_90a) building blocks: mbarriers, the bulk tensor copy engine (TMA), named barriers,
// setmaxnreg and wgmma, as inline PTX (NVRTC alone, no toolkit headers). Everything here is defined
// only when compiling for the arch-specific target sm_90a (WANRT_SM90A); a file including it must keep
// its uses behind the same guard so the sm_80/86/89 compiles see none of it.
//
// Shared-memory operand layout used with wgmma (the 128-byte swizzle, what TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B): a tile of R rows × 64 16-bit columns is R rows of 128 bytes, row r at
// byte r·128, and the 16-byte chunk c (columns 8c..8c+7) of row r stored at chunk position c ^ (r % 8).
// The pattern is a function of the shared address bits (bits 4-6 XOR bits 7-9), so every such tile must
// start 1024-byte aligned. Wider rows (d = 128) are stored as consecutive 64-column blocks.
//
// Matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0-13 start address >> 4, bits 16-29
// leading-dimension byte offset (LBO) >> 4, bits 32-45 stride-dimension byte offset (SBO) >> 4, bits
// 49-51 base offset (0: tiles 1024-aligned), bits 62-63 swizzle (1 = 128-byte). For the 128-byte swizzle:
//   K-major operand (rows along M/N, 16-bit K contiguous): SBO = 1024 (from one 8-row group to the
//     next); LBO unused (the 16-element K step lies inside one 128-byte row). The k-th K step of 16
//     elements inside a 64-column block starts 32·k bytes further (the hardware applies the XOR to the
//     final address, so advancing the start address stays consistent with the swizzle).
//   MN-major operand (rows along K, M/N contiguous; used transposed, imm-trans = 1): LBO = byte distance
//     between consecutive 64-element blocks along M/N, SBO = 1024 (from one 8-row K group to the next).
//
// Register fragments of wgmma.m64nNk16 (PTX ISA, "Register Fragments"), for thread t of the warpgroup:
// warp w = t / 32 owns rows 16w..16w+15; within the warp, lane = 4g + q (g = lane / 4, q = lane % 4):
//   accumulator (f32, N/2 registers): d[4c + 0] = D[16w + g][8c + 2q], d[4c + 1] = D[16w + g][8c + 2q + 1],
//     d[4c + 2] = D[16w + g + 8][8c + 2q], d[4c + 3] = D[16w + g + 8][8c + 2q + 1], c = 0..N/8-1;
//   A from registers (16-bit, 4 × .b32, low half = lower column): a0 = A[16w+g][2q..2q+1],
//     a1 = A[16w+g+8][2q..2q+1], a2 = A[16w+g][2q+8..2q+9], a3 = A[16w+g+8][2q+8..2q+9]
// (the mma.sync m16n8k16 layouts, per warp). So the accumulator of S = Q·Kᵀ over key columns 16k..16k+15
// (chunks c = 2k, 2k+1), rounded pairwise to 16 bits, is the A fragment of the k-th K step of P·V.
#pragma once
#include "mma.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WANRT_SM90A 1
#endif

// A CUtensorMap (CUDA 13 declares it 128-byte aligned; the hardware needs 64), opaque to the kernel.
// Defined for every target so parameter structs holding one have the same layout everywhere.
struct __align__(128) TensorMap {
    u64 opaque[16];
};

#ifdef WANRT_SM90A

// ---- mbarrier (shared-memory transaction barrier) ----

__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initializations visible to the other threads and to the async proxy (TMA's complete_tx).
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// One arrival that also announces `bytes` of TMA transactions for the current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase of parity `parity` has completed (acquire). A freshly initialized barrier is in
// phase 0, and waiting on parity 1 returns at once ("the phase before" counts as complete).
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
    u32 done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// ---- bulk tensor copy (TMA) ----

__device__ __forceinline__ void tma_prefetch_map(const TensorMap* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((u64)map) : "memory");
}
// Copies the box at coordinates (c0..c3) (c0 innermost) of a 4-d tensor map into shared memory at
// `dst`, completing `bytes of the box` transactions on `bar`. Out-of-range elements are zero-filled.
__device__ __forceinline__ void tma_load_4d(u32 dst, const TensorMap* map, u32 bar, int c0, int c1, int c2, int c3) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
        "[%2];\n" ::"r"(dst),
        "l"((u64)map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
}

// ---- named barriers and register reallocation ----

// bar.sync / bar.arrive on barrier `id` (1..15; 0 is __syncthreads) expecting `count` threads.
__device__ __forceinline__ void named_sync(u32 id, u32 count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void named_arrive(u32 id, u32 count) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
// Per-warpgroup register budget (all 128 threads execute it). Needs a register cap at kernel entry
// (__launch_bounds__(threads, 1)).
template <u32 N>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <u32 N>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

// ---- wgmma ----

// Orders earlier register (and shared-memory) writes before the next wgmma reads them.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N committed wgmma groups of this warpgroup are still pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins the values of registers an asynchronous wgmma writes: the compiler may not move their reads above
// (or writes below) this point, which sits right after the wgmma_wait that completes them.
template <int R>
__device__ __forceinline__ void fence_regs(float (&r)[R]) {
#pragma unroll
    for (int i = 0; i < R; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// Descriptor of a 128-byte-swizzled operand starting at shared address `addr` (see the header comment).
__device__ __forceinline__ u64 desc_sw128(u32 addr, u32 lbo_bytes, u32 sbo_bytes) {
    return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)((lbo_bytes >> 4) & 0x3FFFu) << 16) |
           ((u64)((sbo_bytes >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

// The same for the 64-byte swizzle (rows of 32 16-bit columns, 16-byte chunk c of row r at c ^ ((r / 2) % 4),
// tiles 512-byte aligned, SBO = 512 for K-major).
__device__ __forceinline__ u64 desc_sw64(u32 addr, u32 lbo_bytes, u32 sbo_bytes) {
    return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)((lbo_bytes >> 4) & 0x3FFFu) << 16) |
           ((u64)((sbo_bytes >> 4) & 0x3FFFu) << 32) | (2ull << 62);
}

// Descriptor of an unswizzled K-major operand (core matrices of 8 rows × 16 bytes, rows 16 bytes apart):
// `sbo_bytes` from one 8-row group to the next along M/N, `lbo_bytes` from one 16-byte K chunk to the
// next (PTX ISA canonical layout ((8,m),(T,2k)):((1T,SBO),(1,LBO))). Needs 16-byte alignment only, so
// the start may move by single rows (kernels/conv3d_wgmma_rows.cu).
__device__ __forceinline__ u64 desc_interleave(u32 addr, u32 lbo_bytes, u32 sbo_bytes) {
    return (u64)((addr & 0x3FFFFu) >> 4) | ((u64)((lbo_bytes >> 4) & 0x3FFFu) << 16) |
           ((u64)((sbo_bytes >> 4) & 0x3FFFu) << 32);
}

// D (+)= A·B, m64nNk16, f32 accumulators, `acc == 0` overwrites D. The operand lists are mechanical:
// %0..%(N/2-1) are the accumulators, then the A operand, the B descriptor and the accumulate flag.
#define WG_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define WG_D64 WG_D8(0), WG_D8(8), WG_D8(16), WG_D8(24), WG_D8(32), WG_D8(40), WG_D8(48), WG_D8(56)
#define WG_D88 WG_D64, WG_D8(64), WG_D8(72), WG_D8(80)
#define WG_L64                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define WG_L88                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "   \
    "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87}"

#define WG_D48 WG_D8(0), WG_D8(8), WG_D8(16), WG_D8(24), WG_D8(32), WG_D8(40)
#define WG_D96 WG_D88, WG_D8(88)
#define WG_L48                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47}"
#define WG_L96                                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "   \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "   \
    "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "   \
    "%90, %91, %92, %93, %94, %95}"

// A and B both K-major from shared memory: N = 128 and 176 (S = Q·Kᵀ), 96 and 192 (the conv's N tiles), 8
// (the row conv's tile for 3-channel outputs).
#define WGMMA_SS(TAG, DT)                                                                                        \
    __device__ __forceinline__ void wgmma_ss(TAG, float (&d)[64], u64 a, u64 b, u32 acc) {                       \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." DT "." DT " " WG_L64 ", %64, %65, p, 1, 1, 0, 0;\n}\n" \
                     : WG_D64                                                                                    \
                     : "l"(a), "l"(b), "r"(acc));                                                                \
    }                                                                                                            \
    __device__ __forceinline__ void wgmma_ss(TAG, float (&d)[88], u64 a, u64 b, u32 acc) {                       \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"                                                \
                     "wgmma.mma_async.sync.aligned.m64n176k16.f32." DT "." DT " " WG_L88 ", %88, %89, p, 1, 1, 0, 0;\n}\n" \
                     : WG_D88                                                                                    \
                     : "l"(a), "l"(b), "r"(acc));                                                                \
    }                                                                                                            \
    __device__ __forceinline__ void wgmma_ss(TAG, float (&d)[4], u64 a, u64 b, u32 acc) {                        \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"                                                 \
                     "wgmma.mma_async.sync.aligned.m64n8k16.f32." DT "." DT " {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n" \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                            \
                     : "l"(a), "l"(b), "r"(acc));                                                                \
    }                                                                                                            \
    __device__ __forceinline__ void wgmma_ss(TAG, float (&d)[48], u64 a, u64 b, u32 acc) {                       \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"                                                \
                     "wgmma.mma_async.sync.aligned.m64n96k16.f32." DT "." DT " " WG_L48 ", %48, %49, p, 1, 1, 0, 0;\n}\n" \
                     : WG_D48                                                                                    \
                     : "l"(a), "l"(b), "r"(acc));                                                                \
    }                                                                                                            \
    __device__ __forceinline__ void wgmma_ss(TAG, float (&d)[96], u64 a, u64 b, u32 acc) {                       \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"                                                \
                     "wgmma.mma_async.sync.aligned.m64n192k16.f32." DT "." DT " " WG_L96 ", %96, %97, p, 1, 1, 0, 0;\n}\n" \
                     : WG_D96                                                                                    \
                     : "l"(a), "l"(b), "r"(acc));                                                                \
    }
// A from registers, B MN-major from shared memory used transposed (O += P·V with V stored [key][d]): N = 128.
#define WGMMA_RS(TAG, DT)                                                                                       \
    __device__ __forceinline__ void wgmma_rs_tb(TAG, float (&d)[64], const u32 (&a)[4], u64 b, u32 acc) {      \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                               \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." DT "." DT " " WG_L64                       \
                     ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                            \
                     : WG_D64                                                                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));                          \
    }
WGMMA_SS(BF16, "bf16")
WGMMA_SS(F16, "f16")
WGMMA_RS(BF16, "bf16")
WGMMA_RS(F16, "f16")

#endif  // WANRT_SM90A

// ---- tf32 wgmma (kernels/conv3d_wgmma_tf32_rows.cu) ----
//
// wgmma.mma_async.sync.aligned.m64nNk8.f32.tf32.tf32 (PTX ISA, "Asynchronous Warpgroup Level Matrix
// Multiply-Accumulate", .tf32): K = 8 per instruction, both operands K-major (no transpose operands),
// one tf32 per 32-bit element (the low 13 bits of an f32 pattern are ignored). A K step of 8 tf32 is
// 32 bytes, as one of 16 bf16, so a K-major shared tile advances its descriptor by 32 bytes per step
// with every swizzle mode. A from registers (CUTLASS `GMMA::ALayout_64x8`, the mma.sync m16n8k8 .tf32 A
// layout per warp): for thread (warp w, lane 4g + t), a0 = A[16w + g][t], a1 = A[16w + g + 8][t],
// a2 = A[16w + g][t + 4], a3 = A[16w + g + 8][t + 4]. Accumulators as m64nNk16 (header above).
// `acc == 0` overwrites D.
#ifdef WANRT_SM90A
__device__ __forceinline__ void wgmma_rs_tf32(float (&d)[48], const u32 (&a)[4], u64 b, u32 acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %53, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k8.f32.tf32.tf32 " WG_L48 ", {%48, %49, %50, %51}, %52, p, 1, 1;\n}\n"
                 : WG_D48
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
}
__device__ __forceinline__ void wgmma_rs_tf32(float (&d)[96], const u32 (&a)[4], u64 b, u32 acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %101, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n192k8.f32.tf32.tf32 " WG_L96 ", {%96, %97, %98, %99}, %100, p, 1, 1;\n}\n"
                 : WG_D96
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc));
}
// Both operands from shared memory (descriptors), N = 96 and 192.
__device__ __forceinline__ void wgmma_ss_tf32(float (&d)[48], u64 a, u64 b, u32 acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k8.f32.tf32.tf32 " WG_L48 ", %48, %49, p, 1, 1;\n}\n"
                 : WG_D48
                 : "l"(a), "l"(b), "r"(acc));
}
__device__ __forceinline__ void wgmma_ss_tf32(float (&d)[96], u64 a, u64 b, u32 acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n192k8.f32.tf32.tf32 " WG_L96 ", %96, %97, p, 1, 1;\n}\n"
                 : WG_D96
                 : "l"(a), "l"(b), "r"(acc));
}
#endif  // WANRT_SM90A
