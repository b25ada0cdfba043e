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
        super::write_entry(&mut entry, &target, &name, &mut written, limits)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.tar.gz` of `entries` (name, contents; a `None` contents is a symlink).
    fn tgz(dir: &Path, entries: &[(&str, Option<&[u8]>)]) -> PathBuf {
        let path = dir.join("a.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    // Written raw, so that names like `../x` reach the reader as given.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    tar.append(&h, *d).unwrap();
                }
                None => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name("/etc/passwd").unwrap();
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    tar.append(&h, &[][..]).unwrap();
                }
            }
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    fn open(
        entries: &[(&str, Option<&[u8]>)],
        limits: ExtractLimits,
    ) -> Result<PathBuf, ArchiveError> {
        let dir = tempfile::tempdir().unwrap();
        let file = tgz(dir.path(), entries);
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        extract(&file, &dest, limits).map(|p| p.strip_prefix(&dest).unwrap().to_path_buf())
    }

    #[test]
    fn reads_torchserves_layout_and_the_root_layout() {
        let manifest: &[u8] = b"{}";
        let nested = open(
            &[("m/MAR-INF/MANIFEST.json", Some(manifest))],
            ExtractLimits::default(),
        );
        assert_eq!(nested.unwrap(), PathBuf::from("m"));
        let flat = open(
            &[("MAR-INF/MANIFEST.json", Some(manifest))],
            ExtractLimits::default(),
        );
        assert_eq!(flat.unwrap(), PathBuf::new());
        assert!(matches!(
            open(&[("x.txt", Some(manifest))], ExtractLimits::default()),
            Err(ArchiveError::NoManifest)
        ));
    }

    #[test]
    fn refuses_links_escapes_and_bombs() {
        let limits = ExtractLimits::default();
        assert!(matches!(
            open(&[("m/link", None)], limits),
            Err(ArchiveError::Link(_))
        ));
        assert!(matches!(
            open(&[("../escape", Some(b"x"))], limits),
            Err(ArchiveError::UnsafePath(_))
        ));
        assert!(matches!(
            open(&[("/abs", Some(b"x"))], limits),
            Err(ArchiveError::UnsafePath(_))
        ));
        let small = ExtractLimits {
            max_total_bytes: 4,
            max_entries: 10,
        };
        assert!(matches!(
            open(&[("m/big", Some(b"0123456789"))], small),
            Err(ArchiveError::TooLarge(4))
        ));
        let few = ExtractLimits {
            max_total_bytes: 1 << 20,
            max_entries: 1,
        };
        assert!(matches!(
            open(&[("a", Some(b"1")), ("b", Some(b"2"))], few),
            Err(ArchiveError::TooManyEntries(1))
        ));
    }
}
