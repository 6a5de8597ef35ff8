//! Modules every model here is made of, as torch.nn names them: each declares its parameters once
//! (keys from the module path) and runs from the weights the offload engine lends for its unit.

use std::sync::Arc;

use wanrt_runtime::offload::{Forward, Param, UnitDecl, UnitGuard, VarBuilder};
use wanrt_runtime::ops;
use wanrt_runtime::settings::settings;
use wanrt_runtime::{Result, Tensor};

/// `torch.nn.Linear`: `weight` [out, in], `bias` `[out]`.
#[derive(Clone, Copy, Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    /// Declares module `vb`'s weight and bias inside unit `u` (a unit holding more than this Linear).
    pub fn declare(u: &mut UnitDecl<'_>, vb: &VarBuilder, inp: usize, out: usize, bias: bool) -> Linear {
        let weight = u.param(vb, "weight", &[out, inp]);
        let bias = bias.then(|| u.param(vb, "bias", &[out]));
        Linear { weight, bias }
    }

    /// A Linear with a bias that is its own offload unit (named by its path).
    pub fn unit(vb: &VarBuilder, inp: usize, out: usize) -> Linear {
        vb.unit(|u| Linear::declare(u, vb, inp, out, true))
    }

    /// `out = x · Wᵀ + b` with the weights of `g` (this Linear's unit).
    pub fn forward(&self, g: &UnitGuard<'_>, x: &Tensor, out: &Tensor) -> Result<()> {
        let bias = self.bias.map(|b| g.get(b)).transpose()?;
        ops::linear(x, g.get(self.weight)?, bias, out)
    }

    /// Takes this Linear's unit from the forward, runs it, and gives the unit back.
    pub fn run(&self, fw: &Forward<'_>, x: &Tensor, out: &Tensor) -> Result<()> {
        let g = fw.unit(self.weight.unit())?;
        self.forward(&g, x, out)
    }
}

/// The affine parameters of a `LayerNorm` (`[D]` weight and bias) or an `RMSNorm` (`[D]` weight).
#[derive(Clone, Copy, Debug)]
pub struct Norm {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Norm {
    pub fn declare(u: &mut UnitDecl<'_>, vb: &VarBuilder, dim: usize, bias: bool) -> Norm {
        let weight = u.param(vb, "weight", &[dim]);
        let bias = bias.then(|| u.param(vb, "bias", &[dim]));
        Norm { weight, bias }
    }

    /// A norm that is its own offload unit (named by its path).
    pub fn unit(vb: &VarBuilder, dim: usize, bias: bool) -> Norm {
        vb.unit(|u| Norm::declare(u, vb, dim, bias))
    }

    /// `LayerNorm(x)` with these affine parameters.
    pub fn layer_norm(&self, g: &UnitGuard<'_>, x: &Tensor, eps: f32, out: &Tensor) -> Result<()> {
        let bias = self.bias.map(|b| g.get(b)).transpose()?;
        ops::layer_norm(x, Some(g.get(self.weight)?), bias, eps, out)
    }

    /// `RMSNorm(x)` with this weight.
    pub fn rms_norm(&self, g: &UnitGuard<'_>, x: &Tensor, eps: f32, out: &Tensor) -> Result<()> {
        ops::rms_norm(x, Some(g.get(self.weight)?), eps, out)
    }

    /// T5's `LayerNorm` (an RMSNorm rounding before and after its weight, see `ops::rms_norm_t5`).
    pub fn t5_layer_norm(&self, g: &UnitGuard<'_>, x: &Tensor, eps: f32, out: &Tensor) -> Result<()> {
        ops::rms_norm_t5(x, Some(g.get(self.weight)?), eps, out)
    }
}

/// `out[g] = x · W[g]ᵀ (+ b[g])` for the Linears of one unit that share an input (q/k/v, UMT5's
/// wi_0/wi_1), `out` [G, M, N]: one batched GEMM over the unit's stacked weights when they lie back to
/// back (units declare such weights first, and every placement packs a unit alike, so this depends
/// on the shapes only, never on where the weights live), otherwise G GEMMs; `WANRT_QKV_STACK=0`
/// forces the G GEMMs, for comparison. Either way every offload mode computes the same bits.
pub fn linear_group(g: &UnitGuard<'_>, lin: &[Linear], x: &Tensor, out: &Tensor) -> Result<()> {
    let (m, n) = (out.dim(1), out.dim(2));
    let x2 = x.reshape(&[m, x.dim(x.rank() - 1)])?;
    let w = lin.iter().map(|l| g.get(l.weight)).collect::<Result<Vec<_>>>()?;
    let b = lin.iter().map(|l| l.bias.map(|b| g.get(b)).transpose()).collect::<Result<Vec<_>>>()?;
    if settings().qkv_stack {
        let bias = match b.iter().copied().collect::<Option<Vec<_>>>() {
            Some(bs) => stack(&bs)?.map(Some),
            None if b.iter().all(Option::is_none) => Some(None),
            None => None,
        };
        if let (Some(w3), Some(b3)) = (stack(&w)?, bias) {
            return ops::linear_stack(&x2, &w3, b3.as_ref(), out);
        }
    }
    for (j, l) in lin.iter().enumerate() {
        l.forward(g, &x2, &out.narrow(0, j, 1)?.reshape(&[m, n])?)?;
    }
    Ok(())
}

/// `ts` as one [G, ..shape] view when they lie back to back in one buffer with one shape and dtype;
/// the view keeps the first's lease (it is as short-lived as the weights it spans).
fn stack(ts: &[&Tensor]) -> Result<Option<Tensor>> {
    let Some(first) = ts.first() else { return Ok(None) };
    let len = first.byte_len();
    let adjacent = ts.iter().enumerate().all(|(j, t)| {
        Arc::ptr_eq(t.buffer(), first.buffer())
            && t.shape() == first.shape()
            && t.dtype() == first.dtype()
            && t.is_contiguous()
            && t.byte_offset() == first.byte_offset() + j as u64 * len
    });
    if !adjacent {
        return Ok(None);
    }
    let mut shape = vec![ts.len()];
    shape.extend_from_slice(first.shape());
    Ok(Some(Tensor::from_buffer(first.buffer().clone(), first.byte_offset(), &shape, first.dtype())?.with_lease_of(first)))
}
