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
use crate::frontend::port::{HttpApi, Port};
use crate::http::ListenerOptions;
use crate::http::auth::TokenAuth;
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
    /// A config.properties key over the config file and a snapshot, e.g. `--set
    /// grpc_inference_port=0` (a `TS_*` variable still wins where
    /// `enable_envvars_config` is on, as in TorchServe). Repeatable.
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
        // TorchServe's `TS_CONFIG_FILE` names the config file over `--ts-config`.
        let ts_config = std::env::var_os("TS_CONFIG_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.ts_config.clone());
        let restored = match (&ts_config, self.models.is_empty(), self.snapshot_dir()) {
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
        let mut config = match (&ts_config, restored) {
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
        // Last, as TorchServe has it: environment variables over the command line and
        // the file, when the file (or the command line) enables them.
        if config.enable_envvars_config {
            let vars = crate::config::env_overrides(std::env::vars());
            if !vars.is_empty() {
                let names: Vec<String> = vars
                    .keys()
                    .map(|k| format!("TS_{}", k.to_uppercase()))
                    .collect();
                tracing::info!("config keys from the environment: {}", names.join(", "));
                config.apply(&vars)?;
            }
        }
        if config
            .load_models
            .iter()
            .any(|m| m.eq_ignore_ascii_case("all"))
            && config.model_store.is_none()
        {
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

/// The HTTP APIs' listeners: one per address, serving every API configured there (as
/// TorchServe serves `inference_address` = `management_address` on one port). Port 0
/// means a port of its own for each API, so those are never shared.
async fn bind_http(config: &ServerConfig) -> anyhow::Result<Vec<(TcpListener, Vec<HttpApi>)>> {
    let mut wanted = vec![
        (
            HttpApi::Inference,
            config.inference_address,
            "inference_address",
        ),
        (
            HttpApi::Management,
            config.management_address,
            "management_address",
        ),
    ];
    if config.enable_metrics_api {
        wanted.push((HttpApi::Metrics, config.metrics_address, "metrics_address"));
    }
    let mut groups: Vec<(std::net::SocketAddr, Vec<HttpApi>, Vec<&str>)> = Vec::new();
    for (api, addr, key) in wanted {
        match groups
            .iter_mut()
            .find(|(a, _, _)| *a == addr && addr.port() != 0)
        {
            Some((_, apis, keys)) => {
                apis.push(api);
                keys.push(key);
            }
            None => groups.push((addr, vec![api], vec![key])),
        }
    }
    let mut listeners = Vec::new();
    for (addr, apis, keys) in groups {
        let names: Vec<&str> = apis.iter().map(|a| a.name()).collect();
        let what = format!("{} API", names.join(" and "));
        let listener = bind(addr, &what, &keys.join(" / ")).await?;
        listeners.push((listener, apis));
    }
    Ok(listeners)
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
    let gpus = crate::core::device::Gpus::probe(config.number_of_gpu);
    match (gpus.present, gpus.usable) {
        (0, _) => tracing::info!("devices: the CPU (no CUDA device)"),
        (p, u) => tracing::info!("devices: the CPU and {p} CUDA GPU(s), {u} of them for models"),
    }
    let tls = config
        .tls
        .as_ref()
        .map(|files| tls_acceptor(files, &[]))
        .transpose()?;
    let grpc_tls = match (&config.tls, config.enable_grpc_ssl) {
        (Some(files), true) => Some(tls_acceptor(files, &[b"h2"])?),
        _ => None,
    };
    let http_listeners = bind_http(&config).await?;
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
    crate::metrics::global().set_enabled(config.enable_metrics_api);
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
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut http_servers = Vec::new();
    let mut announced = Vec::new();
    for (listener, apis) in http_listeners {
        let addr = listener.local_addr()?;
        let port = Arc::new(Port::new(&apis, &core, auth.clone()));
        announced.extend(port.apis().iter().map(|api| (*api, addr)));
        let opts = ListenerOptions {
            tls: tls.clone(),
            client_timeout: core.config.client_timeout,
            auth: auth.clone(),
            classify: port.classify(),
            reject: port.reject(),
        };
        http_servers.push(tokio::spawn(crate::http::serve(
            listener,
            opts,
            move |req, id| {
                let port = port.clone();
                async move { port.handle(req, id).await }
            },
            shutdown_rx.clone(),
        )));
    }
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
    for api in [HttpApi::Inference, HttpApi::Management, HttpApi::Metrics] {
        for (_, addr) in announced.iter().filter(|(a, _)| *a == api) {
            println!("wasmserve: {} API on {scheme}://{addr}", api.name());
        }
    }
    let grpc_scheme = if grpc_tls.is_some() { "grpcs" } else { "grpc" };
    println!(
        "wasmserve: gRPC inference API on {grpc_scheme}://{}",
        grpc_addrs.0
    );
    println!(
        "wasmserve: gRPC management API on {grpc_scheme}://{}",
        grpc_addrs.1
    );
    crate::daemon::announce_ready()?;

    wait_for_signal().await;
    tracing::info!("stopping: no new connections; finishing requests in flight");
    let _ = shutdown_tx.send(true);
    for server in http_servers.into_iter().chain(grpc_servers) {
        let _ = server.await;
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
