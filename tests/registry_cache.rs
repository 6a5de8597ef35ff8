//! The on-disk kernel cache: entries are reused when valid and rebuilt when corrupt or truncated.
//! Needs libnvrtc, no GPU. Its own binary because it sets WANRT_KERNEL_CACHE for the process.

use wanrt::runtime::registry;

#[test]
fn corrupt_and_truncated_entries_are_rebuilt() {
    let dir = std::env::temp_dir().join(format!("wanrt-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("WANRT_KERNEL_CACHE", &dir);

    let (fresh, is_cubin) = registry::cached_image("cast", "sm_80").expect("NVRTC must be installed");
    assert!(is_cubin);
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "one cache entry written: {entries:?}");
    let entry = &entries[0];
    let name = entry.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("cast-sm_80-") && name.ends_with(".cubin"), "{name}");

    // A valid entry is returned as is.
    let (again, _) = registry::cached_image("cast", "sm_80").unwrap();
    assert_eq!(again, fresh);

    // Flip a payload byte: the checksum catches it and the entry is rebuilt.
    let mut bytes = std::fs::read(entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(entry, &bytes).unwrap();
    let (rebuilt, _) = registry::cached_image("cast", "sm_80").unwrap();
    assert_eq!(rebuilt, fresh, "a corrupt entry must be recompiled, not trusted");
    assert_eq!(std::fs::read(entry).unwrap()[48..], fresh[..], "the rebuilt entry replaces the corrupt one");

    // Truncate it.
    std::fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(registry::cached_image("cast", "sm_80").unwrap().0, fresh);

    // Garbage of the right length without the magic.
    std::fs::write(entry, vec![0u8; bytes.len()]).unwrap();
    assert_eq!(registry::cached_image("cast", "sm_80").unwrap().0, fresh);

    // Another target is another entry.
    registry::cached_image("cast", "sm_90a").unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_kernel_file_is_an_error() {
    let e = registry::cached_image("does_not_exist", "sm_80").unwrap_err();
    assert!(e.to_string().contains("does_not_exist"), "{e}");
}
