//! Patchify / unpatchify between video volumes and token rows (Wan's patch embedding and output head).

use crate::gpu::kernels::{Kernel, Ptr, PATCHIFY, UNPATCHIFY};
use crate::gpu::params::PatchDims;
use crate::gpu::LaunchConfig;
use crate::DType;
use crate::{Error, Result, Tensor};

use super::range;

fn dims(op: &'static str, vol: &[usize], patch: [usize; 3]) -> Result<PatchDims> {
    let [pt, ph, pw] = patch;
    if vol.len() != 5 || pt == 0 || ph == 0 || pw == 0 || vol[2] % pt != 0 || vol[3] % ph != 0 || vol[4] % pw != 0 {
        return Err(Error::Shape { op, name: "volume".into(), expected: format!("[B, C, T, H, W] divisible by patch {patch:?}"), got: vol.to_vec() });
    }
    let d = |i: usize| vol[i] as u64;
    Ok(PatchDims { batch: d(0), channels: d(1), frames: d(2), height: d(3), width: d(4), pt: pt as u64, ph: ph as u64, pw: pw as u64 })
}

fn tokens_shape(vol: &[usize], patch: [usize; 3]) -> Vec<usize> {
    let n = (vol[2] / patch[0]) * (vol[3] / patch[1]) * (vol[4] / patch[2]);
    vec![vol[0], n, vol[1] * patch.iter().product::<usize>()]
}

/// `volume [B, C, T, H, W]` → `tokens [B, N, C·pt·ph·pw]`, features in Conv3d-weight order (c, kt, kh, kw).
pub fn patchify(volume: &Tensor, patch: [usize; 3], tokens: &Tensor) -> Result<()> {
    const OP: &str = "patchify";
    let _r = range(OP);
    let d = dims(OP, volume.shape(), patch)?;
    tokens.expect(OP, "tokens", volume.dtype(), &tokens_shape(volume.shape(), patch))?;
    launch("patchify", &PATCHIFY, volume, tokens, d)
}

/// `tokens [B, N, pt·ph·pw·C]` (patch position slowest, channel fastest) → `volume [B, C, T, H, W]`.
pub fn unpatchify(tokens: &Tensor, patch: [usize; 3], volume: &Tensor) -> Result<()> {
    const OP: &str = "unpatchify";
    let _r = range(OP);
    let d = dims(OP, volume.shape(), patch)?;
    tokens.expect(OP, "tokens", volume.dtype(), &tokens_shape(volume.shape(), patch))?;
    launch("unpatchify", &UNPATCHIFY, tokens, volume, d)
}

fn launch(
    kernel: &'static str,
    k: &Kernel<DType, (Ptr, Ptr, PatchDims)>,
    input: &Tensor,
    out: &Tensor,
    d: PatchDims,
) -> Result<()> {
    input.expect_contiguous(kernel, "input")?;
    out.expect_contiguous(kernel, "output")?;
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = input.device();
    k.launch(dev, input.dtype(), LaunchConfig::elementwise(n, 256), (input, out, d))
}
