//! Architecture rules: `runtime/` never depends on `models/`; `unsafe` lives in runtime/gpu/; the
//! environment is read in runtime/settings.rs only; kernels are named by the kernel table only.

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

/// Rust files of `runtime/` and `models/` as (path relative to the repository, text).
fn sources() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("runtime"), &mut files);
    rust_files(&root.join("models"), &mut files);
    assert!(!files.is_empty());
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// Code of a line without its `//` comment.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

#[test]
fn environment_is_read_in_settings_only() {
    const ALLOWED: [&str; 1] = ["runtime/settings.rs"];
    for (path, text) in sources() {
        if ALLOWED.contains(&path.as_str()) {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            let c = code(line);
            for needle in ["env::var(", "env::var_os(", "env::vars("] {
                assert!(
                    !c.contains(needle),
                    "{path}:{}: reads the environment ({needle}); add a field to runtime/settings.rs instead",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn kernels_are_named_only_by_the_kernel_table() {
    // The table (runtime/gpu/kernels.rs) declares every kernel (file, entry names, parameters) and is
    // the only caller of the registry's lookup by name; launches go through its typed launchers, so
    // argument lists are built in runtime/gpu/ only.
    for (path, text) in sources() {
        let table = path == "runtime/gpu/kernels.rs" || path == "runtime/registry.rs";
        let gpu = path.starts_with("runtime/gpu/") || path == "runtime/registry.rs";
        for (i, line) in text.lines().enumerate() {
            let c = code(line);
            for needle in ["registry::function(", "function(\"", ".function("] {
                assert!(table || !c.contains(needle), "{path}:{}: a kernel looked up by name (`{needle}`) outside runtime/gpu/kernels.rs", i + 1);
            }
            for needle in ["KernelArgs", "get_function("] {
                assert!(gpu || !c.contains(needle), "{path}:{}: `{needle}` outside runtime/gpu/", i + 1);
            }
        }
    }
}
