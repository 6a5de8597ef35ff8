//! Storage -> compute dtype conversion: f32 -> bf16/f16 rounds to nearest even like torch's `.to()`
//! (checked against an independent reference, against `half`, and against values torch converted),
//! widening is exact, and the multi-core split gives the same bytes as one element at a time.

use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};
use wanrt::runtime::weights::{convert, StorageDType};
use wanrt::DType;

/// Bit-trick round-to-nearest-even, as in c10's `round_to_nearest_even` (NaN handled by the caller).
fn ref_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// Nearest f16 by search over all finite f16 values, ties to the even pattern; 65520 and up overflow.
fn ref_f16(x: f32) -> u16 {
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    let a = x.abs() as f64;
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    let val = |h: u16| f16::from_bits(h).to_f64();
    // Largest positive finite pattern whose value is <= a (patterns are ordered like their values).
    let (mut lo, mut hi) = (0u16, 0x7bffu16);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if val(mid) <= a { lo = mid } else { hi = mid - 1 }
    }
    if lo == 0x7bff || val(lo) == a {
        return sign | lo;
    }
    let (dlo, dhi) = (a - val(lo), val(lo + 1) - a);
    sign | if dlo < dhi || (dlo == dhi && lo % 2 == 0) { lo } else { lo + 1 }
}

fn run(src: &[u8], from: StorageDType, to: DType) -> Vec<u8> {
    let mut out = vec![0xAAu8; src.len() / from.size() * to.size()];
    convert(src, from, &mut out, to).unwrap();
    out
}

fn u16s(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Random bit patterns (every class: NaN, Inf, subnormal, normal) plus hand-picked edge cases.
fn f32_cases() -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut v: Vec<f32> = (0..200_000).map(|_| f32::from_bits(rng.random())).collect();
    // Values near 1, inside f16's range, and f32 subnormals, where rounding is exercised densely.
    v.extend((0..50_000).map(|_| f32::from_bits(0x3f80_0000 ^ rng.random_range(0..0x0001_0000u32))));
    v.extend((0..50_000).map(|_| rng.random_range(-70000.0f32..70000.0)));
    v.extend((0..20_000).map(|_| f32::from_bits(rng.random_range(0..0x0080_0000u32))));
    v.extend(TORCH_F32.iter().map(|t| f32::from_bits(t.0)));
    v.extend([f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001), f32::from_bits(0xffc0_1234), f32::MAX, f32::MIN, f32::MIN_POSITIVE]);
    v
}

#[test]
fn f32_to_bf16_rounds_to_nearest_even() {
    let xs = f32_cases();
    let src: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let got = u16s(&run(&src, StorageDType::F32, DType::BF16));
    for (&x, &g) in xs.iter().zip(&got) {
        if x.is_nan() {
            assert!(bf16::from_bits(g).is_nan(), "NaN {:#x} -> {g:#x}", x.to_bits());
            continue;
        }
        assert_eq!(g, ref_bf16(x), "{x:e} ({:#x})", x.to_bits());
        assert_eq!(g, bf16::from_f32(x).to_bits(), "half disagrees on {x:e}");
    }
}

#[test]
fn f32_to_f16_rounds_to_nearest_even() {
    let xs = f32_cases();
    let src: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let got = u16s(&run(&src, StorageDType::F32, DType::F16));
    for (&x, &g) in xs.iter().zip(&got) {
        if x.is_nan() {
            assert!(f16::from_bits(g).is_nan(), "NaN {:#x} -> {g:#x}", x.to_bits());
            continue;
        }
        assert_eq!(g, ref_f16(x), "{x:e} ({:#x})", x.to_bits());
        assert_eq!(g, f16::from_f32(x).to_bits(), "half disagrees on {x:e}");
    }
}

#[test]
fn matches_values_converted_by_torch() {
    let src: Vec<u8> = TORCH_F32.iter().flat_map(|t| t.0.to_le_bytes()).collect();
    assert_eq!(u16s(&run(&src, StorageDType::F32, DType::BF16)), TORCH_F32.iter().map(|t| t.1).collect::<Vec<_>>());
    assert_eq!(u16s(&run(&src, StorageDType::F32, DType::F16)), TORCH_F32.iter().map(|t| t.2).collect::<Vec<_>>());
    // f64 sources round through f32 first, as torch does (in rows 1, 3, 11, 12 and 13 a
    // single rounding from f64 would give a different result).
    let src: Vec<u8> = TORCH_F64.iter().flat_map(|t| t.0.to_le_bytes()).collect();
    assert_eq!(u32s(&run(&src, StorageDType::F64, DType::F32)), TORCH_F64.iter().map(|t| t.1).collect::<Vec<_>>());
    assert_eq!(u16s(&run(&src, StorageDType::F64, DType::BF16)), TORCH_F64.iter().map(|t| t.2).collect::<Vec<_>>());
    assert_eq!(u16s(&run(&src, StorageDType::F64, DType::F16)), TORCH_F64.iter().map(|t| t.3).collect::<Vec<_>>());
}

#[test]
fn half_precision_sources_over_all_bit_patterns() {
    let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let from_bf = u32s(&run(&src, StorageDType::BF16, DType::F32));
    let from_h = u32s(&run(&src, StorageDType::F16, DType::F32));
    let bf_to_h = u16s(&run(&src, StorageDType::BF16, DType::F16));
    let h_to_bf = u16s(&run(&src, StorageDType::F16, DType::BF16));
    for h in 0..=u16::MAX {
        let i = h as usize;
        let (b, f) = (bf16::from_bits(h), f16::from_bits(h));
        if b.is_nan() {
            assert!(f32::from_bits(from_bf[i]).is_nan() && f16::from_bits(bf_to_h[i]).is_nan(), "bf16 NaN {h:#x}");
        } else {
            assert_eq!(from_bf[i], (h as u32) << 16, "bf16 {h:#x} widens exactly");
            assert_eq!(bf_to_h[i], ref_f16(b.to_f32()), "bf16 {h:#x} -> f16");
        }
        if f.is_nan() {
            assert!(f32::from_bits(from_h[i]).is_nan() && bf16::from_bits(h_to_bf[i]).is_nan(), "f16 NaN {h:#x}");
        } else {
            assert_eq!(f32::from_bits(from_h[i]).to_bits(), (f.to_f64() as f32).to_bits(), "f16 {h:#x} widens exactly");
            assert_eq!(h_to_bf[i], ref_bf16(f.to_f32()), "f16 {h:#x} -> bf16");
        }
    }
}

#[test]
fn multi_core_split_equals_elementwise_on_unaligned_input() {
    // 3M+7 f32 values: several 4 MiB chunks, a ragged last one, and a source starting at an odd address.
    let n = 3 * 1024 * 1024 + 7;
    let mut rng = StdRng::seed_from_u64(42);
    let mut buf = vec![0u8; 1 + n * 4];
    rng.fill(&mut buf[..]);
    let src = &buf[1..];
    let xs: Vec<f32> = src.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let want_bf: Vec<u8> = xs.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect();
    let want_h: Vec<u8> = xs.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
    assert!(run(src, StorageDType::F32, DType::BF16) == want_bf, "bf16 differs");
    assert!(run(src, StorageDType::F32, DType::F16) == want_h, "f16 differs");
    assert!(run(src, StorageDType::F32, DType::F32) == src, "copy differs");
    let back = run(&want_bf, StorageDType::BF16, DType::F32);
    let want_back: Vec<u8> = want_bf.chunks_exact(2).flat_map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32().to_le_bytes()).collect();
    assert!(back == want_back, "bf16 -> f32 differs");
}

#[test]
fn unsupported_or_mismatched_conversions_are_errors() {
    let mut out = [0u8; 4];
    let e = convert(&[0u8; 8], StorageDType::I64, &mut out, DType::BF16).unwrap_err().to_string();
    assert!(e.contains("I64") && e.contains("bf16"), "{e}");
    assert!(convert(&[0u8; 1], StorageDType::Bool, &mut out[..2], DType::F16).is_err());
    let e = convert(&[0u8; 8], StorageDType::F32, &mut out[..2], DType::BF16).unwrap_err().to_string();
    assert!(e.contains("8 source bytes") && e.contains("2 destination bytes"), "{e}");
    convert(&[0u8; 8], StorageDType::F32, &mut out, DType::BF16).unwrap();
    assert!(convert(&[0u8; 6], StorageDType::F32, &mut out[..3], DType::BF16).is_err());
}

// Generated by torch 2.11 (CPU) from f32/f64 bit patterns: (source, torch .to(bfloat16), .to(float16));
// NaNs left out (torch's NaN bits depend on the code path). The generator is at the end of this file.
const TORCH_F32: [(u32, u16, u16); 80] = [
    (0x00000000, 0x0000, 0x0000),
    (0x80000000, 0x8000, 0x8000),
    (0x7f800000, 0x7f80, 0x7c00),
    (0xff800000, 0xff80, 0xfc00),
    (0x00000001, 0x0000, 0x0000),
    (0x80000001, 0x8000, 0x8000),
    (0x007fffff, 0x0080, 0x0000),
    (0x00400000, 0x0040, 0x0000),
    (0x00008000, 0x0000, 0x0000),
    (0x00018000, 0x0002, 0x0000),
    (0x00017fff, 0x0001, 0x0000),
    (0x00018001, 0x0002, 0x0000),
    (0x3f808000, 0x3f80, 0x3c04),
    (0x3f818000, 0x3f82, 0x3c0c),
    (0x3f807fff, 0x3f80, 0x3c04),
    (0x3f808001, 0x3f81, 0x3c04),
    (0x7f7fffff, 0x7f80, 0x7c00),
    (0xff7fffff, 0xff80, 0xfc00),
    (0x7f7f8000, 0x7f80, 0x7c00),
    (0x7f7f7fff, 0x7f7f, 0x7c00),
    (0x477ff000, 0x4780, 0x7c00),
    (0x477fefff, 0x4780, 0x7bff),
    (0x477fe000, 0x4780, 0x7bff),
    (0xc77ff000, 0xc780, 0xfc00),
    (0x33800000, 0x3380, 0x0001),
    (0x33000000, 0x3300, 0x0000),
    (0x33000001, 0x3300, 0x0001),
    (0x33400000, 0x3340, 0x0001),
    (0x387fc000, 0x3880, 0x03ff),
    (0x38800000, 0x3880, 0x0400),
    (0x387fe000, 0x3880, 0x0400),
    (0x38000000, 0x3800, 0x0200),
    (0x3f801000, 0x3f80, 0x3c00),
    (0x3f803000, 0x3f80, 0x3c02),
    (0x3f800fff, 0x3f80, 0x3c00),
    (0x3f802001, 0x3f80, 0x3c01),
    (0x40490fdb, 0x4049, 0x4248),
    (0xc0490fdb, 0xc049, 0xc248),
    (0x3eaaaaab, 0x3eab, 0x3555),
    (0x4b3504f3, 0x4b35, 0x7c00),
    (0x52e6b438, 0x52e7, 0x7c00),
    (0xf2a74de4, 0xf2a7, 0xfc00),
    (0x269e0d37, 0x269e, 0x0000),
    (0x6513270e, 0x6513, 0x7c00),
    (0xa6a3a450, 0xa6a4, 0x8000),
    (0x0c5c7fd0, 0x0c5c, 0x0000),
    (0x128b2f33, 0x128b, 0x0000),
    (0xd23f0824, 0xd23f, 0xfc00),
    (0x892f902b, 0x8930, 0x8000),
    (0x1818e811, 0x1819, 0x0000),
    (0x5d9dc9f8, 0x5d9e, 0x7c00),
    (0x9531985d, 0x9532, 0x8000),
    (0x0ed90475, 0x0ed9, 0x0000),
    (0xe8e25d94, 0xe8e2, 0xfc00),
    (0x81e74ef5, 0x81e7, 0x8000),
    (0x36f675cc, 0x36f6, 0x007b),
    (0x099950d8, 0x0999, 0x0000),
    (0x1600a35a, 0x1601, 0x0000),
    (0x6f03675a, 0x6f03, 0x7c00),
    (0x6b0d549b, 0x6b0d, 0x7c00),
    (0x11e20b8f, 0x11e2, 0x0000),
    (0x3d9c1724, 0x3d9c, 0x2ce1),
    (0x1738f7d9, 0x1739, 0x0000),
    (0x8d116ece, 0x8d11, 0x8000),
    (0x6cad4a26, 0x6cad, 0x7c00),
    (0x0f21ddb6, 0x0f22, 0x0000),
    (0xd3ac94af, 0xd3ad, 0xfc00),
    (0x90c192cf, 0x90c2, 0x8000),
    (0x1fb17c23, 0x1fb1, 0x0000),
    (0xf28c105d, 0xf28c, 0xfc00),
    (0x39263059, 0x3926, 0x0932),
    (0xa170b338, 0xa171, 0x8000),
    (0xa09f76b5, 0xa09f, 0x8000),
    (0x953f48f1, 0x953f, 0x8000),
    (0xf29d0da9, 0xf29d, 0xfc00),
    (0x0fd630f1, 0x0fd6, 0x0000),
    (0x93bd04cf, 0x93bd, 0x8000),
    (0x95e60af5, 0x95e6, 0x8000),
    (0x658cda14, 0x658d, 0x7c00),
    (0x0cb1e29c, 0x0cb2, 0x0000),
];
// f64 rows: (source, .to(float32), .to(bfloat16), .to(float16)).
const TORCH_F64: [(u64, u32, u16, u16); 13] = [
    (0x3ff0100000400000, 0x3f808000, 0x3f80, 0x3c04),
    (0x3ff00ffffffff000, 0x3f808000, 0x3f80, 0x3c04),
    (0x3ff0020000001000, 0x3f801000, 0x3f80, 0x3c00),
    (0x3ff001fffffff000, 0x3f801000, 0x3f80, 0x3c00),
    (0x3ff0000010000000, 0x3f800000, 0x3f80, 0x3c00),
    (0x400921fb54442d18, 0x40490fdb, 0x4049, 0x4248),
    (0xc005bf0a8b145769, 0xc02df854, 0xc02e, 0xc170),
    (0x37a16c262777579c, 0x000116c2, 0x0001, 0x0000),
    (0x7e37e43c8800759c, 0x7f800000, 0x7f80, 0x7c00),
    (0xfe37e43c8800759c, 0xff800000, 0xff80, 0xfc00),
    (0x40effdfffffffaa2, 0x477ff000, 0x4780, 0x7c00),
    (0x3ff0100000020000, 0x3f808000, 0x3f80, 0x3c04),
    (0x3e60000000020000, 0x33000000, 0x3300, 0x0000),
];

/* Generator (run with the fixture venv's python, output pasted above):
# f32 / f64 values whose rounding to bf16/f16 is delicate, converted by torch (CPU) .to()
import torch, struct, random
random.seed(7)
def f32(bits): return struct.unpack('<f', struct.pack('<I', bits))[0]
b32 = [
 0x00000000, 0x80000000, 0x7f800000, 0xff800000,      # zeros, infinities
 0x00000001, 0x80000001, 0x007fffff, 0x00400000,      # f32 subnormals
 0x00008000, 0x00018000, 0x00017fff, 0x00018001,      # subnormal ties for bf16
 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001,      # normal ties / near-ties for bf16
 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff,      # bf16 overflow to inf at the top
 0x477ff000, 0x477fefff, 0x477fe000, 0xc77ff000,      # f16: 65520 -> inf, below stays 65504
 0x33800000, 0x33000000, 0x33000001, 0x33400000,      # f16: smallest subnormal 2^-24, half of it (tie -> 0), just above
 0x387fc000, 0x38800000, 0x387fe000, 0x38000000,      # f16 subnormal/normal boundary, ties
 0x3f801000, 0x3f803000, 0x3f800fff, 0x3f802001,      # f16 ties at 1.0
 0x40490fdb, 0xc0490fdb, 0x3eaaaaab, 0x4b3504f3,
]
b32 += [random.getrandbits(32) for _ in range(40)]
vals = torch.tensor(b32, dtype=torch.int64).to(torch.int32).view(torch.float32)
keep = ~torch.isnan(vals)
vals = vals[keep]
bf = vals.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xffff
hf = vals.to(torch.float16).view(torch.int16).to(torch.int64) & 0xffff
src = (vals.view(torch.int32).to(torch.int64) & 0xffffffff)
print("const TORCH_F32: [(u32, u16, u16); %d] = [" % len(src))
for s, b, h in zip(src.tolist(), bf.tolist(), hf.tolist()):
    print("    (0x%08x, 0x%04x, 0x%04x)," % (s, b, h))
print("];")
# f64: values between f32 neighbours, where rounding via f32 first differs from rounding once
d = [1.0 + 2**-8 + 2**-30, 1.0 + 2**-8 - 2**-40, 1.0 + 2**-11 + 2**-40, 1.0 + 2**-11 - 2**-40,
     1.0 + 2**-24 + 2**-60, 3.141592653589793, -2.718281828459045, 1e-40, 1e300, -1e300, 65519.99999999,
     1.00390625 + 2**-35, 2**-25 + 2**-60]
dv = torch.tensor(d, dtype=torch.float64)
f = dv.to(torch.float32).view(torch.int32).to(torch.int64) & 0xffffffff
bf = dv.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xffff
hf = dv.to(torch.float16).view(torch.int16).to(torch.int64) & 0xffff
bits = [struct.unpack('<Q', struct.pack('<d', x))[0] for x in d]
print("const TORCH_F64: [(u64, u32, u16, u16); %d] = [" % len(d))
for s, a, b, h in zip(bits, f.tolist(), bf.tolist(), hf.tolist()):
    print("    (0x%016x, 0x%08x, 0x%04x, 0x%04x)," % (s, a, b, h))
print("];")
print("// torch", torch.__version__)
*/
