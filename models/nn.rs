//! Modules every model here is made of, as torch.nn names them: each declares its parameters once
//! (keys from the module path) and runs from the weights the offload engine lends for its unit.

use wanrt_runtime::offload::{Forward, Param, UnitDecl, UnitGuard, VarBuilder};
use wanrt_runtime::ops;
use wanrt_runtime::{Result, Tensor};

/// `torch.nn.Linear`: `weight` [out, in], `bias` [out].
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

/// The affine parameters of a `LayerNorm` ([D] weight and bias) or an `RMSNorm` ([D] weight).
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
}
