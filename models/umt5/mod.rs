//! The UMT5-XXL text encoder as Wan uses it (transformers `UMT5EncoderModel`, diffusers
//! `WanPipeline._get_t5_prompt_embeds`): its tokenizer and prompt cleaning, and the encoder.

pub mod config;
pub mod encoder;
pub mod tokenizer;

pub use config::Umt5Config;
pub use encoder::{TokenBatch, TokenEmbedding, Umt5EncoderModel};
