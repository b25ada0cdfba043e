//! `wasmserve workflow-archive`: torch-workflow-archiver's command. Checks what it
//! packs as a server would (the specification parses into a DAG, function nodes have
//! a handler, the handler is a `pipeline` component) and writes `NAME.war`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::war::{WarManifest, WarWorkflow, write_war};
use crate::core::workflow::register::{check_spec, handler_refusal};
use crate::sandbox::World;

/// torch-workflow-archiver's flags.
#[derive(clap::Args, Debug)]
pub struct WorkflowArchiveArgs {
    /// The workflow's name: the archive is NAME.war.
    #[arg(long)]
    pub workflow_name: String,
    /// The workflow specification (YAML: `models:` and `dag:`).
    #[arg(long)]
    pub spec_file: PathBuf,
    /// The function nodes: one `pipeline` component (.wasm, or a wasm32-wasip1 module
    /// made into one here) whose `handle` runs the node the request's
    /// x-wasmserve-workflow-node header names. None when every node is a model.
    #[arg(long)]
    pub handler: Option<PathBuf>,
    /// More files to ship at the archive's root, comma-separated (e.g. the models'
    /// .mar files, found there before the model store).
    #[arg(long, value_delimiter = ',')]
    pub extra_files: Vec<PathBuf>,
    /// Where to write NAME.war (default: the current folder).
    #[arg(long, default_value = ".")]
    pub export_path: PathBuf,
    /// Overwrite an existing NAME.war.
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Checks and writes the archive; its path.
pub fn run(args: &WorkflowArchiveArgs) -> anyhow::Result<PathBuf> {
    super::validate_model_name(&args.workflow_name).map_err(anyhow::Error::msg)?;
    let must_exist = |p: &PathBuf, what: &str| -> anyhow::Result<()> {
        if !p.is_file() {
            bail!("{what} {} does not exist or is not a file", p.display());
        }
        Ok(())
    };
    must_exist(&args.spec_file, "--spec-file")?;
    for f in &args.extra_files {
        must_exist(f, "--extra-files entry")?;
    }
    if !args.export_path.is_dir() {
        bail!(
            "--export-path {} is not a folder",
            args.export_path.display()
        );
    }
    let name_of = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let text = std::fs::read_to_string(&args.spec_file)
        .with_context(|| format!("reading {}", args.spec_file.display()))?;
    let handler_name = args.handler.as_ref().map(name_of);
    if let Some(why) = handler_name.as_deref().and_then(handler_refusal) {
        bail!("--handler: {why}");
    }
    let (_, _, functions) = check_spec(&name_of(&args.spec_file), &text, handler_name.as_deref())
        .map_err(|e| anyhow::anyhow!("--spec-file: {e}"))?;
    let mut files = vec![args.spec_file.clone()];
    // Kept until the archive is written: a component made here from a core module.
    let mut prepared = None;
    if let Some(h) = &args.handler {
        let p = super::handler::prepare(&h.display().to_string())?;
        if p.world() != World::Pipeline {
            bail!(
                "--handler {}: it is a `handler` component; a workflow's function nodes are \
                 the `handle` of a `pipeline` component (wit/handler.wit)",
                h.display()
            );
        }
        if functions.is_empty() {
            eprintln!(
                "wasmserve: warning: every node of the DAG is a model; the handler is packed but not used"
            );
        }
        files.push(p.file().map(PathBuf::from).unwrap_or_else(|| h.clone()));
        prepared = Some(p);
    }
    files.extend(args.extra_files.iter().cloned());
    let manifest = WarManifest {
        created_on: Some(chrono::Local::now().format("%d/%m/%Y %H:%M:%S").to_string()),
        description: None,
        archiver_version: Some(env!("CARGO_PKG_VERSION").into()),
        workflow: WarWorkflow {
            workflow_name: args.workflow_name.clone(),
            spec_file: name_of(&args.spec_file),
            handler: prepared.as_ref().map(|p| p.name().to_string()),
        },
    };
    let out = write_war(&manifest, &files, &args.export_path, args.force)?;
    drop(prepared);
    Ok(out)
}
