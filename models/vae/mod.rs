//! Wan2.1's VAE, diffusers' `AutoencoderKLWan` (models/autoencoders/autoencoder_kl_wan.py), on the
//! runtime: channels-last activations, the causal feature cache of `_encode` / `_decode`, an encoder
//! and a decoder half each in its own precision (`WanEncoder3d`, `WanDecoder3d`).

pub mod chunks;
pub mod coder;
pub mod config;
pub mod decode;
pub mod encode;
pub mod exec;
pub mod load;
pub mod model;
pub mod modules;
pub mod tiling;

pub use chunks::{ChunkDownloads, HostChunk};
pub use config::VaeConfig;
pub use load::VaeFolder;
pub use tiling::TilePlan;
pub use model::{denormalize_latents, normalize_latents, posterior_mode, posterior_sample, AutoencoderKLWan};
