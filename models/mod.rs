//! Wan2.1 models.
