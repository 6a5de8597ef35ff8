//! Parameter blocks passed by value, in two forms: the block a launcher fills (tensors by reference,
//! crate-private) and the `#[repr(C)]` image the kernel reads, whose device addresses are taken from
//! the tensors (lease-checked, on the launching device) when the launch is queued.

use bytemuck::{Pod, Zeroable};

use super::device::Device;
use super::kernels::{address, Param};
use super::launch::KernelArgs;
use super::tensor_map::TensorMap;
use crate::{Result, Tensor};

/// Volume and patch sizes of kernels/patch.cu (`PatchDims`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct PatchDims {
    pub batch: u64,
    pub channels: u64,
    pub frames: u64,
    pub height: u64,
    pub width: u64,
    pub pt: u64,
    pub ph: u64,
    pub pw: u64,
}

/// Geometry of kernels/conv3d.cu (`Conv3dDims`): sizes, kernel, strides and front paddings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct Conv3dDims {
    pub batch: i64,
    pub t: i64,
    pub p: i64,
    pub h: i64,
    pub w: i64,
    pub cin: i64,
    pub cout: i64,
    pub to: i64,
    pub ho: i64,
    pub wo: i64,
    pub kt: i64,
    pub kh: i64,
    pub kw: i64,
    pub st: i64,
    pub sh: i64,
    pub sw: i64,
    pub pad_t: i64,
    pub pad_h: i64,
    pub pad_w: i64,
}

/// The portable attention kernel's block (`AttnParams` in kernels/attention.cu).
pub(crate) struct PortableAttn<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub batch: u64,
    pub nq: u64,
    pub nk: u64,
    pub heads: u64,
    pub bias_batch_stride: u64,
    pub scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PortableAttnImage {
    q: u64,
    k: u64,
    v: u64,
    bias: u64,
    out: u64,
    batch: u64,
    nq: u64,
    nk: u64,
    heads: u64,
    bias_batch_stride: u64,
    scale: f32,
    pad: f32,
}

impl Param for PortableAttn<'static> {
    type Value<'a> = PortableAttn<'a>;
    const SIZE: usize = std::mem::size_of::<PortableAttnImage>();
    fn push(p: &PortableAttn<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(&PortableAttnImage {
            q: address(p.q, dev)?,
            k: address(p.k, dev)?,
            v: address(p.v, dev)?,
            bias: match p.bias {
                Some(t) => address(t, dev)?,
                None => 0,
            },
            out: address(p.out, dev)?,
            batch: p.batch,
            nq: p.nq,
            nk: p.nk,
            heads: p.heads,
            bias_batch_stride: p.bias_batch_stride,
            scale: p.scale,
            pad: 0.0,
        });
        Ok(())
    }
}

/// The mma.sync attention kernel's block (`AttnParams` in kernels/attention_mma.cu).
pub(crate) struct MmaAttn<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub o: &'a Tensor,
    pub q_stride: [i64; 3],
    pub k_stride: [i64; 3],
    pub v_stride: [i64; 3],
    pub o_stride: [i64; 3],
    pub heads: i32,
    pub nq: i32,
    pub nk: i32,
    pub scale_log2: f32,
}

/// No implicit padding (152 bytes).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MmaAttnImage {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    q_stride: [i64; 3],
    k_stride: [i64; 3],
    v_stride: [i64; 3],
    o_stride: [i64; 3],
    heads: i32,
    nq: i32,
    nk: i32,
    pad0: i32,
    scale_log2: f32,
    pad1: i32,
}

const _: () = assert!(std::mem::size_of::<MmaAttnImage>() == 152);

impl Param for MmaAttn<'static> {
    type Value<'a> = MmaAttn<'a>;
    const SIZE: usize = std::mem::size_of::<MmaAttnImage>();
    fn push(p: &MmaAttn<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(&MmaAttnImage {
            q: address(p.q, dev)?,
            k: address(p.k, dev)?,
            v: address(p.v, dev)?,
            o: address(p.o, dev)?,
            q_stride: p.q_stride,
            k_stride: p.k_stride,
            v_stride: p.v_stride,
            o_stride: p.o_stride,
            heads: p.heads,
            nq: p.nq,
            nk: p.nk,
            pad0: 0,
            scale_log2: p.scale_log2,
            pad1: 0,
        });
        Ok(())
    }
}

/// The wgmma attention kernel's block (`WgParams` in kernels/attention_wgmma.cu); the maps are encoded
/// from the tensors by `Device::tensor_map_tiled`.
pub(crate) struct WgmmaAttn<'a> {
    pub q_map: TensorMap,
    pub k_map: TensorMap,
    pub v_map: TensorMap,
    pub o: &'a Tensor,
    pub o_stride: [i64; 3],
    pub q_order: i32,
    pub k_order: i32,
    pub v_order: i32,
    pub heads: i32,
    pub nq: i32,
    pub nk: i32,
    pub scale_log2: f32,
}

/// 512 bytes, no implicit padding; the tensor maps are read by the copy engine from the parameter space.
#[repr(C, align(128))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WgmmaAttnImage {
    q_map: TensorMap,
    k_map: TensorMap,
    v_map: TensorMap,
    o: u64,
    o_stride: [i64; 3],
    q_order: i32,
    k_order: i32,
    v_order: i32,
    heads: i32,
    nq: i32,
    nk: i32,
    scale_log2: f32,
    pad: [i32; 17],
}

const _: () = assert!(std::mem::size_of::<WgmmaAttnImage>() == 512);

impl Param for WgmmaAttn<'static> {
    type Value<'a> = WgmmaAttn<'a>;
    const SIZE: usize = std::mem::size_of::<WgmmaAttnImage>();
    fn push(p: &WgmmaAttn<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(&WgmmaAttnImage {
            q_map: p.q_map,
            k_map: p.k_map,
            v_map: p.v_map,
            o: address(p.o, dev)?,
            o_stride: p.o_stride,
            q_order: p.q_order,
            k_order: p.k_order,
            v_order: p.v_order,
            heads: p.heads,
            nq: p.nq,
            nk: p.nk,
            scale_log2: p.scale_log2,
            pad: [0; 17],
        });
        Ok(())
    }
}
