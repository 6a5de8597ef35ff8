//! Embeds every `kernels/*.cu` (and the `*.cuh` headers they include) into a generated registry with
//! a content hash, and warns about kernel files no launcher names.

use std::fmt::Write as _;
use std::path::Path;

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn rust_sources(dir: &Path, out: &mut String) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

fn main() {
    // The script belongs to the wanrt-runtime crate (runtime/Cargo.toml) and lives at the top level.
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap_or(&manifest).to_path_buf();
    let kdir = root.join("kernels");
    println!("cargo:rerun-if-changed={}", kdir.display());
    let mut files: Vec<_> = std::fs::read_dir(&kdir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let headers: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|x| x == "cuh")).collect();
    let sources: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|x| x == "cu")).collect();

    // Every header is available to every source; the hash covers them so a header edit recompiles.
    let mut header_hash = 0xcbf29ce484222325u64;
    let mut out = String::from("pub static HEADERS: &[(&str, &str)] = &[\n");
    for h in &headers {
        let name = h.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read(h).unwrap();
        header_hash = fnv1a(name.as_bytes(), fnv1a(&text, header_hash));
        writeln!(out, "    ({name:?}, include_str!({:?})),", h.display().to_string()).unwrap();
        println!("cargo:rerun-if-changed={}", h.display());
    }
    out.push_str("];\n\npub static SOURCES: &[KernelSource] = &[\n");
    let mut launchers = String::new();
    rust_sources(&root.join("runtime"), &mut launchers);
    rust_sources(&root.join("models"), &mut launchers);
    for s in &sources {
        let stem = s.file_stem().unwrap().to_str().unwrap();
        let text = std::fs::read(s).unwrap();
        let hash = fnv1a(&text, header_hash);
        writeln!(
            out,
            "    KernelSource {{ name: {stem:?}, source: include_str!({:?}), hash: {hash:#018x} }},",
            s.display().to_string()
        )
        .unwrap();
        println!("cargo:rerun-if-changed={}", s.display());
        if !launchers.contains(&format!("\"{stem}\"")) {
            println!("cargo:warning=kernels/{stem}.cu is not used by any launcher (no \"{stem}\" in runtime/ or models/)");
        }
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("kernel_sources.rs");
    std::fs::write(dest, out).unwrap();
    println!("cargo:rerun-if-changed={}", root.join("runtime").display());
    println!("cargo:rerun-if-changed={}", root.join("models").display());
}
