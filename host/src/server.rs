//! Running the server in the foreground: configuration, the handler runtime, loading the
//! startup models, the listeners, and a graceful stop on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::core::Core;
use crate::frontend::InferencePort;
use crate::frontend::torchserve::management::ManagementApi;
use crate::http::ListenerOptions;
use crate::http::auth::{KeyKind, TokenAuth};
use crate::sandbox::{HandlerRuntime, Limits};

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
    /// A config.properties key over every other source (the config file, a snapshot),
    /// e.g. `--set grpc_inference_port=0`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
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
        if !self.settings.is_empty() {
            config.apply(&self.settings.iter().cloned().collect())?;
        }
        if let Some(store) = &self.model_store {
            config.model_store = Some(store.clone());
        }
        if !self.models.is_empty() {
            config.load_models = self.models.clone();
        }
        config.enable_model_api |= self.enable_model_api;
        config.disable_token_authorization |= self.disable_token_auth;
        if config.load_models.iter().any(|m| m == "all") && config.model_store.is_none() {
            anyhow::bail!(
                "`--models all` loads every archive in the model store, and there is none: give --model-store DIR (or model_store)"
            );
        }
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

/// How a startup model that failed to load is reported on the console; a background
/// `start` repeats these lines on its terminal.
pub const STARTUP_WARNING: &str = "wasmserve: warning: a startup model was not loaded:";

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

async fn bind(addr: std::net::SocketAddr, what: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what} (is another server running? `wasmserve stop`, or set {key})")
    })
}

/// The TLS acceptor of the HTTPS listeners, from the PEM files; `alpn`: the protocols
/// offered (`h2` for gRPC, whose clients insist on it).
fn tls_acceptor(
    files: &crate::config::TlsFiles,
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
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
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the private key do not fit together")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(startup: Startup, snapshot_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Startup {
        config,
        snapshot_trouble,
    } = startup;
    let tls = config
        .tls
        .as_ref()
        .map(|files| tls_acceptor(files, &[]))
        .transpose()?;
    let grpc_tls = match (&config.tls, config.enable_grpc_ssl) {
        (Some(files), true) => Some(tls_acceptor(files, &[b"h2"])?),
        _ => None,
    };
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
    let grpc_inference = bind(
        config.grpc_inference_address,
        "gRPC inference API",
        "grpc_inference_address / grpc_inference_port",
    )
    .await?;
    let grpc_management = bind(
        config.grpc_management_address,
        "gRPC management API",
        "grpc_management_address / grpc_management_port",
    )
    .await?;
    let metrics = match config.enable_metrics_api {
        true => Some(bind(config.metrics_address, "metrics API", "metrics_address").await?),
        false => None,
    };
    crate::metrics::global().set_enabled(config.enable_metrics_api);
    let (inference_addr, management_addr) = (inference.local_addr()?, management.local_addr()?);
    let grpc_addrs = (grpc_inference.local_addr()?, grpc_management.local_addr()?);
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
    let core = Arc::new(Core::new(
        config,
        runtime,
        work_dir.path().to_path_buf(),
        snapshot_dir,
    ));

    // The listeners answer while the startup models load: health says not ready
    // (`/v2/health/ready`) until they are.
    let options = |api, kind: Option<KeyKind>, reject| ListenerOptions {
        api,
        tls: tls.clone(),
        client_timeout: core.config.client_timeout,
        auth: kind.and_then(|k| auth.clone().map(|a| (a, k))),
        count_answers: kind.is_some(),
        reject,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let port = Arc::new(InferencePort::new(core.clone()));
    let inference_server = tokio::spawn(crate::http::serve(
        inference,
        options(
            "inference",
            Some(KeyKind::Inference),
            InferencePort::reject(),
        ),
        move |req, id| {
            let port = port.clone();
            async move { port.handle(req, id).await }
        },
        shutdown_rx.clone(),
    ));
    let mgmt = Arc::new(ManagementApi {
        core: core.clone(),
        auth: auth.clone(),
    });
    let management_server = tokio::spawn(crate::http::serve(
        management,
        options(
            "management",
            Some(KeyKind::Management),
            crate::frontend::torchserve_reject(),
        ),
        move |req, id| {
            let mgmt = mgmt.clone();
            async move { mgmt.handle(req, id).await }
        },
        shutdown_rx.clone(),
    ));
    let grpc = crate::frontend::grpc::GrpcOptions {
        tls: grpc_tls.clone(),
        auth: auth.clone(),
        client_timeout: core.config.client_timeout,
    };
    let grpc_servers = [
        tokio::spawn(crate::frontend::grpc::serve_inference(
            grpc_inference,
            core.clone(),
            grpc.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(crate::frontend::grpc::serve_management(
            grpc_management,
            core.clone(),
            grpc,
            shutdown_rx.clone(),
        )),
    ];
    let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
    let metrics_server = metrics.map(|listener| {
        tokio::spawn(crate::http::serve(
            listener,
            options("metrics", None, crate::frontend::torchserve_reject()),
            |req, _id| crate::frontend::metrics::handle(req),
            shutdown_rx,
        ))
    });

    let report = core.load_startup().await;
    // On the terminal too (a background `start` shows these lines): the server serves
    // the other models, as TorchServe does, but nobody should miss that one is missing.
    for failure in &report.failures {
        eprintln!("{STARTUP_WARNING} {failure}");
    }
    // A snapshot of a restore that went wrong would hide the good one behind it.
    if report.whole && !snapshot_trouble {
        core.snapshot();
    } else {
        tracing::warn!(
            "not writing a snapshot at startup: the restore was not whole; the snapshots stay as they are"
        );
    }

    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(auth) = &auth {
        println!(
            "wasmserve: API keys in {} (send `Authorization: Bearer KEY`)",
            auth.file().display()
        );
    }
    println!("wasmserve: inference API on {scheme}://{inference_addr}");
    println!("wasmserve: management API on {scheme}://{management_addr}");
    let grpc_scheme = if grpc_tls.is_some() { "grpcs" } else { "grpc" };
    println!(
        "wasmserve: gRPC inference API on {grpc_scheme}://{}",
        grpc_addrs.0
    );
    println!(
        "wasmserve: gRPC management API on {grpc_scheme}://{}",
        grpc_addrs.1
    );
    if let Some(addr) = metrics_addr {
        println!("wasmserve: metrics API on {scheme}://{addr}");
    }
    crate::daemon::announce_ready()?;

    wait_for_signal().await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
    let _ = shutdown_tx.send(true);
    let _ = tokio::join!(inference_server, management_server);
    for server in grpc_servers {
        let _ = server.await;
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    let registry = core.registry.clone();
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
