//! Wan2.1 models.

pub mod schedulers;
