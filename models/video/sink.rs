//! Where a decoded video goes, chosen from the output path, and a writer that encodes on its own CPU
//! thread so the producer (the VAE decode) never waits for the encoder: chunks go through a bounded
//! channel, two in flight at most.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use wanrt_runtime::weights::{write_safetensors, StorageDType};
use wanrt_runtime::{Error, Result};

use super::frames::{frame_rgb, Quantize, VideoShape};
use super::mp4::{check_size, Mp4Encoder};

/// The output of `wan generate` / `wan save-video`, from its path: `*.mp4` an H.264 MP4, `DIR/` (or
/// an existing folder) PNG frames `frame_00000.png`…, `*.safetensors` the raw video tensor `video`
/// (B, 3, F, H, W) f32 in [-1, 1].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoSink {
    Mp4(PathBuf),
    PngDir(PathBuf),
    SafeTensors(PathBuf),
}

impl VideoSink {
    pub fn from_path(path: &Path) -> Result<VideoSink> {
        let text = path.to_string_lossy();
        if text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) || path.is_dir() {
            return Ok(VideoSink::PngDir(path.to_path_buf()));
        }
        match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).as_deref() {
            Some("mp4") => Ok(VideoSink::Mp4(path.to_path_buf())),
            Some("safetensors") => Ok(VideoSink::SafeTensors(path.to_path_buf())),
            _ => Err(Error::File {
                path: path.to_path_buf(),
                msg: "unknown output kind: give FILE.mp4 (H.264), DIR/ (PNG frames) or FILE.safetensors (the raw video tensor)".into(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            VideoSink::Mp4(p) | VideoSink::PngDir(p) | VideoSink::SafeTensors(p) => p,
        }
    }

    /// Checks, before any work, that the output can be written: a file's folder exists and takes a
    /// new file and the file is not a folder; a frame folder exists or can be created, and takes files.
    pub fn check_writable(&self) -> Result<()> {
        let probe_in = |dir: &Path| -> Result<()> {
            let probe = dir.join(format!(".wan-write-check-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| Error::File { path: dir.to_path_buf(), msg: format!("cannot write here: {e}") })?;
            let _ = std::fs::remove_file(&probe);
            Ok(())
        };
        match self {
            VideoSink::PngDir(dir) => {
                if dir.exists() && !dir.is_dir() {
                    return Err(Error::File { path: dir.clone(), msg: "exists and is not a folder".into() });
                }
                std::fs::create_dir_all(dir).map_err(|e| Error::File { path: dir.clone(), msg: format!("cannot create the frame folder: {e}") })?;
                probe_in(dir)
            }
            VideoSink::Mp4(file) | VideoSink::SafeTensors(file) => {
                if file.is_dir() {
                    return Err(Error::File { path: file.clone(), msg: "is a folder; give a file path (or end it with / for PNG frames)".into() });
                }
                let parent = match file.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !parent.is_dir() {
                    return Err(Error::File { path: parent, msg: "the output's folder does not exist".into() });
                }
                probe_in(&parent)
            }
        }
    }

    /// Checks that this sink can hold a video of `shape` (an MP4 takes one video of even size).
    pub fn check_shape(&self, shape: &VideoShape) -> Result<()> {
        match self {
            VideoSink::SafeTensors(_) => Ok(()),
            VideoSink::Mp4(_) | VideoSink::PngDir(_) if shape.batch != 1 => Err(Error::invalid(format!(
                "the tensor holds {} videos; MP4 and PNG outputs take one (write .safetensors to keep the batch)",
                shape.batch
            ))),
            VideoSink::Mp4(_) => check_size(shape.width, shape.height),
            VideoSink::PngDir(_) => Ok(()),
        }
    }

    /// Starts the writer thread for a video of `shape` at `fps`. A file output is written beside its
    /// path as a hidden `.NAME.partial` file and renamed over the path only by a successful
    /// [`VideoWriter::finish`]: a failed or cancelled run leaves no half-written video and never
    /// replaces an existing one. (PNG frames are written in place as they come.)
    pub fn open(&self, shape: VideoShape, fps: u32) -> Result<VideoWriter> {
        self.check_shape(&shape)?;
        let partial = match self {
            VideoSink::Mp4(p) | VideoSink::SafeTensors(p) => Some(Partial::beside(p)),
            VideoSink::PngDir(_) => None,
        };
        let target = partial.as_ref().map(|p| p.tmp.clone());
        let mut backend: Box<dyn Backend> = match (self, target) {
            (VideoSink::Mp4(_), Some(t)) => Box::new(Mp4Backend { enc: Some(Mp4Encoder::create(&t, shape.width, shape.height, fps)?), shape }),
            (VideoSink::SafeTensors(_), Some(t)) => Box::new(TensorBackend { path: t, shape, data: vec![0.0; shape.numel()], placed: 0, fps }),
            (VideoSink::PngDir(d), _) => Box::new(PngBackend { dir: d.clone(), shape, next: 0 }),
            _ => unreachable!("file outputs have a partial path"),
        };
        let (tx, rx) = sync_channel::<Chunk>(2);
        let handle = std::thread::Builder::new()
            .name("wan-video-writer".into())
            .spawn(move || -> Result<u64> {
                for chunk in rx {
                    backend.chunk(&chunk)?;
                }
                backend.finish()
            })
            .map_err(|e| Error::invalid(format!("cannot start the video writer thread: {e}")))?;
        Ok(VideoWriter { tx: Some(tx), handle: Some(handle), shape, sent: 0, partial })
    }
}

/// A file output's temporary name beside it, removed unless committed.
struct Partial {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Partial {
    fn beside(dest: &Path) -> Partial {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "video".into());
        Partial { tmp: dest.with_file_name(format!(".{name}.partial")), dest: dest.to_path_buf() }
    }

    fn commit(self) -> Result<()> {
        let r = std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::File { path: self.dest.clone(), msg: format!("cannot move the finished video into place from {}: {e}", self.tmp.display()) });
        if r.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        r
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Frames of one video, channel-first (3, frames, H, W) as the VAE hands them out.
struct Chunk {
    data: Vec<f32>,
    frames: usize,
}

trait Backend: Send {
    fn chunk(&mut self, c: &Chunk) -> Result<()>;
    /// Flushes and returns the frames written.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// Streams chunks to the writer thread. Dropping it without [`VideoWriter::finish`] abandons the output.
pub struct VideoWriter {
    tx: Option<SyncSender<Chunk>>,
    handle: Option<JoinHandle<Result<u64>>>,
    shape: VideoShape,
    sent: usize,
    partial: Option<Partial>,
}

impl VideoWriter {
    /// Queues `frames` frames in (3, frames, H, W) layout (for a batched tensor in the safetensors
    /// output: the whole (B, 3, F, H, W) at once). Blocks only while two chunks wait already.
    pub fn push(&mut self, data: Vec<f32>, frames: usize) -> Result<()> {
        let s = self.shape;
        if data.len() != s.batch * 3 * frames * s.height * s.width {
            return Err(Error::invalid(format!("a chunk of {} values does not hold {frames} frames of 3×{}×{}", data.len(), s.height, s.width)));
        }
        if self.sent + frames > s.frames {
            return Err(Error::invalid(format!("{} frames pushed to a {}-frame video", self.sent + frames, s.frames)));
        }
        let tx = self.tx.as_ref().ok_or_else(|| Error::invalid("push after finish"))?;
        if tx.send(Chunk { data, frames }).is_err() {
            // The thread stopped on an error: report it.
            return Err(self.join().err().unwrap_or_else(|| Error::invalid("the video writer stopped early")));
        }
        self.sent += frames;
        Ok(())
    }

    /// Waits for the writer and returns the frames written.
    pub fn finish(mut self) -> Result<u64> {
        if self.sent != self.shape.frames {
            return Err(Error::invalid(format!("only {} of {} frames were produced", self.sent, self.shape.frames)));
        }
        let frames = self.join()?;
        if let Some(p) = self.partial.take() {
            p.commit()?;
        }
        Ok(frames)
    }

    fn join(&mut self) -> Result<u64> {
        self.tx.take();
        let handle = self.handle.take().ok_or_else(|| Error::invalid("the video writer was already joined"))?;
        handle.join().map_err(|_| Error::invalid("the video writer thread panicked"))?
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        // Not finished (or finishing failed): the partial file goes.
        if let Some(p) = self.partial.take() {
            p.discard();
        }
    }
}

struct Mp4Backend {
    enc: Option<Mp4Encoder>,
    shape: VideoShape,
}

impl Backend for Mp4Backend {
    fn chunk(&mut self, c: &Chunk) -> Result<()> {
        let enc = self.enc.as_mut().ok_or_else(|| Error::invalid("MP4 already finished"))?;
        for f in 0..c.frames {
            enc.push_rgb(&frame_rgb(&c.data, c.frames, self.shape.height, self.shape.width, f, Quantize::Truncate))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.enc.take().ok_or_else(|| Error::invalid("MP4 already finished"))?.finish()
    }
}

struct PngBackend {
    dir: PathBuf,
    shape: VideoShape,
    next: usize,
}

impl Backend for PngBackend {
    fn chunk(&mut self, c: &Chunk) -> Result<()> {
        let (h, w) = (self.shape.height, self.shape.width);
        for f in 0..c.frames {
            let rgb = frame_rgb(&c.data, c.frames, h, w, f, Quantize::Round);
            let path = self.dir.join(format!("frame_{:05}.png", self.next));
            image::save_buffer_with_format(&path, &rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
                .map_err(|e| Error::File { path: path.clone(), msg: format!("cannot write PNG: {e}") })?;
            self.next += 1;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        Ok(self.next as u64)
    }
}

/// Keeps the floats and writes `video` (B, 3, F, H, W) f32 at the end. Chunks of a batch-1 video
/// arrive (3, f, H, W) and are placed along F; a batched video comes as one chunk.
struct TensorBackend {
    path: PathBuf,
    shape: VideoShape,
    data: Vec<f32>,
    placed: usize,
    fps: u32,
}

impl Backend for TensorBackend {
    fn chunk(&mut self, c: &Chunk) -> Result<()> {
        let s = self.shape;
        if s.batch != 1 {
            if c.frames != s.frames {
                return Err(Error::invalid("a batched video is written as one chunk"));
            }
            self.data.clone_from(&c.data);
        } else {
            let plane = s.height * s.width;
            for ch in 0..3 {
                let src = &c.data[ch * c.frames * plane..][..c.frames * plane];
                self.data[(ch * s.frames + self.placed) * plane..][..c.frames * plane].copy_from_slice(src);
            }
        }
        self.placed += c.frames;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        let bytes: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = self.shape.dims();
        let fps = self.fps.to_string();
        write_safetensors(&self.path, &[("video", StorageDType::F32, &dims[..], &bytes)], &[("fps", fps.as_str())])?;
        Ok(self.shape.frames as u64)
    }
}
