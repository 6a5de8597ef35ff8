//! The parameter block of the tensor-core conv kernels (`ConvParams` in kernels/conv3d_mma.cu, and the
//! same struct in conv3d_wgmma.cu and conv3d_tf32.cu): the block their launchers fill (tensors by
//! reference) and the `#[repr(C)]` image the kernels read. Kept
//! apart from params.rs so that the conv kernels' blocks merge without touching the others.

use bytemuck::{Pod, Zeroable};

use super::device::Device;
use super::kernels::{address, Param};
use super::launch::KernelArgs;
use crate::{Result, Tensor};

/// Sizes are the launcher's checked values (each fits an i32).
pub(crate) struct ConvMma<'a> {
    pub x: &'a Tensor,
    pub prev: Option<&'a Tensor>,
    pub w: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
    pub out: &'a Tensor,
    /// T, P, H, W, Cin.
    pub input: [i32; 5],
    /// To, Ho, Wo, Cout.
    pub output: [i32; 4],
    /// kt, kh, kw.
    pub kernel: [i32; 3],
    /// Strides over t, h, w.
    pub stride: [i32; 3],
    /// Zero frames in front, padding rows on top, padding columns on the left.
    pub pad: [i32; 3],
    pub m: i32,
    pub cin_blocks: i32,
    pub ktiles: i32,
    pub n_tiles: i32,
    pub vec_out: i32,
    /// Channels per reduction piece (conv3d_wgmma.cu; 0 for the other kernels).
    pub piece: i32,
    /// conv3d_wgmma_rows.cu's fused WanRMS_norm: gamma [Cout] (None for no norm and in the other
    /// kernels) and whether SiLU follows it.
    pub norm_gamma: Option<&'a Tensor>,
    pub norm_silu: bool,
}

/// 160 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvMmaImage {
    x: u64,
    prev: u64,
    w: u64,
    bias: u64,
    residual: u64,
    out: u64,
    input: [i32; 5],
    output: [i32; 4],
    kernel: [i32; 3],
    stride: [i32; 3],
    pad: [i32; 3],
    m: i32,
    cin_blocks: i32,
    ktiles: i32,
    n_tiles: i32,
    vec_out: i32,
    piece: i32,
    norm_gamma: u64,
    norm_silu: i32,
    pad1: i32,
}

const _: () = assert!(std::mem::size_of::<ConvMmaImage>() == 160);

fn opt(t: Option<&Tensor>, dev: &Device) -> Result<u64> {
    t.map_or(Ok(0), |t| address(t, dev))
}

impl Param for ConvMma<'static> {
    type Value<'a> = ConvMma<'a>;
    const SIZE: usize = std::mem::size_of::<ConvMmaImage>();
    fn push(p: &ConvMma<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(&ConvMmaImage {
            x: address(p.x, dev)?,
            prev: opt(p.prev, dev)?,
            w: address(p.w, dev)?,
            bias: opt(p.bias, dev)?,
            residual: opt(p.residual, dev)?,
            out: address(p.out, dev)?,
            input: p.input,
            output: p.output,
            kernel: p.kernel,
            stride: p.stride,
            pad: p.pad,
            m: p.m,
            cin_blocks: p.cin_blocks,
            ktiles: p.ktiles,
            n_tiles: p.n_tiles,
            vec_out: p.vec_out,
            piece: p.piece,
            norm_gamma: opt(p.norm_gamma, dev)?,
            norm_silu: i32::from(p.norm_silu),
            pad1: 0,
        });
        Ok(())
    }
}
