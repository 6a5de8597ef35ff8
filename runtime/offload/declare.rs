//! Declaring a model's weights while its modules are built, as candle's `VarBuilder` does: a builder
//! carries the module path (`pp("blocks").pp(3).pp("attn1")`), each module declares its parameters
//! once under that path (checkpoint keys derive from it), and the unit boundaries (what the offload
//! engine uploads together) are declared in the same place. The module keeps the returned handles
//! ([`Param`], [`UnitId`]) and reads its weights through them in the forward.

use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;

use super::layout::{ModelUnits, TensorSpec, UnitSpec};
use crate::{DType, Result};

/// One declared unit: its index in the model's declared order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnitId(pub(crate) usize);

impl UnitId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// One declared parameter: its unit and its place in that unit's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param {
    pub(crate) unit: UnitId,
    pub(crate) index: usize,
}

impl Param {
    pub fn unit(self) -> UnitId {
        self.unit
    }
}

struct State {
    units: Vec<UnitSpec>,
    dtype_of: Box<dyn Fn(&str) -> DType>,
}

/// The module path under construction and the units declared so far (shared by every `pp` of one
/// model). Not `Send`: a model is declared on one thread, then [`VarBuilder::finish`] hands out the
/// plain [`ModelUnits`].
#[derive(Clone)]
pub struct VarBuilder {
    state: Rc<RefCell<State>>,
    path: String,
    block: Option<usize>,
}

impl VarBuilder {
    /// An empty model whose parameter dtypes follow `dtype_of(key)` (a model's precision policy, e.g.
    /// diffusers' fp32-kept modules).
    pub fn new(dtype_of: impl Fn(&str) -> DType + 'static) -> VarBuilder {
        VarBuilder { state: Rc::new(RefCell::new(State { units: Vec::new(), dtype_of: Box::new(dtype_of) })), path: String::new(), block: None }
    }

    /// The builder one module further down: `pp("attn1")` under `blocks.0` is `blocks.0.attn1`.
    pub fn pp(&self, name: impl Display) -> VarBuilder {
        let path = if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) };
        VarBuilder { state: self.state.clone(), path, block: self.block }
    }

    /// Units declared under the returned builder belong to block (or layer) `i`: block-level offload
    /// groups them.
    pub fn block(&self, i: usize) -> VarBuilder {
        VarBuilder { block: Some(i), ..self.clone() }
    }

    /// The module path (`blocks.0.attn1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The checkpoint key of parameter `name` of this module.
    pub fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Declares one unit named after this module's path: `f` declares its parameters (from this module
    /// or its children, through [`UnitDecl::param`]). The engine uploads and releases them together.
    pub fn unit<T>(&self, f: impl FnOnce(&mut UnitDecl<'_>) -> T) -> T {
        self.unit_named(&self.path, f)
    }

    /// [`VarBuilder::unit`] with a name other than the module path (e.g. a stack of sibling Linears).
    pub fn unit_named<T>(&self, name: &str, f: impl FnOnce(&mut UnitDecl<'_>) -> T) -> T {
        let id = UnitId(self.state.borrow().units.len());
        let mut decl = UnitDecl { state: &self.state, id, tensors: Vec::new() };
        let out = f(&mut decl);
        let tensors = std::mem::take(&mut decl.tensors);
        self.state.borrow_mut().units.push(UnitSpec::new(name, self.block, tensors));
        out
    }

    /// The declared units, validated and packed (names unique, blocks consecutive, sizes in range).
    pub fn finish(self) -> Result<ModelUnits> {
        let units = std::mem::take(&mut self.state.borrow_mut().units);
        ModelUnits::new(units)
    }
}

/// A unit being declared.
pub struct UnitDecl<'s> {
    state: &'s Rc<RefCell<State>>,
    id: UnitId,
    tensors: Vec<TensorSpec>,
}

impl UnitDecl<'_> {
    /// Declares parameter `name` of module `vb` (key `vb.key(name)`) in this unit, with the dtype the
    /// model's policy gives that key.
    pub fn param(&mut self, vb: &VarBuilder, name: &str, shape: &[usize]) -> Param {
        let key = vb.key(name);
        let dtype = (self.state.borrow().dtype_of)(&key);
        self.param_as(key, shape, dtype)
    }

    /// A parameter with an explicit key and dtype.
    pub fn param_as(&mut self, key: String, shape: &[usize], dtype: DType) -> Param {
        self.tensors.push(TensorSpec::new(key, shape, dtype));
        Param { unit: self.id, index: self.tensors.len() - 1 }
    }

    pub fn id(&self) -> UnitId {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_module_path_and_units_their_declaration() {
        let vb = VarBuilder::new(|k| if k.ends_with("norm.weight") { DType::F32 } else { DType::BF16 });
        let fc = vb.pp("fc");
        let (w, b) = fc.unit(|u| (u.param(&fc, "weight", &[4, 8]), u.param(&fc, "bias", &[4])));
        let blk = vb.pp("blocks").pp(0).block(0);
        let n = blk.pp("norm");
        let nw = blk.unit(|u| u.param(&n, "weight", &[4]));
        let units = vb.finish().unwrap();
        assert_eq!(units.len(), 2);
        assert_eq!(units.unit(0).name, "fc");
        assert_eq!(units.unit(0).tensors[0].name, "fc.weight");
        assert_eq!(units.unit(1).name, "blocks.0");
        assert_eq!(units.unit(1).block, Some(0));
        assert_eq!(units.unit(1).tensors[0].name, "blocks.0.norm.weight");
        assert_eq!(units.unit(1).tensors[0].dtype, DType::F32);
        assert_eq!((w.unit.0, w.index, b.index, nw.unit.0), (0, 0, 1, 1));
    }

    #[test]
    fn a_key_declared_twice_is_an_error() {
        let vb = VarBuilder::new(|_| DType::F32);
        let a = vb.pp("a");
        a.unit(|u| u.param(&a, "weight", &[1]));
        vb.pp("b").unit(|u| u.param(&a, "weight", &[1]));
        assert!(vb.finish().unwrap_err().to_string().contains("a.weight"));
    }
}
