"""CPU model of kernels/conv3d_tf32.cu's accumulation: 3xTF32 dot products summed inside mma.sync
versus flushed into an f32 accumulator with ordinary (round-to-nearest) adds. No GPU needed.

    python tools/tf32_accumulation.py [--outputs 4096] [--k 2592 --k 10368] [--seed 0]

(numpy only; the default run takes a few minutes on one core.)

Prints, per K, activation distribution and accumulation scheme, the relative RMS error of N dot
products of length K against float64 (sqrt(mean(err^2)) / sqrt(mean(ref^2))) and the mean signed
error along the reference (mean(err·sign(ref)) / rms(ref): negative = results pulled toward zero).
Data: activations N(0, 1) or SiLU(N(0, 1)) (the VAE's convs read normalised, SiLU'd activations),
weights N(0, 1/K), all rounded to f32 first (the kernel's inputs).

Tensor-core model (one mma.sync m16n8k8 .f32.tf32.tf32.f32, per output element): the products of
tf32 operands are exact; the products of one block-FMA group and the accumulator c are aligned to the
largest exponent among them, each truncated (toward zero) to 23 + NEAB fraction bits there, summed
exactly, and the sum is truncated (RZ) to f32. H100: one group of 8 products + c, NEAB = 2; A100: two
groups of 4, NEAB = 1. These are the features measured by Fasi, Higham, Mikaitis and Pranesh,
"Numerical behavior of NVIDIA tensor cores" (PeerJ CS 7:e330, 2021) and Khattak and Mikaitis,
"Accurate models of NVIDIA tensor cores" (arXiv:2512.07004, models in
github.com/north-numerical-computing/MATLAB-tensor-core); simplified here: the extra carry bit for
product significands >= 2 and subnormals are not modelled (neither matters at these magnitudes).

Schemes (each 3xTF32 k8 step is three MMAs: small_a·big_b, big_a·small_b, big_a·big_b):
  fma            sequential f32 fused multiply-adds (the portable kernel, kernels/conv3d.cu)
  mma            every MMA of the K loop into one accumulator (the kernel before flushing)
  flushG         the MMAs of G k8 steps into a zero partial, small products of every step first, then
                 the big ones; the partial added to the f32 accumulator (the kernel: G = 1 or 2)
  flush2-interleaved   as flush2, each step's small, small, big in turn
  flush2-bigfirst      as flush2, big·big products first
  flush2-split   big·big and the small products in partials of their own, both added per group
  mma-rn         the single accumulator with a hypothetical round-to-nearest tensor core (the cause check)
"""

from __future__ import annotations

import argparse

import numpy as np

MODELS = {"H100": (8, 2), "A100": (4, 1)}  # products per block-FMA group, extra alignment bits


def tf32_rna(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32: round to 11 significant bits, ties away from zero (float64 in and out)."""
    m, e = np.frexp(x)
    s = np.ldexp(m, 11)
    return np.ldexp(np.sign(s) * np.floor(np.abs(s) + 0.5), e - 11)


def split(x32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x32.astype(np.float64)
    big = tf32_rna(x)
    return big, tf32_rna(x - big)  # x - big is exact in f32


def trunc_to(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.trunc(x / q) * q


def rz_f32(s: np.ndarray) -> np.ndarray:
    """Truncate to a 24-bit significand (round toward zero); exact in float64."""
    _, e = np.frexp(s)
    return trunc_to(s, np.ldexp(1.0, e - 24))


def block_fma(c: np.ndarray, prods: np.ndarray, neab: int, rn: bool) -> np.ndarray:
    """c + sum(prods, axis=1) as one tensor-core group: align to the largest exponent, truncate, RZ."""
    big = np.maximum(np.abs(c), np.abs(prods).max(axis=1))
    _, e = np.frexp(big)  # big in [2^(e-1), 2^e)
    q = np.ldexp(1.0, e - 1 - 23 - neab)[:, None]
    q = np.where(big[:, None] > 0, q, 1.0)
    s = trunc_to(c[:, None], q)[:, 0] + trunc_to(prods, q).sum(axis=1)
    if rn:
        return s.astype(np.float32).astype(np.float64)
    return rz_f32(s)


def mma(c: np.ndarray, a: np.ndarray, b: np.ndarray, model: str, rn: bool = False) -> np.ndarray:
    fma, neab = MODELS[model]
    p = a * b  # tf32 × tf32: exact in float64
    for g in range(0, 8, fma):
        c = block_fma(c, p[:, g : g + fma], neab, rn)
    return c


def f32_add(acc: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (acc.astype(np.float32) + v.astype(np.float32)).astype(np.float64)


def run(scheme: str, x: np.ndarray, w: np.ndarray, model: str) -> np.ndarray:
    n, k = x.shape
    if scheme == "fma":
        acc = np.zeros(n, np.float32)
        for i in range(k):
            # f32 FMA: the exact product plus acc, rounded once (the float64 sum is exact here up to
            # a double rounding too rare to matter).
            acc = (acc.astype(np.float64) + x[:, i].astype(np.float64) * w[:, i].astype(np.float64)).astype(np.float32)
        return acc.astype(np.float64)
    xb, xs = split(x)
    wb, ws = split(w)
    steps = [(xb[:, k0 : k0 + 8], xs[:, k0 : k0 + 8], wb[:, k0 : k0 + 8], ws[:, k0 : k0 + 8]) for k0 in range(0, k, 8)]
    acc = np.zeros(n)
    if scheme in ("mma", "mma-rn"):
        for ab, as_, bb, bs in steps:
            for a, b in ((as_, bb), (ab, bs), (ab, bb)):
                acc = mma(acc, a, b, model, scheme == "mma-rn")
        return acc
    group = int(scheme[5])
    for g0 in range(0, len(steps), group):
        grp = steps[g0 : g0 + group]
        small = [p for ab, as_, bb, bs in grp for p in ((as_, bb), (ab, bs))]
        big = [(ab, bb) for ab, as_, bb, bs in grp]
        if scheme.endswith("split"):
            part_small = np.zeros(n)
            for a, b in small:
                part_small = mma(part_small, a, b, model)
            part_big = np.zeros(n)
            for a, b in big:
                part_big = mma(part_big, a, b, model)
            acc = f32_add(f32_add(acc, part_small), part_big)
            continue
        if scheme.endswith("bigfirst"):
            order = big + small
        elif scheme.endswith("interleaved"):
            order = [p for ab, as_, bb, bs in grp for p in ((as_, bb), (ab, bs), (ab, bb))]
        else:
            order = small + big  # the kernel's order
        part = np.zeros(n)
        for a, b in order:
            part = mma(part, a, b, model)
        acc = f32_add(acc, part)
    return acc


SCHEMES = ["fma", "mma", "flush1", "flush2", "flush4", "flush2-interleaved", "flush2-bigfirst", "flush2-split", "mma-rn"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outputs", type=int, default=4096, help="dot products per case")
    ap.add_argument("--k", type=int, action="append", help="reduction lengths (default 2592 and 10368)")
    ap.add_argument("--model", choices=sorted(MODELS), action="append", help="tensor-core models (default both)")
    ap.add_argument("--scheme", choices=SCHEMES, action="append", help="schemes (default all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'K':>6} {'model':>5} {'act':>5} {'scheme':>18} {'rel RMS':>10} {'signed':>10}")
    for k in args.k or [2592, 10368]:
        for act in ("normal", "silu"):
            x = rng.standard_normal((args.outputs, k))
            if act == "silu":
                x = x / (1.0 + np.exp(-x))
            x = x.astype(np.float32)
            w = (rng.standard_normal((args.outputs, k)) / np.sqrt(k)).astype(np.float32)
            ref = (x.astype(np.float64) * w.astype(np.float64)).sum(axis=1)
            rms = np.sqrt(np.mean(ref**2))
            for model in args.model or sorted(MODELS, reverse=True):
                for scheme in args.scheme or SCHEMES:
                    if scheme == "fma" and model != (args.model or sorted(MODELS, reverse=True))[0]:
                        continue  # no tensor cores: the same for every model
                    err = run(scheme, x, w, model) - ref
                    rel = np.sqrt(np.mean(err**2)) / rms
                    signed = np.mean(err * np.sign(ref)) / rms
                    name = "-" if scheme == "fma" else model
                    print(f"{k:>6} {name:>5} {act:>5} {scheme:>18} {rel:10.3e} {signed:10.3e}", flush=True)


if __name__ == "__main__":
    main()
