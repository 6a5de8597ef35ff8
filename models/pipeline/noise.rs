//! Seeded initial noise that reproduces `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed),
//! dtype=torch.float32)`, which is how diffusers' `randn_tensor` draws the Wan latents on a CPU generator.
//!
//! PyTorch's CPU generator (`aten/src/ATen/CPUGeneratorImpl.cpp`) is an mt19937
//! (`aten/src/ATen/core/MT19937RNGEngine.h`) seeded with the low 32 bits of the seed; `random()` is one
//! 32-bit output, `random64()` two (the first the high half). `torch.randn` on f32 takes one of two paths
//! (`aten/src/ATen/native/cpu/DistributionTemplates.h`, `normal_kernel`):
//! - fewer than 16 elements (or not contiguous): one `normal_distribution<double>` per element: two
//!   53-bit uniforms, Box-Muller in double, the sine half cached on the generator for the next draw;
//! - 16 or more: `normal_fill`: a 24-bit uniform per element for the whole tensor first, then Box-Muller
//!   in f32 over each 16-element chunk (lanes j and j+8 pair up); a tail that is not a multiple of 16 is
//!   redone over the last 16 elements with 16 fresh uniforms.
//!
//! The f32 Box-Muller here is `normal_fill_16_AVX2`, with the `avx_mathfun.h` polynomials for log,
//! sine and cosine (`super::avx_mathfun`): what torch runs on x86-64 CPUs with AVX2 or AVX-512 (the
//! fixtures were drawn under AVX-512 dispatch and match bit for bit). Under torch's DEFAULT dispatch (no
//! AVX2) and on ARM, `normal_fill_16` calls libm instead, and some values differ in their last bits.

use super::avx_mathfun::{log_ps, sincos_ps};

/// mt19937 as PyTorch runs it (`at::mt19937`): the standard 32-bit Mersenne Twister.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; 624],
    next: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Mt19937 {
        // `init_with_uint32`: only the low 32 bits of the seed are used.
        let mut state = [0u32; 624];
        state[0] = seed as u32;
        for j in 1..624 {
            state[j] = 1_812_433_253u32.wrapping_mul(state[j - 1] ^ (state[j - 1] >> 30)).wrapping_add(j as u32);
        }
        Mt19937 { state, next: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for k in 0..624 {
            let y = (self.state[k] & UPPER) | (self.state[(k + 1) % 624] & LOWER);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[k] = self.state[(k + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= 624 {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// A seeded CPU generator with torch's state: the engine and the cached second normal of the scalar
/// path, so successive [`TorchGenerator::randn`] calls continue the stream as torch's do.
#[derive(Clone)]
pub struct TorchGenerator {
    engine: Mt19937,
    next_double_normal: Option<f64>,
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`.
    pub fn new(seed: u64) -> TorchGenerator {
        TorchGenerator { engine: Mt19937::new(seed), next_double_normal: None }
    }

    /// `CPUGeneratorImpl::random`.
    pub fn random(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// `CPUGeneratorImpl::random64`: the first output is the high half.
    pub fn random64(&mut self) -> u64 {
        let hi = self.random() as u64;
        let lo = self.random() as u64;
        (hi << 32) | lo
    }

    /// `uniform_real_distribution<float>(0, 1)`: the low 24 bits of one output times 2^-24.
    fn uniform_f32(&mut self) -> f32 {
        (self.random() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `uniform_real_distribution<double>(0, 1)`: the low 53 bits of a 64-bit draw times 2^-53.
    fn uniform_f64(&mut self) -> f64 {
        (self.random64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `normal_distribution<double>(0, 1)` (`aten/src/ATen/core/DistributionsHelper.h`): the cached
    /// sine half if there is one, else a new Box-Muller pair whose sine half is cached.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.next_double_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `torch.randn(shape, generator=self, dtype=torch.float32)`, contiguous, in row-major order.
    pub fn randn(&mut self, shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product();
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for chunk in data.chunks_exact_mut(16) {
            fill_16(chunk);
        }
        if n % 16 != 0 {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            fill_16(tail);
        }
        data
    }
}

/// `normal_fill_16_AVX2` with mean 0 and std 1: lane j (cosine) and j+8 (sine) share one pair.
fn fill_16(d: &mut [f32]) {
    // `_mm256_set1_ps(2.0f * c10::pi<double>)`: 2*pi rounded to float once.
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let radius = (-2.0f32 * log_ps(1.0 - d[j])).sqrt();
        let (sin, cos) = sincos_ps(two_pi * d[j + 8]);
        // `_mm256_fmadd_ps(n, std, mean)` with std 1 and mean 0: n, but -0 becomes +0.
        d[j] = (radius * cos).mul_add(1.0, 0.0);
        d[j + 8] = (radius * sin).mul_add(1.0, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // The C++ standard fixes std::mt19937's 10000th output for the default seed 5489.
        let mut g = Mt19937::new(5489);
        let v = (0..10_000).map(|_| g.next_u32()).last().unwrap();
        assert_eq!(v, 4_123_659_995);
    }

    #[test]
    fn seeds_use_their_low_32_bits() {
        let (mut a, mut b) = (TorchGenerator::new(5), TorchGenerator::new((1u64 << 32) + 5));
        assert_eq!(a.randn(&[40]), b.randn(&[40]));
    }

    #[test]
    fn the_scalar_path_caches_its_second_value() {
        let mut a = TorchGenerator::new(3);
        let two = a.randn(&[2]);
        let mut b = TorchGenerator::new(3);
        let (x, y) = (b.randn(&[1]), b.randn(&[1]));
        assert_eq!(two, vec![x[0], y[0]]);
    }
}
