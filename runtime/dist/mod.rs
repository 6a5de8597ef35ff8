//! Several GPUs for one generation: how ranks find each other ([`topology`]), how the work is split
//! ([`plan`]: classifier-free-guidance branches across GPU groups, and the sequence across the GPUs of a
//! group, Ulysses-style, as xDiT and the official Wan2.1 code do), and the layout changes around the
//! attention's all-to-all ([`ulysses`]), written once as data so the CPU tests and the device run the
//! same steps.
//!
//! One process drives every GPU of its host (see `gpu::Comm`); hosts join through one NCCL id passed by
//! a file or the environment.

pub mod plan;
pub mod topology;
pub mod ulysses;

pub use plan::{ParallelPlan, RankRole, SeqSplit};
pub use topology::Topology;
pub use ulysses::{Step, UlyssesLayout};
