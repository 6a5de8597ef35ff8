//! Every kernel file compiles with NVRTC for every supported architecture. Needs libnvrtc (CI installs
//! the nvidia-cuda-nvrtc wheel), no GPU. Fails, never skips, when NVRTC is missing.

use wanrt::runtime::gpu;
use wanrt::runtime::registry;

const TARGETS: [&str; 4] = ["sm_80", "sm_86", "sm_89", "sm_90a"];

#[test]
fn every_kernel_compiles_for_every_arch() {
    let (major, minor) = gpu::nvrtc_version().expect("libnvrtc must be on the library path (see README)");
    eprintln!("NVRTC {major}.{minor}");
    assert!(!registry::sources().is_empty(), "no kernels embedded");
    let mut failures = Vec::new();
    for src in registry::sources() {
        for target in TARGETS {
            match registry::compile(src.name, target) {
                Ok(out) => {
                    assert!(out.is_cubin && out.image.len() > 100, "{}: empty CUBIN for {target}", src.name);
                    if !out.log.is_empty() {
                        eprintln!("{} {target} log:\n{}", src.name, out.log);
                    }
                }
                Err(e) => failures.push(format!("{e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn compile_errors_carry_the_nvrtc_log() {
    gpu::nvrtc_version().expect("libnvrtc must be on the library path");
    let err = gpu::nvrtc_compile("broken.cu", "extern \"C\" __global__ void k() { undefined_name(); }", &[], "sm_80", &[])
        .err()
        .expect("a broken kernel must not compile");
    let msg = err.to_string();
    assert!(msg.contains("broken.cu") && msg.contains("undefined_name"), "{msg}");
}

#[test]
fn ptx_target_gives_ptx() {
    gpu::nvrtc_version().expect("libnvrtc must be on the library path");
    let src = registry::sources().first().expect("kernels embedded");
    let out = registry::compile(src.name, "compute_80").unwrap();
    assert!(!out.is_cubin);
    let text = String::from_utf8_lossy(&out.image);
    assert!(text.contains(".version") && text.ends_with('\0'), "PTX image must be NUL-terminated text");
}
