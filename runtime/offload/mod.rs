//! Weight offloading: a model declares its weights as ordered units; a plan decides which stay on
//! the device and which stream through K slots from pinned host memory, prefetched on the copy stream
//! and fenced with events. Where the weights live never changes what is computed: every mode uses
//! the same packing (see `layout`), so output is bit-identical to resident execution.
//!
//! Typical use: declare the model's parameters and units with a [`VarBuilder`] (modules keep the
//! returned [`Param`] handles), choose a [`Plan`] with [`plan_for`] (or [`Plan::new`]), create an
//! [`Engine`], and run each forward inside [`Engine::forward`], taking each unit's weights through
//! the [`Forward`] handle in declared order.
//!
//! A two-layer MLP run through the engine within a 64 MiB budget: the planner keeps it resident when
//! it fits and streams it otherwise; the forward code is the same either way. Weights come from any
//! [`WeightSource`] (a checkpoint, or here, zeros):
//!
//! ```no_run
//! use std::sync::Arc;
//! use wanrt_runtime::offload::{plan_for, Engine, HostWeights, Param, Prefs, TensorSpec, VarBuilder, WeightSource};
//! use wanrt_runtime::ops;
//! use wanrt_runtime::{DType, Device, Result, Tensor};
//!
//! struct Zeros;
//! impl WeightSource for Zeros {
//!     fn read_into(&self, _t: &TensorSpec, dst: &mut [u8]) -> Result<()> {
//!         dst.fill(0); // a real source converts the checkpoint tensor `_t.name` into `dst`
//!         Ok(())
//!     }
//! }
//!
//! /// `torch.nn.Linear`, one offload unit.
//! struct Linear {
//!     weight: Param,
//!     bias: Param,
//! }
//!
//! impl Linear {
//!     fn new(vb: &VarBuilder, inp: usize, out: usize) -> Linear {
//!         vb.unit(|u| Linear { weight: u.param(vb, "weight", &[out, inp]), bias: u.param(vb, "bias", &[out]) })
//!     }
//! }
//!
//! fn main() -> Result<()> {
//!     let dev = Device::get(0)?;
//!     let vb = VarBuilder::new(|_key| DType::BF16);
//!     let fc1 = Linear::new(&vb.pp("fc1").block(0), 1024, 4096); // keys fc1.weight, fc1.bias
//!     let fc2 = Linear::new(&vb.pp("fc2").block(1), 4096, 1024);
//!     let units = vb.finish()?;
//!     let activations = 16 << 20;
//!     let plan = plan_for(&units, 64 << 20, activations, Prefs::default())?;
//!     println!("{plan}");
//!     let engine = Engine::new(&dev, units, plan, HostWeights::pinned(Arc::new(Zeros)))?;
//!     let x = Tensor::empty(&dev, &[8, 1024], DType::BF16)?;
//!     let h = Tensor::empty(&dev, &[8, 4096], DType::BF16)?;
//!     let y = Tensor::empty(&dev, &[8, 1024], DType::BF16)?;
//!     for _ in 0..3 {
//!         // One forward: units in declared order; a guard lends its weights while it lives.
//!         engine.forward(|fw| {
//!             let g = fw.unit(fc1.weight.unit())?;
//!             ops::linear(&x, g.get(fc1.weight)?, Some(g.get(fc1.bias)?), &h)?;
//!             drop(g);
//!             let g = fw.unit(fc2.weight.unit())?;
//!             ops::linear(&h, g.get(fc2.weight)?, Some(g.get(fc2.bias)?), &y)
//!         })?;
//!     }
//!     Ok(())
//! }
//! ```

mod declare;
mod engine;
mod host;
mod layout;
mod placement;
mod plan;
mod planner;
mod size;

pub use declare::{Param, UnitDecl, UnitId, VarBuilder};
pub use engine::{Engine, Forward, UnitGuard};
pub use host::{fill_unit, HostKind, HostWeights, PinnedArena, StagingRing, WeightSource};
pub use layout::{ModelUnits, TensorSpec, UnitLayout, UnitSpec, ALIGN};
pub use placement::ring_minimum;
pub use plan::{Group, Grouping, Mode, Plan};
pub use planner::{minimum_budget, plan_for, Area, Prefs, MAX_SLOTS};
pub use size::{auto_margin, fmt_bytes, parse_size, Budget};
