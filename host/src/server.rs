//! Running the server in the foreground: configuration, the handler runtime, loading the
//! startup models, the listeners, and a graceful stop on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::inference::InferenceApi;
use crate::config::ServerConfig;
use crate::registry::{ModelVersion, Registry, resolve_archive};
use crate::runtime::{HandlerRuntime, Limits};

/// `wasmserve start` arguments (TorchServe's flags).
#[derive(Args, Clone, Debug)]
pub struct StartArgs {
    /// Folder of model archives; `--models` entries without a path are looked up here.
    #[arg(long)]
    pub model_store: Option<PathBuf>,
    /// Models to load at startup: NAME=FILE.mar, FILE.mar, or `all` (every archive in
    /// the model store). Comma- or space-separated.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub models: Vec<String>,
    /// A TorchServe-style config.properties.
    #[arg(long)]
    pub ts_config: Option<PathBuf>,
    /// Do not write config snapshots (accepted for TorchServe compatibility).
    #[arg(long)]
    pub ncs: bool,
    /// Stay in the foreground instead of starting a background server.
    #[arg(long)]
    pub foreground: bool,
    /// Where a background server writes its log (default: ./logs).
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
}

impl StartArgs {
    /// The effective configuration: defaults < config file < command line.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = match &self.ts_config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(store) = &self.model_store {
            config.model_store = Some(store.clone());
        }
        if !self.models.is_empty() {
            config.load_models = self.models.clone();
        }
        if let Some(store) = config.model_store.as_ref().filter(|s| !s.is_dir()) {
            anyhow::bail!("the model store {} is not a folder", store.display());
        }
        Ok(config)
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run_foreground(args: StartArgs) -> anyhow::Result<()> {
    init_logging();
    let config = args.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(config))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("WASMSERVE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The cache of compiled handler components.
fn component_cache() -> Option<PathBuf> {
    let root = std::env::var_os("WASMSERVE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wasmserve"))
        })?;
    Some(root.join("components"))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let inference = TcpListener::bind(config.inference_address).await.with_context(|| {
        format!(
            "cannot listen on {} for the inference API (is another server running? `wasmserve stop`, or set inference_address)",
            config.inference_address
        )
    })?;
    let inference_addr = inference.local_addr()?;

    let runtime = Arc::new(HandlerRuntime::new(Limits::default(), component_cache())?);
    let work_dir = tempfile::Builder::new()
        .prefix("wasmserve-")
        .tempdir()
        .context("creating a work folder")?;
    let registry = Arc::new(Registry::default());
    load_startup_models(&config, &runtime, &registry, work_dir.path()).await;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = Arc::new(InferenceApi {
        registry: registry.clone(),
        max_request_size: config.max_request_size,
    });
    let server = tokio::spawn(crate::api::serve(
        inference,
        move |req, peer| api.clone().handle(req, peer),
        shutdown_rx,
    ));
    println!("wasmserve: inference API on http://{inference_addr}");
    crate::daemon::announce_ready()?;

    wait_for_signal().await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    tokio::task::spawn_blocking(move || registry.clear()).await?;
    crate::daemon::forget_pid();
    tracing::info!("stopped");
    Ok(())
}

async fn load_startup_models(
    config: &ServerConfig,
    runtime: &Arc<HandlerRuntime>,
    registry: &Arc<Registry>,
    work_dir: &std::path::Path,
) {
    let mut entries = Vec::new();
    for entry in &config.load_models {
        if entry == "all" {
            let Some(store) = &config.model_store else {
                tracing::error!("`all` needs a model store (--model-store)");
                continue;
            };
            match std::fs::read_dir(store) {
                Ok(dir) => {
                    let mut names: Vec<String> = dir
                        .filter_map(|e| e.ok())
                        .filter(|e| {
                            e.path().extension().is_some_and(|x| x == "mar")
                                || e.path().join(crate::archive::MANIFEST_PATH).is_file()
                        })
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    entries.extend(names);
                }
                Err(e) => tracing::error!("cannot list the model store {}: {e}", store.display()),
            }
        } else {
            entries.push(entry.clone());
        }
    }
    for entry in entries {
        let (name, url, path) = resolve_archive(&entry, config.model_store.as_deref());
        let (config, runtime, registry, work_dir) = (
            config.clone(),
            runtime.clone(),
            registry.clone(),
            work_dir.to_path_buf(),
        );
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let version =
                ModelVersion::load(name.as_deref(), &url, &path, &config, &runtime, &work_dir)?;
            let (n, v, w) = (
                version.name.clone(),
                format!("{} from {}", version.version, version.url),
                version.workers(),
            );
            registry
                .insert(version)
                .map_err(|message| crate::registry::LoadError {
                    archive: url.clone(),
                    message,
                })?;
            Ok::<_, crate::registry::LoadError>((n, v, w))
        })
        .await;
        match result {
            Ok(Ok((name, version, workers))) => tracing::info!(
                "loaded model {name} version {version} with {workers} worker(s) in {} ms",
                started.elapsed().as_millis()
            ),
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("loading {entry} panicked: {e}"),
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
