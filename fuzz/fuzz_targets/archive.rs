//! Fuzzes reading a model archive the way the server does: the input is the bytes of a
//! `.mar` file, opened with `wasmserve::archive::OpenedArchive::open` (zip extraction
//! with its path, link, size and entry-count checks, then the manifest), and the same
//! bytes as text through `parse_manifest`.
//!
//! Checks, beyond "no panic": nothing is written outside the extraction folder (the
//! archive is extracted under `run/a/b/c/inner`, and every level above must hold only
//! what the target put there), no links are created, a successful open names files
//! that exist inside its folder, and the temporary extraction is removed when the
//! archive is dropped or the open fails.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmserve::archive::{ExtractLimits, OpenedArchive, parse_manifest};

/// Small limits, so that the fuzzer can reach them (and a zip bomb costs at most this).
const LIMITS: ExtractLimits = ExtractLimits {
    max_total_bytes: 8 << 20,
    max_entries: 64,
};

/// Where the runs go: a RAM disk when there is one. Each run's folder is removed after it.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
    })
}

/// The only entries allowed anywhere under `run` while the archive is open.
fn check_tree(run: &Path, inner: &Path, archive: &Path) {
    let expected_dirs = [run.join("a"), run.join("a/b"), run.join("a/b/c"), inner.to_path_buf()];
    let mut stack = vec![run.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("symlink_metadata");
            assert!(!meta.file_type().is_symlink(), "a link was created: {}", path.display());
            let allowed = path == archive
                || expected_dirs.contains(&path)
                || path.strip_prefix(inner).is_ok_and(|rest| {
                    rest.components().next().is_some_and(|c| {
                        c.as_os_str().to_string_lossy().starts_with("model-")
                    })
                });
            assert!(allowed, "something was written outside the extraction folder: {}", path.display());
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The manifest parser on the raw text.
    let text = String::from_utf8_lossy(data);
    if let Ok(manifest) = parse_manifest(&text) {
        // What parses serializes and parses again to the same model.
        let again = serde_json::to_string(&manifest).expect("serialize a parsed manifest");
        let back = parse_manifest(&again).expect("a serialized manifest parses again");
        assert_eq!(back.model.model_name, manifest.model.model_name);
        assert_eq!(back.model.model_version, manifest.model.model_version);
    }

    // The archive reader, into a fresh folder.
    let run = tempfile::Builder::new()
        .prefix("wasmserve-fuzz-archive-")
        .tempdir_in(base())
        .expect("run folder");
    let inner = run.path().join("a/b/c/inner");
    std::fs::create_dir_all(&inner).expect("inner folder");
    let archive = run.path().join("model.mar");
    std::fs::write(&archive, data).expect("write the archive");

    match OpenedArchive::open(&archive, &inner, LIMITS) {
        Ok(opened) => {
            assert!(opened.dir.starts_with(&inner), "extracted into {}", opened.dir.display());
            check_tree(run.path(), &inner, &archive);
            let reparsed = parse_manifest(&opened.manifest_text).expect("the manifest parses again");
            assert_eq!(reparsed.model.model_name, opened.manifest.model.model_name);
            for name in [&opened.manifest.model.serialized_file, &opened.manifest.model.config_file]
                .into_iter()
                .flatten()
            {
                let path = opened.dir.join(name);
                assert!(path.starts_with(&opened.dir) && path.is_file(), "{name:?} is not in the archive");
            }
            drop(opened);
        }
        Err(_) => check_tree(run.path(), &inner, &archive),
    }
    // The temporary extraction is gone once the archive is dropped (or the open failed).
    let left: Vec<_> = std::fs::read_dir(&inner).expect("read inner").collect();
    assert!(left.is_empty(), "the extraction was left behind: {left:?}");
});
