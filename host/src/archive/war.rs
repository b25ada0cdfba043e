//! Workflow archives (`.war`, torch-workflow-archiver's format): a zip with
//! `WAR-INF/MANIFEST.json` (`createdOn`, `archiverVersion`, `workflow: {workflowName,
//! specFile, handler}`) and the spec YAML, the handler and the extra files flat at its
//! root. Reading extracts with the same bounds as a model archive (no links, no `..`,
//! the size and entry limits); writing packs what `wasmserve workflow-archive` checked.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ArchiveError, ExtractLimits, check_member, extract_zip, file_name, io_err};

/// Where the manifest lives inside a workflow archive.
pub const WAR_MANIFEST_PATH: &str = "WAR-INF/MANIFEST.json";

/// `WAR-INF/MANIFEST.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarManifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver_version: Option<String>,
    pub workflow: WarWorkflow,
}

/// The `workflow` object of the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarWorkflow {
    pub workflow_name: String,
    /// The specification YAML, at the archive's root.
    pub spec_file: String,
    /// The function nodes' component (`.wasm`, a `pipeline` component) at the
    /// archive's root; none when every node is a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
}

/// A workflow archive extracted for serving.
#[derive(Debug)]
pub struct OpenedWar {
    pub manifest: WarManifest,
    /// The folder holding the archive's files (removed when this is dropped).
    pub dir: PathBuf,
    _extracted: tempfile::TempDir,
}

impl OpenedWar {
    /// Extracts the `.war` at `path` into a new folder under `work_dir` and checks its
    /// manifest: a valid name, the spec file present, the handler present if named.
    pub fn open(
        path: &Path,
        work_dir: &Path,
        limits: ExtractLimits,
    ) -> Result<OpenedWar, ArchiveError> {
        crate::fsutil::check_regular_file(path).map_err(io_err(path))?;
        std::fs::create_dir_all(work_dir).map_err(io_err(work_dir))?;
        let tmp = tempfile::Builder::new()
            .prefix("workflow-")
            .tempdir_in(work_dir)
            .map_err(io_err(work_dir))?;
        extract_zip(path, tmp.path(), limits).map_err(|e| match e {
            ArchiveError::NotAnArchive(p) => {
                ArchiveError::Invalid(format!("{p} is not a workflow archive (a .war zip)"))
            }
            e => e,
        })?;
        let manifest_path = tmp.path().join(WAR_MANIFEST_PATH);
        let text = match crate::fsutil::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArchiveError::Invalid(format!(
                    "the workflow archive has no {WAR_MANIFEST_PATH}; make it with \
                     `wasmserve workflow-archive` or torch-workflow-archiver"
                )));
            }
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let manifest = parse_manifest(&text)?;
        check_member(tmp.path(), "specFile", &manifest.workflow.spec_file)?;
        if let Some(h) = &manifest.workflow.handler {
            check_member(tmp.path(), "handler", h)?;
        }
        Ok(OpenedWar {
            manifest,
            dir: tmp.path().to_path_buf(),
            _extracted: tmp,
        })
    }

    /// The specification file's text.
    pub fn spec_text(&self) -> Result<String, ArchiveError> {
        let path = self.dir.join(&self.manifest.workflow.spec_file);
        crate::fsutil::read_to_string(&path).map_err(io_err(&path))
    }
}

/// Parses a workflow manifest; `workflow.workflowName` must be a valid name and
/// `workflow.specFile` present. torch-workflow-archiver writes an empty `handler`
/// when it had none: read as none.
pub fn parse_manifest(text: &str) -> Result<WarManifest, ArchiveError> {
    let mut m: WarManifest = serde_json::from_str(text)
        .map_err(|e| ArchiveError::BadManifest(format!("{WAR_MANIFEST_PATH}: {e}")))?;
    super::validate_model_name(&m.workflow.workflow_name)
        .map_err(|e| ArchiveError::BadManifest(format!("workflowName: {e}")))?;
    if m.workflow.spec_file.is_empty() {
        return Err(ArchiveError::BadManifest(
            "the manifest names no specFile".into(),
        ));
    }
    if m.workflow.handler.as_deref() == Some("") {
        m.workflow.handler = None;
    }
    Ok(m)
}

/// Writes `manifest` and `files` (flat at the root) as `export_dir/NAME.war`; refuses
/// to overwrite unless `force`. Returns the path written.
pub fn write_war(
    manifest: &WarManifest,
    files: &[PathBuf],
    export_dir: &Path,
    force: bool,
) -> Result<PathBuf, ArchiveError> {
    let out = export_dir.join(format!("{}.war", manifest.workflow.workflow_name));
    if out.exists() && !force {
        return Err(ArchiveError::Invalid(format!(
            "{} already exists; use -f to overwrite it",
            out.display()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let base = file_name(f)?;
        if !seen.insert(base.clone()) {
            return Err(ArchiveError::Invalid(format!(
                "two files would be stored as {base:?} at the archive's root"
            )));
        }
    }
    let text =
        serde_json::to_vec_pretty(manifest).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let zerr =
        |e: zip::result::ZipError| ArchiveError::Invalid(format!("writing the archive: {e}"));
    let tmp = tempfile::NamedTempFile::new_in(export_dir).map_err(io_err(export_dir))?;
    let mut zip = zip::ZipWriter::new(tmp.reopen().map_err(io_err(tmp.path()))?);
    zip.start_file(WAR_MANIFEST_PATH, options).map_err(zerr)?;
    zip.write_all(&text).map_err(io_err(&out))?;
    for f in files {
        zip.start_file(file_name(f)?, options).map_err(zerr)?;
        let mut src = std::fs::File::open(f).map_err(io_err(f))?;
        io::copy(&mut src, &mut zip).map_err(io_err(f))?;
    }
    zip.finish().map_err(zerr)?;
    tmp.persist(&out).map_err(|e| io_err(&out)(e.error))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_torch_workflow_archivers_manifest() {
        let m = parse_manifest(
            r#"{"createdOn": "01/02/2024 10:00:00", "workflow": {"workflowName": "wf",
                "specFile": "spec.yaml", "handler": "handler.py"}, "archiverVersion": "0.2.15"}"#,
        )
        .unwrap();
        assert_eq!(m.workflow.workflow_name, "wf");
        assert_eq!(m.workflow.handler.as_deref(), Some("handler.py"));
        for bad in [
            r#"{"workflow": {"workflowName": "a b", "specFile": "s.yaml"}}"#,
            r#"{"workflow": {"workflowName": "wf", "specFile": ""}}"#,
            r#"{"createdOn": "x"}"#,
        ] {
            assert!(parse_manifest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.yaml");
        std::fs::write(&spec, "dag:\n  a: []\n").unwrap();
        let manifest = WarManifest {
            created_on: None,
            description: None,
            archiver_version: Some("x".into()),
            workflow: WarWorkflow {
                workflow_name: "wf".into(),
                spec_file: "spec.yaml".into(),
                handler: None,
            },
        };
        let out = write_war(&manifest, std::slice::from_ref(&spec), dir.path(), false).unwrap();
        assert!(write_war(&manifest, &[spec], dir.path(), false).is_err());
        let war =
            OpenedWar::open(&out, &dir.path().join("work"), ExtractLimits::default()).unwrap();
        assert_eq!(war.spec_text().unwrap(), "dag:\n  a: []\n");
    }
}
