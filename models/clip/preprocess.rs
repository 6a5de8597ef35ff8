//! `CLIPImageProcessor` (transformers image_processing_clip.py) from `image_processor/preprocessor_config.json`.
