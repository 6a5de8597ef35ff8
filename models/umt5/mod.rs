//! The UMT5-XXL text encoder as Wan uses it (transformers `UMT5EncoderModel`, diffusers
//! `WanPipeline._get_t5_prompt_embeds`): its tokenizer and prompt cleaning, and the encoder.

pub mod tokenizer;
