//! Writing decoded videos: diffusers' postprocess to bytes, H.264 MP4 (OpenH264 + the `mp4` muxer,
//! no system ffmpeg), PNG frames, or the raw tensor, on a CPU thread that overlaps the producer.

pub mod frames;
pub mod input;
pub mod mp4;
pub mod sink;
mod yuv;

pub use frames::{to_u8, Quantize, VideoShape};
pub use input::VideoFile;
pub use sink::{VideoSink, VideoWriter};
