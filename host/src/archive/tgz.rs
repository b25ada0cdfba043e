//! TorchServe's `tgz` archive format: `NAME.tar.gz` holding the archive's files,
//! `MAR-INF/MANIFEST.json` among them, under a top-level folder `NAME/` (as
//! torch-model-archiver writes it) or at the root. Read with the same bounds as a zip:
//! regular files and folders only (no links, devices or FIFOs), no absolute names or
//! `..`, at most `max_entries` entries and `max_total_bytes` unpacked, counted as they
//! are written.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};

use super::{ArchiveError, ExtractLimits, MANIFEST_PATH, io_err};

/// Whether the file at `path` is gzip-compressed (its first two bytes).
pub fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    crate::fsutil::open_regular(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
}

/// Unpacks `path` into `dest`; returns the folder that holds `MAR-INF` (`dest`, or
/// the single top-level folder).
pub fn extract(path: &Path, dest: &Path, limits: ExtractLimits) -> Result<PathBuf, ArchiveError> {
    let file = crate::fsutil::open_regular(path).map_err(io_err(path))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let bad = |e: io::Error| ArchiveError::BadZip(format!("reading the .tar.gz: {e}"));
    let mut written: u64 = 0;
    for (i, entry) in tar.entries().map_err(bad)?.enumerate() {
        if i >= limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let mut entry = entry.map_err(bad)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(ArchiveError::Link(name));
        }
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        let rel = PathBuf::from(&name);
        if rel.as_os_str().is_empty()
            || !rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ArchiveError::UnsafePath(name));
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
            continue;
        }
        if !kind.is_file() {
            return Err(ArchiveError::Invalid(format!(
                "the archive entry {name:?} is not a regular file or a folder"
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut out = File::create(&target).map_err(io_err(&target))?;
        let budget = limits.max_total_bytes - written;
        let n = io::copy(&mut (&mut entry).take(budget + 1), &mut out)
            .map_err(|e| ArchiveError::BadZip(format!("{name}: {e}")))?;
        if n > budget {
            return Err(ArchiveError::TooLarge(limits.max_total_bytes));
        }
        written += n;
    }
    if dest.join(MANIFEST_PATH).is_file() {
        return Ok(dest.to_path_buf());
    }
    let mut top = std::fs::read_dir(dest)
        .map_err(io_err(dest))?
        .filter_map(|e| e.ok())
        .map(|e| e.path());
    match (top.next(), top.next()) {
        (Some(only), None) if only.join(MANIFEST_PATH).is_file() => Ok(only),
        _ => Err(ArchiveError::NoManifest),
    }
}

/// Writes `manifest` and `files` as `out` (`NAME.tar.gz`), under the folder `name/`.
pub fn write(
    out: &Path,
    name: &str,
    manifest: &[u8],
    files: &[PathBuf],
) -> Result<(), ArchiveError> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    let gz = flate2::write::GzEncoder::new(
        tmp.reopen().map_err(io_err(tmp.path()))?,
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let err = |e: io::Error| ArchiveError::Invalid(format!("writing the archive: {e}"));
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{name}/{MANIFEST_PATH}"), manifest)
        .map_err(err)?;
    for f in files {
        let base = super::file_name(f)?;
        let mut src = File::open(f).map_err(io_err(f))?;
        tar.append_file(format!("{name}/{base}"), &mut src)
            .map_err(err)?;
    }
    tar.into_inner().map_err(err)?.finish().map_err(err)?;
    tmp.persist(out).map_err(|e| io_err(out)(e.error))?;
    Ok(())
}
