//! The CLIP ViT-H/14 vision encoder as Wan I2V uses it (transformers `CLIPVisionModel`, the
//! penultimate layer's hidden states), and `CLIPImageProcessor`'s preprocessing.

pub mod preprocess;
pub mod vision;

pub use vision::{ClipVisionConfig, ClipVisionModel};
