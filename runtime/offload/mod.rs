//! Weight offloading: a model declares its weights as ordered units; a plan decides which stay on
//! the device and which stream through K slots from pinned host memory, prefetched on the copy stream
//! and fenced with events. Where the weights live never changes what is computed: every mode uses
//! the same packing (see `layout`), so output is bit-identical to resident execution.
//!
//! Typical use: build [`ModelUnits`], choose a [`Plan`] with [`plan_for`] (or [`Plan::new`]), create
//! an [`Engine`], and in each forward call [`Engine::unit`] for every unit in declared order.

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
pub use planner::{minimum_budget, plan_for, Prefs};
pub use size::{auto_margin, fmt_bytes, parse_size, Budget};
