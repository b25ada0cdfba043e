//! Model archives (`.mar`): the manifest, writing an archive (the `archive` command) and
//! reading one safely into a directory the handler can see.
//!
//! The format is TorchServe's: a zip with the artifacts flat at its root and
//! `MAR-INF/MANIFEST.json`. A model store may also hold an archive unpacked into a
//! directory (`--archive-format no-archive`). Reading refuses entries that would land
//! outside the target (`..`, absolute paths), links, and archives that inflate past a
//! size or entry-count limit.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the manifest lives inside an archive.
pub const MANIFEST_PATH: &str = "MAR-INF/MANIFEST.json";

/// `MAR-INF/MANIFEST.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    /// `wasm` for archives made by wasmserve; TorchServe's own say `python`.
    pub runtime: String,
    pub model: ManifestModel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver_version: Option<String>,
}

/// The `model` object of the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestModel {
    pub model_name: String,
    pub model_version: String,
    /// The TorchScript file, at the archive's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialized_file: Option<String>,
    /// A `.wasm` component at the archive's root, or a built-in handler's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// `model-config.yaml` (or another name), at the archive's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// Keys TorchServe's archiver writes that wasmserve does not use (`modelFile`,
    /// `requirementsFile`, …), kept so that a manifest round-trips.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Errors of reading and writing archives; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{0} is not a model archive: it is neither a zip file, a .tar.gz nor a directory with {MANIFEST_PATH}"
    )]
    NotAnArchive(String),
    #[error("the archive is damaged: {0}")]
    BadZip(String),
    #[error(
        "the archive has no {MANIFEST_PATH}; make it with `wasmserve archive` or torch-model-archiver"
    )]
    NoManifest,
    #[error("{MANIFEST_PATH} is malformed: {0}")]
    BadManifest(String),
    #[error("the archive entry {0:?} escapes the archive (absolute path or `..`); refusing it")]
    UnsafePath(String),
    #[error("the archive entry {0:?} is a link; archives may not contain links")]
    Link(String),
    #[error("the archive inflates past {0} bytes (max_archive_inflated_size); refusing it")]
    TooLarge(u64),
    #[error("the archive has more than {0} entries (max_archive_entries); refusing it")]
    TooManyEntries(usize),
    #[error("the manifest names {field} {name:?}, which is not in the archive")]
    MissingFile { field: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
}

pub mod handler;
pub mod python;
mod tgz;
pub mod war;
pub mod war_command;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Bounds on what reading an archive may unpack.
///
/// Defaults: 4 GiB inflated in total, 10,000 entries.
#[derive(Clone, Copy, Debug)]
pub struct ExtractLimits {
    /// Most bytes all entries together may inflate to.
    pub max_total_bytes: u64,
    /// Most entries the zip may hold.
    pub max_entries: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 4 << 30,
            max_entries: 10_000,
        }
    }
}

/// An archive opened for serving: its files in `dir`, its manifest checked.
#[derive(Debug)]
pub struct OpenedArchive {
    pub manifest: Manifest,
    /// The raw manifest text, passed to the handler's `init`.
    pub manifest_text: String,
    /// The directory holding the archive's files.
    pub dir: PathBuf,
    /// Keeps a temporary extraction alive; `None` for an unpacked archive directory.
    _extracted: Option<tempfile::TempDir>,
}

impl OpenedArchive {
    /// Opens `path`: a `.mar` zip (extracted into a new directory under `work_dir`) or a
    /// directory holding an unpacked archive.
    pub fn open(
        path: &Path,
        work_dir: &Path,
        limits: ExtractLimits,
    ) -> Result<OpenedArchive, ArchiveError> {
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        if !meta.is_dir() {
            // Refused before it is opened for reading: a FIFO would block the reader.
            crate::fsutil::check_regular_file(path).map_err(io_err(path))?;
        }
        let (dir, extracted) = if meta.is_dir() {
            (path.to_path_buf(), None)
        } else {
            std::fs::create_dir_all(work_dir).map_err(io_err(work_dir))?;
            let tmp = tempfile::Builder::new()
                .prefix("model-")
                .tempdir_in(work_dir)
                .map_err(io_err(work_dir))?;
            let root = if tgz::is_gzip(path) {
                tgz::extract(path, tmp.path(), limits)?
            } else {
                extract_zip(path, tmp.path(), limits)?;
                tmp.path().to_path_buf()
            };
            (root, Some(tmp))
        };
        let manifest_path = dir.join(MANIFEST_PATH);
        let manifest_text = match crate::fsutil::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ArchiveError::NoManifest),
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let manifest = parse_manifest(&manifest_text)?;
        for (field, name) in [
            ("serializedFile", &manifest.model.serialized_file),
            ("configFile", &manifest.model.config_file),
        ] {
            if let Some(name) = name {
                check_member(&dir, field, name)?;
            }
        }
        if let Some(handler) = manifest
            .model
            .handler
            .as_ref()
            .filter(|h| h.ends_with(".wasm"))
        {
            check_member(&dir, "handler", handler)?;
        }
        Ok(OpenedArchive {
            manifest,
            manifest_text,
            dir,
            _extracted: extracted,
        })
    }
}

fn check_member(dir: &Path, field: &'static str, name: &str) -> Result<(), ArchiveError> {
    let safe = Path::new(name)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !safe || !dir.join(name).is_file() {
        return Err(ArchiveError::MissingFile {
            field,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Parses and checks a manifest: `runtime`, `model.modelName` and `model.modelVersion`
/// are required.
pub fn parse_manifest(text: &str) -> Result<Manifest, ArchiveError> {
    let manifest: Manifest =
        serde_json::from_str(text).map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
    validate_model_name(&manifest.model.model_name).map_err(ArchiveError::BadManifest)?;
    validate_version(&manifest.model.model_version).map_err(ArchiveError::BadManifest)?;
    Ok(manifest)
}

fn extract_zip(path: &Path, dest: &Path, limits: ExtractLimits) -> Result<(), ArchiveError> {
    let file = crate::fsutil::open_regular(path).map_err(io_err(path))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| match e {
        zip::result::ZipError::InvalidArchive(_) | zip::result::ZipError::UnsupportedArchive(_) => {
            ArchiveError::NotAnArchive(path.display().to_string())
        }
        other => ArchiveError::BadZip(other.to_string()),
    })?;
    if zip.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries(limits.max_entries));
    }
    // The sizes the archive declares, before inflating anything: an honest bomb is
    // refused here; a lying one by the byte count below.
    let mut declared: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| ArchiveError::BadZip(e.to_string()))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_total_bytes {
        return Err(ArchiveError::TooLarge(limits.max_total_bytes));
    }
    let mut written: u64 = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| ArchiveError::BadZip(e.to_string()))?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {i}"));
        if entry.is_symlink() {
            return Err(ArchiveError::Link(name));
        }
        // `enclosed_name` would quietly make an absolute name relative: refuse it.
        if name.starts_with(['/', '\\'])
            || name.get(1..3) == Some(":\\")
            || name.get(1..3) == Some(":/")
        {
            return Err(ArchiveError::UnsafePath(name));
        }
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| ArchiveError::UnsafePath(name.clone()))?;
        let target = dest.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
            continue;
        }
        write_entry(&mut entry, &target, &name, &mut written, limits)?;
    }
    Ok(())
}

/// Writes one archive entry to `target` (its folders made first), counting its bytes
/// into `written` as they are written: past `max_total_bytes`, whatever the entry
/// declared, the archive is refused.
fn write_entry(
    entry: &mut impl io::Read,
    target: &Path,
    name: &str,
    written: &mut u64,
    limits: ExtractLimits,
) -> Result<(), ArchiveError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut out = File::create(target).map_err(io_err(target))?;
    let budget = limits.max_total_bytes - *written;
    let n = io::copy(&mut entry.take(budget + 1), &mut out)
        .map_err(|e| ArchiveError::BadZip(format!("{name}: {e}")))?;
    if n > budget {
        return Err(ArchiveError::TooLarge(limits.max_total_bytes));
    }
    *written += n;
    Ok(())
}

/// TorchServe's rule for model names: `^[A-Za-z0-9][A-Za-z0-9_\-.]*$`.
/// The longest model name or version: a file name (255 bytes) with room for the
/// suffixes the server and the archiver add.
pub const MAX_NAME_LEN: usize = 128;

fn too_long(what: &str, name: &str) -> Option<String> {
    (name.len() > MAX_NAME_LEN).then(|| {
        format!(
            "{what} of {} characters is too long: at most {MAX_NAME_LEN}",
            name.chars().count()
        )
    })
}

pub fn validate_model_name(name: &str) -> Result<(), String> {
    if let Some(e) = too_long("a model name", name) {
        return Err(e);
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "model name {name:?} is not valid: it must start with a letter or digit and hold only letters, digits, '_', '-' and '.'"
        ))
    }
}

/// A version is a non-empty run of letters, digits, '.', '_' and '-'.
pub fn validate_version(version: &str) -> Result<(), String> {
    if let Some(e) = too_long("a version", version) {
        return Err(e);
    }
    if !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(format!(
            "model version {version:?} is not valid: use letters, digits, '.', '_' and '-', e.g. 1.0"
        ))
    }
}

/// How `write_archive` lays the archive out (TorchServe's `--archive-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// A deflate-compressed zip, `NAME.mar`.
    Default,
    /// An uncompressed zip, `NAME.mar` (faster to open; TorchScript files compress poorly).
    ZipStore,
    /// A directory `NAME/` with the files and `MAR-INF/` unpacked.
    NoArchive,
    /// A gzip-compressed tar, `NAME.tar.gz`, the files under a folder `NAME/`.
    Tgz,
}

/// What goes into an archive.
#[derive(Debug)]
pub struct ArchiveSpec {
    pub manifest: Manifest,
    /// Files placed at the archive's root, under their file names.
    pub files: Vec<PathBuf>,
}

/// Writes `spec` into `export_dir` as `NAME.mar` (or the directory `NAME`). Refuses to
/// overwrite unless `force`. Returns the path written.
pub fn write_archive(
    spec: &ArchiveSpec,
    export_dir: &Path,
    format: ArchiveFormat,
    force: bool,
) -> Result<PathBuf, ArchiveError> {
    let name = &spec.manifest.model.model_name;
    let out = match format {
        ArchiveFormat::NoArchive => export_dir.join(name),
        ArchiveFormat::Tgz => export_dir.join(format!("{name}.tar.gz")),
        _ => export_dir.join(format!("{name}.mar")),
    };
    if out.exists() && !force {
        return Err(ArchiveError::Invalid(format!(
            "{} already exists; use -f to overwrite it",
            out.display()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &spec.files {
        let base = file_name(f)?;
        if !seen.insert(base.clone()) {
            return Err(ArchiveError::Invalid(format!(
                "two files would be stored as {base:?} at the archive's root"
            )));
        }
    }
    let manifest = serde_json::to_vec_pretty(&spec.manifest)
        .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
    match format {
        ArchiveFormat::Tgz => tgz::write(&out, name, &manifest, &spec.files)?,
        ArchiveFormat::NoArchive => {
            if out.exists() {
                std::fs::remove_dir_all(&out).map_err(io_err(&out))?;
            }
            let mar_inf = out.join("MAR-INF");
            std::fs::create_dir_all(&mar_inf).map_err(io_err(&mar_inf))?;
            std::fs::write(out.join(MANIFEST_PATH), &manifest).map_err(io_err(&out))?;
            for f in &spec.files {
                let target = out.join(file_name(f)?);
                std::fs::copy(f, &target).map_err(io_err(f))?;
            }
        }
        ArchiveFormat::Default | ArchiveFormat::ZipStore => {
            let method = if format == ArchiveFormat::Default {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            };
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .large_file(true);
            let tmp = tempfile::NamedTempFile::new_in(export_dir).map_err(io_err(export_dir))?;
            let mut zip = zip::ZipWriter::new(tmp.reopen().map_err(io_err(tmp.path()))?);
            let zerr = |e: zip::result::ZipError| {
                ArchiveError::Invalid(format!("writing the archive: {e}"))
            };
            zip.start_file(MANIFEST_PATH, options).map_err(zerr)?;
            zip.write_all(&manifest).map_err(io_err(&out))?;
            for f in &spec.files {
                zip.start_file(file_name(f)?, options).map_err(zerr)?;
                let mut src = File::open(f).map_err(io_err(f))?;
                io::copy(&mut src, &mut zip).map_err(io_err(f))?;
            }
            zip.finish().map_err(zerr)?;
            tmp.persist(&out).map_err(|e| io_err(&out)(e.error))?;
        }
    }
    Ok(out)
}

fn file_name(path: &Path) -> Result<String, ArchiveError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .ok_or_else(|| ArchiveError::Invalid(format!("{} has no usable file name", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_torchserve() {
        for ok in ["mobilenet", "resnet-18", "a.b_c", "9lives"] {
            assert!(validate_model_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".hidden", "a b", "a/b", "ü"] {
            assert!(validate_model_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifests_need_name_version_and_runtime() {
        let ok = r#"{"runtime": "python", "model": {"modelName": "m", "modelVersion": "1.0", "handler": "image_classifier", "modelFile": "x.py"}}"#;
        let m = parse_manifest(ok).unwrap();
        assert_eq!(m.model.other["modelFile"], "x.py");
        for bad in [
            r#"{"model": {"modelName": "m", "modelVersion": "1"}}"#,
            r#"{"runtime": "wasm", "model": {"modelName": "m"}}"#,
            "[]",
        ] {
            assert!(
                matches!(parse_manifest(bad), Err(ArchiveError::BadManifest(_))),
                "{bad}"
            );
        }
    }
}
