//! Weight offloading: a model declares its weights as ordered units; a plan decides which stay on
//! the device and which stream through K slots from pinned host memory, prefetched on the copy stream
//! and fenced with events. Where the weights live never changes what is computed: every mode uses
//! the same packing (see `layout`), so output is bit-identical to resident execution.
//!
//! Typical use: build [`ModelUnits`], choose a [`Plan`] with [`plan_for`] (or [`Plan::new`]), create
//! an [`Engine`], and in each forward call [`Engine::unit`] for every unit in declared order.
//!
//! A two-layer MLP run through the engine within a 64 MiB budget: the planner keeps it resident when
//! it fits and streams it otherwise; the forward code is the same either way. Weights come from any
//! [`WeightSource`] (a checkpoint, or here, zeros):
//!
//! ```no_run
//! use std::sync::Arc;
//! use wanrt_runtime::offload::{plan_for, Engine, HostWeights, ModelUnits, Prefs, TensorSpec, UnitSpec, WeightSource};
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
//! fn main() -> Result<()> {
//!     let dev = Device::get(0)?;
//!     let linear = |name: &str, block, out: usize, inp: usize| {
//!         UnitSpec::new(name, Some(block), vec![
//!             TensorSpec::new(format!("{name}.weight"), &[out, inp], DType::BF16),
//!             TensorSpec::new(format!("{name}.bias"), &[out], DType::BF16),
//!         ])
//!     };
//!     let units = ModelUnits::new(vec![linear("fc1", 0, 4096, 1024), linear("fc2", 1, 1024, 4096)])?;
//!     let activations = 16 << 20;
//!     let plan = plan_for(&units, 64 << 20, activations, Prefs::default())?;
//!     println!("{plan}");
//!     let engine = Engine::new(&dev, units, plan, HostWeights::pinned(Arc::new(Zeros)))?;
//!     let x = Tensor::empty(&dev, &[8, 1024], DType::BF16)?;
//!     let h = Tensor::empty(&dev, &[8, 4096], DType::BF16)?;
//!     let y = Tensor::empty(&dev, &[8, 1024], DType::BF16)?;
//!     for _ in 0..3 {
//!         // One forward: every unit once, in declared order; a guard keeps its weights on the device.
//!         let g = engine.unit(engine.index_of("fc1")?)?;
//!         ops::linear(&x, g.get("fc1.weight")?, Some(g.get("fc1.bias")?), &h)?;
//!         drop(g);
//!         let g = engine.unit(engine.index_of("fc2")?)?;
//!         ops::linear(&h, g.get("fc2.weight")?, Some(g.get("fc2.bias")?), &y)?;
//!     }
//!     Ok(())
//! }
//! ```

mod engine;
mod host;
mod layout;
mod placement;
mod plan;
mod planner;
mod size;

pub use engine::{Engine, UnitGuard};
pub use host::{fill_unit, HostKind, HostWeights, PinnedArena, StagingRing, WeightSource};
pub use layout::{ModelUnits, TensorSpec, UnitLayout, UnitSpec, ALIGN};
pub use placement::ring_minimum;
pub use plan::{Group, Grouping, Mode, Plan};
pub use planner::{minimum_budget, plan_for, Area, Prefs, MAX_SLOTS};
pub use size::{auto_margin, fmt_bytes, parse_size, Budget};
