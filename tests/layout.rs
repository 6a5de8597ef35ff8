//! Architecture rule: `runtime/` never depends on `models/`.

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn runtime_does_not_use_models() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for needle in ["crate::models", "wanrt::models", "super::super::models"] {
            assert!(!text.contains(needle), "{} refers to {needle}: runtime/ must not depend on models/", f.display());
        }
    }
}

#[test]
fn unsafe_lives_in_the_gpu_layer_with_safety_comments() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("runtime"), &mut files);
    rust_files(&root.join("models"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // The one exception: the checkpoint loader's read-only mmap (memmap2 has no safe constructor).
        let in_gpu = f.components().any(|c| c.as_os_str() == "gpu") || f.ends_with("runtime/weights/safetensors.rs");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {") || code.contains("unsafe impl")) {
                continue;
            }
            assert!(in_gpu, "{}:{}: `unsafe` outside runtime/gpu/", f.display(), i + 1);
            let window = &lines[i.saturating_sub(3)..=i];
            assert!(
                window.iter().any(|l| l.contains("SAFETY:")),
                "{}:{}: unsafe block without a `// SAFETY:` line just above",
                f.display(),
                i + 1
            );
        }
    }
}
