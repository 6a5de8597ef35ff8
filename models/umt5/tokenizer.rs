//! The UMT5 tokenizer (a `tokenizer.json` through the `tokenizers` crate) and diffusers' prompt cleaning.
