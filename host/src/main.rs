//! `wasmserve`: the command line. `archive` packs a model archive, `start` runs the
//! server (in the background unless `--foreground`), `stop` stops a background server.

use wasmserve::{archive, config, daemon, scaffold, server};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A TorchServe-compatible model server: TorchScript models in native libtorch,
/// request handlers as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "wasmserve", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Packs a TorchScript model and a handler into a model archive (NAME.mar).
    Archive(ArchiveArgs),
    /// Starts the server (in the background; --foreground to stay attached).
    Start(server::StartArgs),
    /// Stops the server started in the background.
    Stop,
    /// Packs a workflow (spec YAML, function component, extra files) into NAME.war.
    WorkflowArchive(archive::war_command::WorkflowArchiveArgs),
    /// Handler projects: `wasmserve handler new NAME` writes a ready Rust handler.
    #[command(subcommand)]
    Handler(HandlerCommand),
}

#[derive(Subcommand)]
enum HandlerCommand {
    /// Writes a new Rust handler project that builds as it is, with the SDK and the WIT
    /// it needs inside it (this binary carries them).
    New {
        /// The handler's name (also the crate's and, by default, the model's).
        name: String,
        /// Where to create the project folder (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// What to build for: wasm32-wasip2 gives a component; wasm32-wasip1 (once
        /// wasm32-wasi) a core module, made into a component by `wasmserve archive`.
        #[arg(long, value_enum, default_value_t)]
        target: scaffold::Target,
        /// Depend on this wasmserve-handler checkout instead of the SDK this binary
        /// carries (for work on the SDK itself).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ArchiveArgs {
    /// The model's name: letters, digits, '_', '-', '.', starting with a letter or digit.
    #[arg(long)]
    model_name: String,
    /// The model's version, e.g. 1.0.
    #[arg(short = 'v', long)]
    version: String,
    /// The TorchScript file (torch.jit.save); none for a pipeline, which calls the
    /// models its model-config.yaml declares.
    #[arg(long)]
    serialized_file: Option<PathBuf>,
    /// The handler: a component (.wasm, built for wasm32-wasip2), a core module built
    /// for wasm32-wasip1 (made into a component here), a Python handler (.py, built
    /// with componentize-py), or a built-in handler's name (image_classifier,
    /// image_segmenter, object_detector, text_classifier, base_handler).
    #[arg(long)]
    handler: String,
    /// More files to ship at the archive's root, comma-separated (e.g. index_to_name.json).
    #[arg(long, value_delimiter = ',')]
    extra_files: Vec<PathBuf>,
    /// A model-config.yaml with the model's settings.
    #[arg(short = 'c', long)]
    config_file: Option<PathBuf>,
    /// Where to write the archive (default: the current folder).
    #[arg(long, default_value = ".")]
    export_path: PathBuf,
    /// default: a compressed .mar; zip-store: an uncompressed .mar; no-archive: a folder; tgz: NAME.tar.gz.
    #[arg(long, value_enum, default_value = "default")]
    archive_format: archive::ArchiveFormat,
    /// Overwrite an existing archive.
    #[arg(short = 'f', long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Archive(args) => archive_command(args),
        Command::Start(args) if args.foreground => server::run_foreground(args),
        Command::Start(args) => daemon::start_background(&args),
        Command::Stop => daemon::stop(),
        Command::WorkflowArchive(args) => {
            archive::war_command::run(&args).map(|p| println!("{}", p.display()))
        }
        Command::Handler(HandlerCommand::New {
            name,
            dir,
            target,
            sdk,
        }) => {
            let opts = scaffold::NewHandler {
                name: &name,
                dir: &dir,
                target,
                sdk: sdk.as_deref(),
            };
            scaffold::new_handler(&opts).map(|p| {
                println!("{}", p.display());
                eprintln!("next: cd {} && cargo build --release", p.display());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmserve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn archive_command(args: ArchiveArgs) -> anyhow::Result<()> {
    use anyhow::{Context as _, bail};

    archive::validate_model_name(&args.model_name).map_err(anyhow::Error::msg)?;
    archive::validate_version(&args.version).map_err(anyhow::Error::msg)?;
    let must_exist = |p: &PathBuf, what: &str| -> anyhow::Result<()> {
        if !p.is_file() {
            bail!("{what} {} does not exist or is not a file", p.display());
        }
        Ok(())
    };
    if let Some(file) = &args.serialized_file {
        must_exist(file, "--serialized-file")?;
    }
    for f in &args.extra_files {
        must_exist(f, "--extra-files entry")?;
    }
    if let Some(c) = &args.config_file {
        must_exist(c, "--config-file")?;
        let text =
            std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
        config::ModelSettings::defaults(&config::ServerConfig::default())
            .apply_yaml(&text, &c.display().to_string())?;
    }
    if !args.export_path.is_dir() {
        bail!(
            "--export-path {} is not a folder",
            args.export_path.display()
        );
    }

    let handler = archive::handler::prepare(&args.handler)?;
    let pipeline = handler.world() == wasmserve::sandbox::World::Pipeline;
    match (&args.serialized_file, pipeline) {
        (None, false) => bail!(
            "--serialized-file is required: the handler runs a TorchScript model (a pipeline \
             component, which calls other models, needs none)"
        ),
        (Some(f), true) => bail!(
            "--serialized-file {}: the handler is a pipeline, which calls the models its \
             model-config.yaml declares (`models:`) and has no model of its own",
            f.display()
        ),
        _ => {}
    }
    let mut files: Vec<PathBuf> = args.serialized_file.iter().cloned().collect();
    if let Some(path) = handler.file() {
        files.push(path.to_path_buf());
    }
    files.extend(args.extra_files.iter().cloned());
    if let Some(c) = &args.config_file {
        files.push(c.clone());
    }
    let name_of = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let manifest = archive::Manifest {
        created_on: Some(chrono::Local::now().format("%d/%m/%Y %H:%M:%S").to_string()),
        runtime: "wasm".into(),
        model: archive::ManifestModel {
            model_name: args.model_name.clone(),
            model_version: args.version.clone(),
            serialized_file: args.serialized_file.as_ref().and_then(name_of),
            handler: Some(handler.name().to_string()),
            config_file: args.config_file.as_ref().and_then(name_of),
            other: Default::default(),
        },
        archiver_version: Some(env!("CARGO_PKG_VERSION").into()),
    };
    let spec = archive::ArchiveSpec { manifest, files };
    let out = archive::write_archive(&spec, &args.export_path, args.archive_format, args.force)?;
    println!("{}", out.display());
    Ok(())
}
