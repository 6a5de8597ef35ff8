//! Background preparation of the kernel cache (`registry::prepare`): every kernel file compiled for a
//! target, each once, into the disk cache, with the same image a compile on first use gives; a second
//! call for the target starts nothing; `finish` stops taking files. Needs libnvrtc, no GPU. Its own
//! binary because it sets WANRT_KERNEL_CACHE for the process.

use std::path::Path;
use std::time::Instant;

use wanrt::runtime::registry;

fn entries(dir: &Path, target: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.contains(&format!("-{target}-")) && n.ends_with(".cubin"));
    names.sort();
    names
}

#[test]
fn prepare_compiles_every_file_once() {
    let dir = std::env::temp_dir().join(format!("wanrt-prepare-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("WANRT_KERNEL_CACHE", &dir);
    registry::compile("cast", "sm_90a").expect("NVRTC must be installed");

    let t0 = Instant::now();
    let first = registry::prepare("sm_90a", 2);
    assert_eq!(first.threads(), 2);
    first.wait();
    eprintln!("every kernel file for sm_90a on 2 threads: {:.1} s", t0.elapsed().as_secs_f64());
    let names = entries(&dir, "sm_90a");
    let files: Vec<&str> = registry::sources().iter().map(|s| s.name).collect();
    assert_eq!(names.len(), files.len(), "one cache entry per kernel file: {names:?}");
    for f in &files {
        assert!(names.iter().any(|n| n.starts_with(&format!("{f}-sm_90a-"))), "no entry for {f}: {names:?}");
    }
    // The prepared image is the one a compile on first use gives.
    let (cached, is_cubin) = registry::cached_image("norm", "sm_90a").unwrap();
    assert!(is_cubin);
    assert_eq!(cached, registry::compile("norm", "sm_90a").unwrap().image, "prepared and fresh images of norm differ");

    // Once per target: a second call starts no thread.
    let again = registry::prepare("sm_90a", 2);
    assert_eq!(again.threads(), 0, "a second prepare for sm_90a started threads");
    again.wait();
    assert_eq!(entries(&dir, "sm_90a"), names);

    // finish: the worker stops after the file it is on, far short of every file.
    let p = registry::prepare("sm_80", 1);
    assert_eq!(p.threads(), 1);
    p.finish();
    let done = entries(&dir, "sm_80").len();
    assert!(done < files.len(), "finish let {done} of {} files compile", files.len());

    let _ = std::fs::remove_dir_all(&dir);
}
