//! Running the server in the foreground: configuration, the handler runtime, loading the
//! startup models, the listeners, and a graceful stop on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::ListenerOptions;
use crate::api::auth::{KeyKind, TokenAuth};
use crate::api::inference::InferenceApi;
use crate::api::management::ManagementApi;
use crate::config::ServerConfig;
use crate::registry::{LoadRequest, Registry, resolve_archive};
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
    /// Allow registering and unregistering models through the management API.
    #[arg(long)]
    pub enable_model_api: bool,
    /// Serve without token authorization (TorchServe's flag). By default every request
    /// must carry `Authorization: Bearer KEY` with a key from `key_file.json`.
    #[arg(long)]
    pub disable_token_auth: bool,
    /// Stay in the foreground instead of starting a background server.
    #[arg(long)]
    pub foreground: bool,
    /// Where the server writes its log (background) and config snapshots
    /// (`<log-dir>/config`), default ./logs.
    #[arg(long, default_value = "logs")]
    pub log_dir: PathBuf,
}

impl StartArgs {
    /// Where config snapshots go, `None` with `--ncs`.
    pub fn snapshot_dir(&self) -> Option<PathBuf> {
        (!self.ncs).then(|| self.log_dir.join("config"))
    }

    /// The effective configuration: defaults < config file < command line. Without
    /// `--ts-config` and `--models`, the newest valid snapshot is the config file.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        self.startup().map(|s| s.config)
    }

    /// [`StartArgs::config`], and whether restoring a snapshot went wrong (a newer one
    /// was unreadable, or none was): then the server must not write a snapshot of
    /// what it starts with over the history.
    pub fn startup(&self) -> anyhow::Result<Startup> {
        let mut snapshot_trouble = false;
        let restored = match (&self.ts_config, self.models.is_empty(), self.snapshot_dir()) {
            (None, true, Some(dir)) => {
                let found = crate::snapshot::restorable(&dir);
                for (path, why) in &found.skipped {
                    tracing::error!("skipping the snapshot {}: {why}", path.display());
                    eprintln!("wasmserve: skipping the snapshot {}: {why}", path.display());
                }
                snapshot_trouble = !found.skipped.is_empty();
                found.chosen
            }
            _ => None,
        };
        if let Some((path, _)) = &restored {
            tracing::info!("restoring the snapshot {}", path.display());
            eprintln!("wasmserve: restoring the snapshot {}", path.display());
        }
        let mut config = match (&self.ts_config, restored) {
            (Some(path), _) => ServerConfig::from_file(path)?,
            (None, Some((_, config))) => config,
            (None, None) => ServerConfig::default(),
        };
        if let Some(store) = &self.model_store {
            config.model_store = Some(store.clone());
        }
        if !self.models.is_empty() {
            config.load_models = self.models.clone();
        }
        config.enable_model_api |= self.enable_model_api;
        config.disable_token_authorization |= self.disable_token_auth;
        if let Some(store) = config.model_store.as_ref().filter(|s| !s.is_dir()) {
            anyhow::bail!("the model store {} is not a folder", store.display());
        }
        Ok(Startup {
            config,
            snapshot_trouble,
        })
    }
}

/// What `wasmserve start` starts from.
pub struct Startup {
    pub config: ServerConfig,
    /// A snapshot newer than the restored one (or every one) could not be read.
    pub snapshot_trouble: bool,
}

/// How long a stop may take: requests in flight, then every worker (a worker whose
/// forward does not return is abandoned, and the process exits all the same).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run_foreground(args: StartArgs) -> anyhow::Result<()> {
    let logs = crate::logging::init(Some(&args.log_dir))?;
    let startup = args.startup()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(startup, args.snapshot_dir()));
    // Blocking tasks still running (a stop that outlived STOP_GRACE) are not waited for.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    if crate::worker::abandoned_lanes() > 0 {
        // A lane thread is still inside libtorch: running the process's exit handlers
        // under it could crash or hang. The logs are flushed first.
        tracing::warn!("exiting with abandoned worker(s) still busy");
        drop(logs);
        let code = i32::from(result.is_err());
        // SAFETY: ends the process at once, as intended; nothing is left to clean up.
        unsafe { libc::_exit(code) };
    }
    result
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

/// What the APIs share: the served models and what loading new ones takes.
pub struct ServerState {
    pub registry: Arc<Registry>,
    pub runtime: Arc<HandlerRuntime>,
    pub config: ServerConfig,
    /// Where archives are extracted; removed when the server stops.
    pub work_dir: PathBuf,
    /// Where snapshots go (`None`: `--ncs`).
    pub snapshot_dir: Option<PathBuf>,
    /// The API keys (`None`: token authorization disabled).
    pub auth: Option<Arc<TokenAuth>>,
}

impl ServerState {
    /// Records the served set after a change (no-op with `--ncs`).
    pub fn snapshot(&self) {
        if let Some(dir) = &self.snapshot_dir {
            crate::snapshot::write(dir, &self.config, &self.registry);
        }
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what} (is another server running? `wasmserve stop`, or set {key})")
    })
}

/// The TLS acceptor of the HTTPS listeners, from the PEM files.
fn tls_acceptor(files: &crate::config::TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    for file in [&files.certificate_file, &files.private_key_file] {
        crate::fsutil::check_regular_file(file)?;
    }
    let certs = CertificateDer::pem_file_iter(&files.certificate_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "reading certificate_file {}",
                files.certificate_file.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "certificate_file {} holds no PEM certificate",
        files.certificate_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.private_key_file).with_context(|| {
        format!(
            "reading private_key_file {} (PEM: PKCS#8, PKCS#1 or SEC1)",
            files.private_key_file.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not fit together")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(startup: Startup, snapshot_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Startup {
        config,
        snapshot_trouble,
    } = startup;
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let inference = bind(
        config.inference_address,
        "inference API",
        "inference_address",
    )
    .await?;
    let management = bind(
        config.management_address,
        "management API",
        "management_address",
    )
    .await?;
    let metrics = match config.enable_metrics_api {
        true => Some(bind(config.metrics_address, "metrics API", "metrics_address").await?),
        false => None,
    };
    crate::metrics::global().set_enabled(config.enable_metrics_api);
    let (inference_addr, management_addr) = (inference.local_addr()?, management.local_addr()?);
    let auth = if config.disable_token_authorization {
        tracing::warn!(
            "token authorization is disabled: anyone who can reach the APIs can use them"
        );
        None
    } else {
        let auth = TokenAuth::generate(&config.key_file, config.token_expiration)
            .with_context(|| format!("writing the key file {}", config.key_file.display()))?;
        Some(Arc::new(auth))
    };

    let runtime_limits = Limits {
        max_memory: config.handler_memory_limit,
        max_instances: config.max_handler_instances,
        ..Limits::default()
    };
    let runtime = Arc::new(HandlerRuntime::new(runtime_limits, component_cache())?);
    let work_dir = tempfile::Builder::new()
        .prefix("wasmserve-")
        .tempdir()
        .context("creating a work folder")?;
    let state = Arc::new(ServerState {
        registry: Arc::new(Registry::default()),
        runtime,
        config,
        work_dir: work_dir.path().to_path_buf(),
        snapshot_dir,
        auth: auth.clone(),
    });
    let restored_whole = match state.config.model_snapshot.clone() {
        Some(snapshot) => restore_snapshot(&state, &snapshot).await,
        None => {
            load_startup_models(&state).await;
            true
        }
    };
    // A snapshot of a restore that went wrong would hide the good one behind it.
    if restored_whole && !snapshot_trouble {
        state.snapshot();
    } else {
        tracing::warn!(
            "not writing a snapshot at startup: the restore was not whole; the snapshots stay as they are"
        );
    }

    let options = |api, kind: Option<KeyKind>| ListenerOptions {
        api,
        tls: tls.clone(),
        client_timeout: state.config.client_timeout,
        auth: kind.and_then(|k| auth.clone().map(|a| (a, k))),
        count_answers: kind.is_some(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = Arc::new(InferenceApi {
        registry: state.registry.clone(),
        max_request_size: state.config.max_request_size,
        max_response_size: state.config.max_response_size,
        client_timeout: state.config.client_timeout,
    });
    let inference_server = tokio::spawn(crate::api::serve(
        inference,
        options("inference", Some(KeyKind::Inference)),
        move |req, id| api.clone().handle(req, id),
        shutdown_rx.clone(),
    ));
    let mgmt = Arc::new(ManagementApi {
        state: state.clone(),
    });
    let management_server = tokio::spawn(crate::api::serve(
        management,
        options("management", Some(KeyKind::Management)),
        move |req, id| mgmt.clone().handle(req, id),
        shutdown_rx.clone(),
    ));
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
    let metrics_server = metrics.map(|listener| {
        tokio::spawn(crate::api::serve(
            listener,
            options("metrics", None),
            |req, _id| crate::api::metrics::handle(req),
            shutdown_rx,
        ))
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(auth) = &auth {
        println!(
            "wasmserve: API keys in {} (send `Authorization: Bearer KEY`)",
            auth.file().display()
        );
    }
    println!("wasmserve: inference API on {scheme}://{inference_addr}");
    println!("wasmserve: management API on {scheme}://{management_addr}");
    if let Some(addr) = metrics_addr {
        println!("wasmserve: metrics API on {scheme}://{addr}");
    }
    crate::daemon::announce_ready()?;

    wait_for_signal().await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
    let _ = shutdown_tx.send(true);
    let _ = tokio::join!(inference_server, management_server);
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    let registry = state.registry.clone();
    let stopping = tokio::task::spawn_blocking(move || registry.clear());
    if tokio::time::timeout(STOP_GRACE, stopping).await.is_err() {
        tracing::error!(
            "workers still busy after {} s: stopping without them",
            STOP_GRACE.as_secs()
        );
    }
    crate::daemon::forget_pid();
    tracing::info!("stopped");
    Ok(())
}

async fn load_startup_models(state: &Arc<ServerState>) {
    let config = &state.config;
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
        let request = LoadRequest {
            name,
            url,
            path,
            at_startup: true,
            ..Default::default()
        };
        let state = state.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            state.registry.register(
                &request,
                &state.config,
                &state.runtime,
                &state.work_dir,
                true,
            )
        })
        .await;
        match result {
            Ok(Ok(v)) => tracing::info!(
                "loaded model {} version {} from {} with {} worker(s) in {} ms",
                v.name,
                v.version,
                v.url,
                v.workers(),
                started.elapsed().as_millis()
            ),
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("loading {entry} panicked: {e}"),
        }
    }
}

/// Loads the models a snapshot records, with their settings, workers and defaults.
/// Returns whether every one was restored.
async fn restore_snapshot(state: &Arc<ServerState>, snapshot: &str) -> bool {
    let models = match crate::snapshot::parse_models(snapshot) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("the snapshot's model_snapshot is unusable: {e}");
            return false;
        }
    };
    let mut whole = true;
    for m in models {
        let (_, url, path) = resolve_archive(&m.url, state.config.model_store.as_deref());
        let request = LoadRequest {
            name: Some(m.name.clone()),
            url,
            path,
            at_startup: true,
            overrides: crate::config::ModelOverrides {
                batch_size: Some(m.batch_size),
                max_batch_delay: Some(std::time::Duration::from_millis(m.max_batch_delay_ms)),
                response_timeout: Some(std::time::Duration::from_secs(m.response_timeout_s)),
                initial_workers: Some(m.min_workers),
            },
        };
        let (state2, label) = (state.clone(), format!("{} {}", m.name, m.version));
        let result = tokio::task::spawn_blocking(move || {
            let v = state2.registry.register(
                &request,
                &state2.config,
                &state2.runtime,
                &state2.work_dir,
                false,
            )?;
            v.scale(m.min_workers, m.max_workers.max(m.min_workers))
                .map_err(crate::registry::RegisterError::Scale)?;
            if m.default {
                let _ = state2.registry.set_default(&m.name, &m.version);
            }
            Ok::<_, crate::registry::RegisterError>(v)
        })
        .await;
        match result {
            Ok(Ok(v)) => tracing::info!(
                "restored model {} version {} with {} worker(s)",
                v.name,
                v.version,
                v.workers()
            ),
            Ok(Err(e)) => {
                tracing::error!("restoring {label}: {e}");
                whole = false;
            }
            Err(e) => {
                tracing::error!("restoring {label} panicked: {e}");
                whole = false;
            }
        }
    }
    whole
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
