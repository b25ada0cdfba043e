//! `wasmserve`: the command line. `archive` packs a model archive, `start` runs the
//! server (in the background unless `--foreground`), `stop` stops a background server.

use wasmserve::{archive, builtin, config, daemon, runtime, scaffold, server};

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
    /// Handler projects: `wasmserve handler new NAME` writes a ready Rust handler.
    #[command(subcommand)]
    Handler(HandlerCommand),
}

#[derive(Subcommand)]
enum HandlerCommand {
    /// Writes a new Rust handler project that builds for wasm32-wasip2 as it is.
    New {
        /// The handler's name (also the crate's and, by default, the model's).
        name: String,
        /// Where to create the project folder (default: the current folder).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The wasmserve-handler SDK to depend on (default: the one this binary was
        /// built from).
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
    /// The TorchScript file (torch.jit.save).
    #[arg(long)]
    serialized_file: PathBuf,
    /// A handler component (.wasm) or a built-in handler's name (image_classifier,
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
        Command::Handler(HandlerCommand::New { name, dir, sdk }) => {
            scaffold::new_handler(&name, &dir, sdk.as_deref()).map(|p| {
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
    must_exist(&args.serialized_file, "--serialized-file")?;
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

    let mut files = vec![args.serialized_file.clone()];
    let handler = if args.handler.ends_with(".wasm") {
        let path = PathBuf::from(&args.handler);
        must_exist(&path, "--handler")?;
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        runtime::HandlerRuntime::for_checking()?
            .compile(&wasm)
            .with_context(|| format!("--handler {}", path.display()))?;
        files.push(path.clone());
        path.file_name().unwrap().to_string_lossy().into_owned()
    } else if builtin::component(&args.handler).is_some() {
        args.handler.clone()
    } else {
        bail!(
            "--handler {:?} is neither a .wasm component nor a built-in handler ({})",
            args.handler,
            builtin::names().join(", ")
        );
    };
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
            serialized_file: name_of(&args.serialized_file),
            handler: Some(handler),
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
