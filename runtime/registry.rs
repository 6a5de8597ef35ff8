//! Kernel registry: the CUDA sources embedded by `build.rs`, compiled with NVRTC for the device's
//! architecture on first use and cached on disk.
//!
//! Cache entries are keyed by (source and header hash, options, target arch, NVRTC version) and carry
//! a checksum of their payload; a corrupt, truncated or stale entry is recompiled, never trusted.
//! `WANRT_KERNEL_CACHE=/path` moves the cache, `WANRT_KERNEL_CACHE=off` disables it (read once, see
//! [`crate::settings`]).
//!
//! The modules and functions loaded on each device are cached here too. Kernels are named by the
//! kernel table (`gpu::kernels`), the only caller of [`function`] in the runtime.
//!
//! A cold cache means NVRTC compiles each file on its first launch, one after another on the thread
//! that launches (about a minute for a VAE decode's files, most of it the row-sharing conv file).
//! [`prepare`] compiles every file on background threads instead, largest first, while the caller
//! goes on (loading weights, say); a launch whose file is being compiled waits for that compile
//! rather than starting a second one. The `wan` CLI prepares as it opens the GPU and finishes the
//! preparation before it exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::gpu::{self, CompileOutput, Device, Function, Module};
use crate::{Error, Result};

/// One `kernels/*.cu` file.
pub struct KernelSource {
    pub name: &'static str,
    pub source: &'static str,
    pub hash: u64,
}

include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));

/// Every embedded kernel file.
pub fn sources() -> &'static [KernelSource] {
    SOURCES
}

/// The embedded headers (`common.cuh`, ...), available to every kernel file.
pub fn headers() -> &'static [(&'static str, &'static str)] {
    HEADERS
}

pub fn source(name: &str) -> Result<&'static KernelSource> {
    SOURCES.iter().find(|s| s.name == name).ok_or_else(|| Error::UnknownKernel(format!("kernels/{name}.cu")))
}

/// NVRTC options used for every kernel file. `arch_number` is e.g. 90 for sm_90a.
pub fn compile_options(arch_number: u32) -> Vec<String> {
    vec![
        "--std=c++17".into(),
        "--device-as-default-execution-space".into(),
        "-lineinfo".into(),
        format!("-DWANRT_ARCH={}", arch_number * 10),
    ]
}

/// Compiles one kernel file for an NVRTC target (`sm_80`, `sm_90a`, `compute_90`), without the cache.
pub fn compile(name: &str, target: &str) -> Result<CompileOutput> {
    let src = source(name)?;
    let number: u32 = target.trim_start_matches("sm_").trim_start_matches("compute_").trim_end_matches('a').parse().unwrap_or(80);
    gpu::nvrtc_compile(&format!("{name}.cu"), src.source, HEADERS, target, &compile_options(number))
}

fn cache_dir() -> Option<PathBuf> {
    crate::settings::settings().kernel_cache.clone()
}

const MAGIC: &[u8; 8] = b"WANRTKC1";

/// Reads a cache entry; `None` when missing, truncated, or its checksum does not match.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 48 || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let payload = bytes.get(48..)?;
    if payload.len() != len || Sha256::digest(payload).as_slice() != &bytes[16..48] {
        return None;
    }
    Some(payload.to_vec())
}

fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut data = Vec::with_capacity(payload.len() + 48);
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    data.extend_from_slice(&Sha256::digest(payload));
    data.extend_from_slice(payload);
    // Write then rename, so a concurrent reader never sees a half-written entry.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)
}

/// The compiled image of kernel file `name` for `target`, from the cache when a valid entry exists.
/// Returns (image, is_cubin).
pub fn cached_image(name: &str, target: &str) -> Result<(Vec<u8>, bool)> {
    let src = source(name)?;
    let (major, minor) = gpu::nvrtc_version()?;
    let number: u32 = target.trim_start_matches("sm_").trim_start_matches("compute_").trim_end_matches('a').parse().unwrap_or(80);
    let key = format!("{name}|{:016x}|{:?}|{target}|nvrtc {major}.{minor}", src.hash, compile_options(number));
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let is_cubin = target.starts_with("sm_");
    let path = cache_dir().map(|d| d.join(format!("{name}-{target}-{hex}.{}", if is_cubin { "cubin" } else { "ptx" })));
    if let Some(p) = &path {
        if let Some(image) = read_entry(p) {
            return Ok((image, is_cubin));
        }
    }
    let out = compile(name, target)?;
    if let Some(p) = &path {
        // A cache that cannot be written only costs a recompile next time.
        let _ = write_entry(p, &out.image);
    }
    Ok((out.image, out.is_cubin))
}

/// A compiled image shared between the thread that compiled it and the launches that load it:
/// (image, is_cubin), or `None` where the compile failed (the launch compiles again for the error).
type Image = Option<(Arc<Vec<u8>>, bool)>;

/// The one image slot of (file, target): the first thread to ask compiles (or reads the cache);
/// others asking meanwhile wait for it.
fn image_slot(name: &'static str, target: &str) -> Arc<OnceLock<Image>> {
    type Slots = HashMap<(&'static str, String), Arc<OnceLock<Image>>>;
    static SLOTS: OnceLock<Mutex<Slots>> = OnceLock::new();
    SLOTS.get_or_init(|| Mutex::new(HashMap::new())).lock().entry((name, target.to_string())).or_default().clone()
}

/// [`cached_image`] through the file's slot: compiled once per process and target.
fn shared_image(name: &'static str, target: &str) -> Result<(Arc<Vec<u8>>, bool)> {
    let slot = image_slot(name, target);
    match slot.get_or_init(|| cached_image(name, target).ok().map(|(image, is_cubin)| (Arc::new(image), is_cubin))) {
        Some(image) => Ok(image.clone()),
        // The slot's compile failed: once more, for the error and its log.
        None => cached_image(name, target).map(|(image, is_cubin)| (Arc::new(image), is_cubin)),
    }
}

/// Background compiles started by [`prepare`]. Finish or wait for it before the process exits:
/// dropping it leaves the threads running, and a process that exits while NVRTC is compiling on
/// another thread may crash in NVRTC's teardown.
pub struct Preparation {
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Preparation {
    /// The background threads it started (none where this process already prepares the target).
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Waits for every file to be compiled (or found in the cache).
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Stops taking new files and waits for the ones being compiled (what a launch needed is done;
    /// the rest compile on first use, as without a preparation).
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wait();
    }
}

/// Compiles every kernel file for `target` (an NVRTC target, as [`target_for`] gives) on up to
/// `threads` background threads, largest file first, into the disk cache and this process's images,
/// so the first launches load instead of compiling in turn. Errors are left to the launch that needs
/// the file. Only the first call per target starts threads; later ones return an empty preparation.
/// The images stay in memory for the process (every file at sm_90a: about 30 MB).
pub fn prepare(target: &str, threads: usize) -> Preparation {
    static STARTED: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let mut started = STARTED.get_or_init(|| Mutex::new(Vec::new())).lock();
        if started.iter().any(|t| t == target) {
            return Preparation { workers: Vec::new(), stop };
        }
        started.push(target.to_string());
    }
    let mut files: Vec<&'static KernelSource> = SOURCES.iter().collect();
    files.sort_by_key(|s| std::cmp::Reverse(s.source.len()));
    let queue = Arc::new(Mutex::new(files.into_iter()));
    let workers = (0..threads.max(1))
        .map(|_| {
            let (queue, target, stop) = (queue.clone(), target.to_string(), stop.clone());
            std::thread::spawn(move || {
                loop {
                    // Its own statement: the queue's lock is released before the compile.
                    let next = queue.lock().next();
                    let Some(src) = next else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = shared_image(src.name, &target);
                }
            })
        })
        .collect();
    Preparation { workers, stop }
}

/// [`prepare`] for `dev`'s target on all but one of the machine's cores (at least one).
pub fn prepare_for(dev: &Device) -> Result<Preparation> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(prepare(&target_for(dev)?, cores.saturating_sub(1).max(1)))
}

/// The NVRTC target for a device: SASS for its arch when this NVRTC knows it, else PTX for the newest
/// virtual arch it knows (the driver JIT-compiles it). Asked of NVRTC once per device.
pub fn target_for(dev: &Device) -> Result<String> {
    static TARGETS: OnceLock<Mutex<HashMap<usize, String>>> = OnceLock::new();
    let targets = TARGETS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(t) = targets.lock().get(&dev.ordinal()) {
        return Ok(t.clone());
    }
    let arch = dev.arch();
    let supported = gpu::nvrtc_supported_archs()?;
    let target = if supported.contains(&(arch.number() as i32)) {
        arch.sm_target()
    } else {
        let best = supported.iter().copied().filter(|a| *a as u32 <= arch.number()).max().ok_or_else(|| {
            Error::invalid(format!("this NVRTC supports none of the architectures up to {arch}: {supported:?}"))
        })?;
        format!("compute_{best}")
    };
    targets.lock().insert(dev.ordinal(), target.clone());
    Ok(target)
}

/// Modules and functions loaded on one device.
#[derive(Default)]
struct Loaded {
    modules: HashMap<&'static str, Arc<Module>>,
    functions: HashMap<(&'static str, String), Function>,
}

/// Per device ordinal (one `Device` per ordinal per process).
fn loaded() -> &'static Mutex<HashMap<usize, Loaded>> {
    static LOADED: OnceLock<Mutex<HashMap<usize, Loaded>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Kernel `func` of `kernels/{module}.cu` on `dev`, compiled and loaded on first use. Launching it is
/// `Device::launch` (unsafe); the typed launchers of `gpu::kernels` name every kernel of the runtime.
pub fn function(dev: &Arc<Device>, module: &str, func: &str) -> Result<Function> {
    let src = source(module)?;
    let ordinal = dev.ordinal();
    if let Some(f) = loaded().lock().get(&ordinal).and_then(|l| l.functions.get(&(src.name, func.to_string()))) {
        return Ok(f.clone());
    }
    let cached = loaded().lock().get(&ordinal).and_then(|l| l.modules.get(src.name).cloned());
    let m = match cached {
        Some(m) => m,
        None => {
            // Compiled without the lock held: NVRTC may take seconds.
            let target = target_for(dev)?;
            let (image, is_cubin) = shared_image(src.name, &target)?;
            let m = dev.load_module(src.name, &image[..]).map_err(|e| Error::Cuda {
                call: "cuModuleLoadData",
                msg: format!("{e} ({} for {target})", if is_cubin { "CUBIN" } else { "PTX" }),
            })?;
            loaded().lock().entry(ordinal).or_default().modules.entry(src.name).or_insert(m).clone()
        }
    };
    let f = dev.get_function(&m, func)?;
    loaded().lock().entry(ordinal).or_default().functions.insert((src.name, func.to_string()), f.clone());
    Ok(f)
}
