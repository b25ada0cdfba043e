//! Server configuration: TorchServe's `config.properties` keys, their defaults, and the
//! per-model settings that `model-config.yaml` can override.
//!
//! Unknown keys are logged and ignored (a TorchServe config file carries many keys that
//! do not apply here); a malformed value is an error that names its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config key `{key}`: {message}")]
    Value { key: String, message: String },
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The server's settings. Defaults are TorchServe's where it has one.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `inference_address`, default `http://127.0.0.1:8080`. Port 0 picks a free port.
    pub inference_address: SocketAddr,
    /// `management_address`, default `http://127.0.0.1:8081`.
    pub management_address: SocketAddr,
    /// `metrics_address`, default `http://127.0.0.1:8082`.
    pub metrics_address: SocketAddr,
    /// `grpc_inference_address` (an IP, or IP:port) and `grpc_inference_port`, default
    /// `127.0.0.1:7070`: TorchServe's and KServe's gRPC inference services.
    pub grpc_inference_address: SocketAddr,
    /// `grpc_management_address` and `grpc_management_port`, default `127.0.0.1:7071`.
    pub grpc_management_address: SocketAddr,
    /// `enable_grpc_ssl`, default false: the gRPC ports speak TLS, with
    /// `certificate_file` and `private_key_file` (which it requires).
    pub enable_grpc_ssl: bool,
    /// `enable_metrics_api`, default true: whether the metrics API listens and the
    /// server records metrics at all (off, requests skip the bookkeeping).
    pub enable_metrics_api: bool,
    /// Whether the listeners speak HTTPS: any of the three addresses given as
    /// `https://` (then `certificate_file` and `private_key_file` are required).
    pub tls: Option<TlsFiles>,
    /// `disable_token_authorization` (or `--disable-token-auth`): serve without
    /// `Authorization: Bearer` keys. Default false: keys are required, as in
    /// TorchServe 0.11+.
    pub disable_token_authorization: bool,
    /// `token_expiration_min`: how long an inference or management key stays valid,
    /// default 60 minutes (TorchServe's); a new key comes from `GET /token`.
    pub token_expiration: Duration,
    /// `key_file`: where the keys are written (mode 0600), default
    /// `./key_file.json` as TorchServe.
    pub key_file: PathBuf,
    /// `max_response_size` in bytes: the largest body a handler may answer with,
    /// default 6553500 (TorchServe's).
    pub max_response_size: usize,
    /// `client_timeout` in seconds: how long a client may take to send a request's
    /// headers and its body, default 30. Slower clients are disconnected.
    pub client_timeout: Duration,
    /// `handler_memory_limit_mb`: the most linear memory any handler instance may use,
    /// default 256 MiB; a model's `handlerMemoryLimitMb` may only lower it.
    pub handler_memory_limit: usize,
    /// `max_archive_inflated_size` and `max_archive_entries`: what extracting one model
    /// archive may write (default 4 GiB, 10,000 files); zip bombs stop there.
    pub archive_limits: crate::archive::ExtractLimits,
    /// Whether an address was given as `https://` (checked against `tls`).
    https_seen: bool,
    /// `enable_model_api`: whether models may be registered and unregistered through
    /// the management API (TorchServe 0.11+: off by default; `--enable-model-api`).
    pub enable_model_api: bool,
    /// `model_store`: where archives named without a path are looked up.
    pub model_store: Option<PathBuf>,
    /// `load_models`: archives to load at startup (`name=file.mar`, `file.mar` or `all`).
    pub load_models: Vec<String>,
    /// `default_workers_per_model`, default: the number of CPU cores.
    pub default_workers_per_model: usize,
    /// `job_queue_size`: requests that may wait per model version, default 100.
    pub job_queue_size: usize,
    /// `max_request_size` in bytes, default 6553500.
    pub max_request_size: usize,
    /// `default_response_timeout` in seconds, default 120.
    pub default_response_timeout: Duration,
    /// `batch_size` default for models whose yaml says nothing, default 1.
    pub batch_size: usize,
    /// `max_batch_delay` default in ms, default 100.
    pub max_batch_delay: Duration,
    /// `allowed_urls`: comma-separated regular expressions a registration URL must
    /// match in full (TorchServe's key). Default `file://.*`: downloads over HTTP(S)
    /// need an explicit entry such as `https://models\.example\.com/.*`.
    pub allowed_urls: Vec<regex::Regex>,
    /// `max_download_size`: the largest archive a registration may download, in bytes
    /// (default 2 GiB).
    pub max_download_size: u64,
    /// `model_snapshot`: the models of a config snapshot, restored at startup instead of
    /// `load_models` (see `snapshot`).
    pub model_snapshot: Option<String>,
    /// `enable_envvars_config`: whether `TS_<KEY>` environment variables set keys, over
    /// the config file and the command line (TorchServe's precedence); default false.
    pub enable_envvars_config: bool,
    /// `models`: per-model settings, TorchServe's
    /// `{"name": {"version": {"minWorkers": 1, "batchSize": 4, …}}}`, applied to that
    /// version whenever it is loaded (over its `model-config.yaml`, under a
    /// registration's parameters).
    pub models: Option<PerModel>,
    /// `intra_op_threads`: libtorch threads per forward. Default: cores / workers, at
    /// least 1, so that workers do not fight over the cores.
    pub intra_op_threads: Option<usize>,
    /// `number_of_gpu`: how many of the machine's GPUs models may use (TorchServe's
    /// key). Default: all that CUDA reports; 0 keeps every model on the CPU.
    pub number_of_gpu: Option<usize>,
    /// `max_handler_instances`: the most handler instances (one per worker, all models
    /// together), default 1,024. The instance pool is sized by it at start; a
    /// registration or scaling that would pass it is refused with the numbers.
    pub max_handler_instances: u32,
}

/// The PEM files of the HTTPS listeners.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// `certificate_file`: the certificate chain, leaf first.
    pub certificate_file: PathBuf,
    /// `private_key_file`: its private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            inference_address: "127.0.0.1:8080".parse().unwrap(),
            management_address: "127.0.0.1:8081".parse().unwrap(),
            metrics_address: "127.0.0.1:8082".parse().unwrap(),
            grpc_inference_address: "127.0.0.1:7070".parse().unwrap(),
            grpc_management_address: "127.0.0.1:7071".parse().unwrap(),
            enable_grpc_ssl: false,
            enable_metrics_api: true,
            tls: None,
            disable_token_authorization: false,
            token_expiration: Duration::from_secs(60 * 60),
            key_file: PathBuf::from("key_file.json"),
            max_response_size: 6_553_500,
            client_timeout: Duration::from_secs(30),
            handler_memory_limit: 256 << 20,
            https_seen: false,
            archive_limits: crate::archive::ExtractLimits::default(),
            enable_model_api: false,
            model_store: None,
            load_models: Vec::new(),
            default_workers_per_model: num_cores(),
            job_queue_size: 100,
            max_request_size: 6_553_500,
            default_response_timeout: Duration::from_secs(120),
            batch_size: 1,
            max_batch_delay: Duration::from_millis(100),
            intra_op_threads: None,
            number_of_gpu: None,
            max_handler_instances: crate::sandbox::DEFAULT_MAX_INSTANCES,
            model_snapshot: None,
            enable_envvars_config: false,
            models: None,
            allowed_urls: vec![regex::Regex::new("^(?:file://.*)$").unwrap()],
            max_download_size: 2 << 30,
        }
    }
}

/// The number of cores this process may use.
pub fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl ServerConfig {
    /// Reads a `config.properties` file over the defaults.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = crate::fsutil::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ServerConfig::from_text(&text)
    }

    /// Reads `config.properties` text over the defaults.
    pub fn from_text(text: &str) -> Result<ServerConfig, ConfigError> {
        let mut config = ServerConfig::default();
        config.apply(&parse_properties(text))?;
        config.check_tls()?;
        Ok(config)
    }

    /// Applies `key=value` pairs over the current settings, each through its entry in
    /// [`KEYS`]; keys not there are logged and ignored.
    pub fn apply(&mut self, props: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (key, value) in props {
            match KEYS
                .iter()
                .find(|k| k.name == key || k.aliases.contains(&key.as_str()))
            {
                Some(entry) => (entry.read)(self, key, value)?,
                None if TORCHSERVE_ONLY.contains(&key.as_str()) => {
                    tracing::info!(
                        "TorchServe's config key `{key}` does not apply to wasmserve; ignoring it"
                    )
                }
                None => {
                    let hint = closest_key(key)
                        .map(|k| format!(" (did you mean `{k}`?)"))
                        .unwrap_or_default();
                    let text = format!(
                        "unknown config key `{key}`{hint}: neither a wasmserve nor a TorchServe key; ignoring it"
                    );
                    tracing::warn!("{text}");
                    eprintln!("wasmserve: warning: {text}");
                }
            }
        }
        Ok(())
    }

    /// These settings as `config.properties` lines (what a snapshot records): every key
    /// of [`KEYS`] that has a value, in the table's order, so that reading the lines back
    /// gives these settings again.
    pub fn to_properties(&self) -> String {
        KEYS.iter()
            .filter_map(|k| (k.write)(self).map(|v| format!("{}={}\n", k.name, escape_value(&v))))
            .collect()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn tls_file(&mut self, field: impl Fn(&mut TlsFiles) -> &mut PathBuf, value: &str) {
        let tls = self.tls.get_or_insert_with(|| TlsFiles {
            certificate_file: PathBuf::new(),
            private_key_file: PathBuf::new(),
        });
        *field(tls) = PathBuf::from(value);
    }

    /// HTTPS needs both files, and an `https://` address needs them.
    fn check_tls(&mut self) -> Result<(), ConfigError> {
        match &self.tls {
            Some(t) if t.certificate_file.as_os_str().is_empty() => Err(bad(
                "certificate_file",
                "HTTPS needs both certificate_file and private_key_file",
            )),
            Some(t) if t.private_key_file.as_os_str().is_empty() => Err(bad(
                "private_key_file",
                "HTTPS needs both certificate_file and private_key_file",
            )),
            None if self.https_seen => Err(bad(
                "inference_address",
                "an https:// address needs certificate_file and private_key_file",
            )),
            None if self.enable_grpc_ssl => Err(bad(
                "enable_grpc_ssl",
                "gRPC over TLS needs certificate_file and private_key_file",
            )),
            _ => Ok(()),
        }
    }
}

/// One `config.properties` key: how it is read, and how a snapshot writes it back.
/// Reading and writing live in one entry so that no key can be read but lost on the
/// next restart from a snapshot (the table's test writes and re-reads every key).
/// TorchServe's keys that have no meaning here (its Java frontend, Python workers and
/// features wasmserve does otherwise): read, logged, ignored. Any other unknown key is
/// warned about as a likely typo.
pub const TORCHSERVE_ONLY: &[&str] = &[
    "number_of_netty_threads",
    "netty_client_threads",
    "default_service_handler",
    "service_envelope",
    "async_logging",
    "cors_allowed_origin",
    "cors_allowed_methods",
    "cors_allowed_headers",
    "decode_input_request",
    "keystore",
    "keystore_pass",
    "keystore_type",
    "blacklist_env_vars",
    "metrics_format",
    "metrics_mode",
    "metrics_config",
    "install_py_dep_per_model",
    "workflow_store",
    "vmargs",
    "prefer_direct_buffer",
    "grpc_inference_max_connection_age_ms",
    "grpc_management_max_connection_age_ms",
    "grpc_inference_max_connection_age_grace_ms",
    "grpc_management_max_connection_age_grace_ms",
    "initial_worker_port",
    "initial_distribution_port",
    "model_server_home",
    "plugins_path",
    "limit_max_image_pixels",
    "system_metrics_cmd",
    "disable_system_metrics",
    "use_native_io",
    "io_ratio",
    "cpu_launcher_enable",
    "cpu_launcher_args",
    "ipex_enable",
    "ipex_gpu_enable",
    "use_env_allowed_urls",
    "enable_model_api_auth",
    "workflow_api_enable",
    "unregister_model_timeout",
    "model_load_timeout",
    "maximum_workers",
];

/// The keys that `TS_<KEY>` environment variables set when `enable_envvars_config`
/// is on: `TS_` and the key's name in upper case (`TS_INFERENCE_ADDRESS`,
/// `TS_DEFAULT_WORKERS_PER_MODEL`), for every key TorchServe or wasmserve knows.
/// Other `TS_` variables (`TS_CONFIG_FILE` picks the file itself) are not keys.
pub fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("TS_")?.to_ascii_lowercase();
            let known = KEYS
                .iter()
                .any(|k| k.name == key || k.aliases.contains(&key.as_str()))
                || TORCHSERVE_ONLY.contains(&key.as_str());
            known.then_some((key, value))
        })
        .collect()
}

/// The known key nearest to `key` in edit distance, when it is near (a typo).
fn closest_key(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    KEYS.iter()
        .map(|k| k.name)
        .chain(TORCHSERVE_ONLY.iter().copied())
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 5))
        .min()
        .map(|(_, k)| k)
}

/// `models`: per-model, per-version settings in `model-config.yaml`'s keys.
#[derive(Clone, Debug, PartialEq)]
pub struct PerModel {
    /// The value as written (what a snapshot writes back).
    pub text: String,
    entries: BTreeMap<(String, String), serde_json::Map<String, serde_json::Value>>,
}

impl PerModel {
    fn parse(text: &str) -> Result<PerModel, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let models = value
            .as_object()
            .ok_or(r#"must be {"model": {"version": {"minWorkers": 1, …}}}"#)?;
        let mut entries = BTreeMap::new();
        for (name, versions) in models {
            let versions = versions
                .as_object()
                .ok_or_else(|| format!("{name}: must map versions to settings"))?;
            for (version, settings) in versions {
                let mut settings = settings
                    .as_object()
                    .ok_or_else(|| format!("{name} {version}: the settings must be an object"))?
                    .clone();
                // What a snapshot records beside the settings.
                settings.remove("defaultVersion");
                settings.remove("marName");
                // Checked now, so that a bad value fails the start, not a load.
                let mut probe = ModelSettings::defaults(&ServerConfig::default());
                probe
                    .apply_json(&settings, &format!("models {name} {version}"))
                    .map_err(|e| e.to_string())?;
                entries.insert((name.clone(), version.clone()), settings);
            }
        }
        Ok(PerModel {
            text: text.to_string(),
            entries,
        })
    }

    /// The settings given for `name` `version`.
    pub fn get(
        &self,
        name: &str,
        version: &str,
    ) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.entries.get(&(name.to_string(), version.to_string()))
    }
}

pub struct Key {
    /// TorchServe's name of the key.
    pub name: &'static str,
    /// Other names read as this key (never written).
    pub aliases: &'static [&'static str],
    /// Parses `value` into the settings; the `&str` is the key as written, for errors.
    read: fn(&mut ServerConfig, &str, &str) -> Result<(), ConfigError>,
    /// The value to write, or `None` when the setting is unset.
    write: fn(&ServerConfig) -> Option<String>,
    /// A value unlike the default, for the round-trip test.
    #[cfg_attr(not(test), allow(dead_code))]
    example: &'static str,
}

fn secs(d: Duration) -> Option<String> {
    Some(d.as_secs().to_string())
}

fn count(n: usize) -> Option<String> {
    Some(n.to_string())
}

/// Every key wasmserve reads, with its writer. Defaults are in [`ServerConfig::default`].
pub const KEYS: &[Key] = &[
    Key {
        name: "inference_address",
        aliases: &[],
        read: |c, k, v| {
            c.inference_address = parse_address(k, v)?;
            c.https_seen |= v.trim().starts_with("https://");
            Ok(())
        },
        write: |c| Some(format!("{}://{}", c.scheme(), c.inference_address)),
        example: "http://127.0.0.1:9080",
    },
    Key {
        name: "management_address",
        aliases: &[],
        read: |c, k, v| {
            c.management_address = parse_address(k, v)?;
            c.https_seen |= v.trim().starts_with("https://");
            Ok(())
        },
        write: |c| Some(format!("{}://{}", c.scheme(), c.management_address)),
        example: "http://127.0.0.1:9081",
    },
    Key {
        name: "metrics_address",
        aliases: &[],
        read: |c, k, v| {
            c.metrics_address = parse_address(k, v)?;
            c.https_seen |= v.trim().starts_with("https://");
            Ok(())
        },
        write: |c| Some(format!("{}://{}", c.scheme(), c.metrics_address)),
        example: "http://127.0.0.1:9082",
    },
    Key {
        name: "grpc_inference_address",
        aliases: &[],
        read: |c, k, v| {
            c.grpc_inference_address = parse_grpc_address(k, v, c.grpc_inference_address)?;
            Ok(())
        },
        write: |c| Some(c.grpc_inference_address.ip().to_string()),
        example: "0.0.0.0",
    },
    Key {
        name: "grpc_inference_port",
        aliases: &[],
        read: |c, k, v| {
            c.grpc_inference_address.set_port(parse_port(k, v)?);
            Ok(())
        },
        write: |c| Some(c.grpc_inference_address.port().to_string()),
        example: "9070",
    },
    Key {
        name: "grpc_management_address",
        aliases: &[],
        read: |c, k, v| {
            c.grpc_management_address = parse_grpc_address(k, v, c.grpc_management_address)?;
            Ok(())
        },
        write: |c| Some(c.grpc_management_address.ip().to_string()),
        example: "0.0.0.0",
    },
    Key {
        name: "grpc_management_port",
        aliases: &[],
        read: |c, k, v| {
            c.grpc_management_address.set_port(parse_port(k, v)?);
            Ok(())
        },
        write: |c| Some(c.grpc_management_address.port().to_string()),
        example: "9071",
    },
    Key {
        name: "enable_grpc_ssl",
        aliases: &[],
        read: |c, k, v| {
            c.enable_grpc_ssl = parse_bool(k, v)?;
            Ok(())
        },
        write: |c| Some(c.enable_grpc_ssl.to_string()),
        example: "true",
    },
    Key {
        name: "certificate_file",
        aliases: &[],
        read: |c, _, v| {
            c.tls_file(|t| &mut t.certificate_file, v);
            Ok(())
        },
        write: |c| {
            c.tls
                .as_ref()
                .map(|t| t.certificate_file.display().to_string())
        },
        example: "/etc/wasmserve/cert.pem",
    },
    Key {
        name: "private_key_file",
        aliases: &[],
        read: |c, _, v| {
            c.tls_file(|t| &mut t.private_key_file, v);
            Ok(())
        },
        write: |c| {
            c.tls
                .as_ref()
                .map(|t| t.private_key_file.display().to_string())
        },
        example: "/etc/wasmserve/key.pem",
    },
    Key {
        name: "enable_metrics_api",
        aliases: &[],
        read: |c, k, v| {
            c.enable_metrics_api = parse_bool(k, v)?;
            Ok(())
        },
        write: |c| Some(c.enable_metrics_api.to_string()),
        example: "false",
    },
    Key {
        name: "disable_token_authorization",
        aliases: &[],
        read: |c, k, v| {
            c.disable_token_authorization = parse_bool(k, v)?;
            Ok(())
        },
        write: |c| Some(c.disable_token_authorization.to_string()),
        example: "true",
    },
    Key {
        name: "token_expiration_min",
        aliases: &[],
        read: |c, k, v| {
            c.token_expiration = Duration::from_secs(60 * parse_positive(k, v)? as u64);
            Ok(())
        },
        write: |c| count(c.token_expiration.as_secs() as usize / 60),
        example: "5",
    },
    Key {
        name: "key_file",
        aliases: &[],
        read: |c, _, v| {
            c.key_file = PathBuf::from(v);
            Ok(())
        },
        write: |c| Some(c.key_file.display().to_string()),
        example: "/run/wasmserve/keys.json",
    },
    Key {
        name: "enable_model_api",
        aliases: &[],
        read: |c, k, v| {
            c.enable_model_api = parse_bool(k, v)?;
            Ok(())
        },
        write: |c| Some(c.enable_model_api.to_string()),
        example: "true",
    },
    Key {
        name: "enable_envvars_config",
        aliases: &[],
        read: |c, k, v| {
            c.enable_envvars_config = parse_bool(k, v)?;
            Ok(())
        },
        write: |c| Some(c.enable_envvars_config.to_string()),
        example: "true",
    },
    Key {
        name: "model_store",
        aliases: &[],
        read: |c, _, v| {
            c.model_store = Some(PathBuf::from(v));
            Ok(())
        },
        write: |c| c.model_store.as_ref().map(|p| p.display().to_string()),
        example: "/mnt/models/model-store",
    },
    Key {
        name: "load_models",
        aliases: &[],
        read: |c, _, v| {
            c.load_models = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            Ok(())
        },
        write: |c| (!c.load_models.is_empty()).then(|| c.load_models.join(",")),
        example: "a.mar,b=b.mar",
    },
    Key {
        name: "model_snapshot",
        aliases: &[],
        read: |c, _, v| {
            c.model_snapshot = Some(v.to_string());
            Ok(())
        },
        write: |c| c.model_snapshot.clone(),
        example: r#"{"name":"x","modelCount":0,"models":{}}"#,
    },
    Key {
        name: "models",
        aliases: &[],
        read: |c, k, v| {
            c.models = Some(PerModel::parse(v).map_err(|e| bad(k, e))?);
            Ok(())
        },
        write: |c| c.models.as_ref().map(|m| m.text.clone()),
        example: r#"{"m":{"1.0":{"batchSize":4}}}"#,
    },
    Key {
        name: "default_workers_per_model",
        aliases: &[],
        read: |c, k, v| {
            c.default_workers_per_model = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.default_workers_per_model),
        example: "97",
    },
    Key {
        name: "intra_op_threads",
        aliases: &["number_of_netty_threads_torch"],
        read: |c, k, v| {
            c.intra_op_threads = Some(parse_positive(k, v)?);
            Ok(())
        },
        write: |c| c.intra_op_threads.and_then(count),
        example: "3",
    },
    Key {
        name: "number_of_gpu",
        aliases: &[],
        read: |c, k, v| {
            c.number_of_gpu = Some(parse_number(k, v)?);
            Ok(())
        },
        write: |c| c.number_of_gpu.map(|n| n.to_string()),
        example: "1",
    },
    Key {
        name: "max_handler_instances",
        aliases: &[],
        read: |c, k, v| {
            c.max_handler_instances = u32::try_from(parse_positive(k, v)?)
                .map_err(|_| bad(k, "must be below 4294967296"))?;
            Ok(())
        },
        write: |c| Some(c.max_handler_instances.to_string()),
        example: "12",
    },
    Key {
        name: "job_queue_size",
        aliases: &[],
        read: |c, k, v| {
            c.job_queue_size = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.job_queue_size),
        example: "17",
    },
    Key {
        name: "batch_size",
        aliases: &[],
        read: |c, k, v| {
            c.batch_size = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.batch_size),
        example: "8",
    },
    Key {
        name: "max_batch_delay",
        aliases: &[],
        read: |c, k, v| {
            c.max_batch_delay = Duration::from_millis(parse_number(k, v)? as u64);
            Ok(())
        },
        write: |c| count(c.max_batch_delay.as_millis() as usize),
        example: "250",
    },
    Key {
        name: "default_response_timeout",
        aliases: &[],
        read: |c, k, v| {
            c.default_response_timeout = Duration::from_secs(parse_positive(k, v)? as u64);
            Ok(())
        },
        write: |c| secs(c.default_response_timeout),
        example: "9",
    },
    Key {
        name: "max_request_size",
        aliases: &[],
        read: |c, k, v| {
            c.max_request_size = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.max_request_size),
        example: "1234",
    },
    Key {
        name: "max_response_size",
        aliases: &[],
        read: |c, k, v| {
            c.max_response_size = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.max_response_size),
        example: "4321",
    },
    Key {
        name: "client_timeout",
        aliases: &[],
        read: |c, k, v| {
            c.client_timeout = Duration::from_secs(parse_positive(k, v)? as u64);
            Ok(())
        },
        write: |c| secs(c.client_timeout),
        example: "7",
    },
    Key {
        name: "handler_memory_limit_mb",
        aliases: &[],
        read: |c, k, v| {
            c.handler_memory_limit = parse_positive(k, v)? << 20;
            Ok(())
        },
        write: |c| count(c.handler_memory_limit >> 20),
        example: "64",
    },
    Key {
        name: "max_archive_inflated_size",
        aliases: &[],
        read: |c, k, v| {
            c.archive_limits.max_total_bytes = parse_positive(k, v)? as u64;
            Ok(())
        },
        write: |c| Some(c.archive_limits.max_total_bytes.to_string()),
        example: "1000000",
    },
    Key {
        name: "max_archive_entries",
        aliases: &[],
        read: |c, k, v| {
            c.archive_limits.max_entries = parse_positive(k, v)?;
            Ok(())
        },
        write: |c| count(c.archive_limits.max_entries),
        example: "50",
    },
    Key {
        name: "allowed_urls",
        aliases: &[],
        read: |c, k, v| {
            c.allowed_urls = parse_regex_list(k, v)?;
            Ok(())
        },
        write: |c| {
            let urls: Vec<&str> = c
                .allowed_urls
                .iter()
                .map(|r| r.as_str().trim_start_matches("^(?:").trim_end_matches(")$"))
                .collect();
            Some(urls.join(","))
        },
        example: r"https://models\.example\.com/.*,file://.*",
    },
    Key {
        name: "max_download_size",
        aliases: &[],
        read: |c, k, v| {
            c.max_download_size = parse_positive(k, v)? as u64;
            Ok(())
        },
        write: |c| Some(c.max_download_size.to_string()),
        example: "4096",
    },
];

/// Parses `.properties` text as Java's `Properties.load` reads it, which is how
/// TorchServe reads its config and writes its snapshots: `key=value`, `key: value` or
/// `key value`; `#`/`!` comment lines; a line ending in an odd number of backslashes
/// continues on the next (whose leading blanks are dropped); and backslash escapes in
/// keys and values (`\t`, `\n`, `\r`, `\f`, `\uXXXX`, and `\` before any other
/// character stands for that character: `http\://host\:8080`, `\\` for a backslash).
/// Trailing blanks of a value are dropped (Java keeps them) unless escaped.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    const BLANK: [char; 3] = [' ', '\t', '\x0c'];
    let odd_backslashes = |l: &str| l.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1;
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut line = first.trim_start_matches(BLANK);
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        while odd_backslashes(line) {
            logical.push_str(&line[..line.len() - 1]);
            line = lines.next().unwrap_or("").trim_start_matches(BLANK);
        }
        logical.push_str(line);
        // The key ends at the first unescaped `=`, `:` or blank; one `=` or `:` and
        // the blanks around it separate it from the value.
        let mut end = logical.len();
        let mut escaped = false;
        for (i, c) in logical.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || BLANK.contains(&c) {
                end = i;
                break;
            }
        }
        let (key, rest) = logical.split_at(end);
        let rest = rest.trim_start_matches(BLANK);
        let rest = rest
            .strip_prefix(['=', ':'])
            .unwrap_or(rest)
            .trim_start_matches(BLANK);
        let mut value = rest.trim_end_matches(BLANK);
        if odd_backslashes(value) && value.len() < rest.len() {
            // An escaped blank ends the value: keep it.
            value = &rest[..value.len() + 1];
        }
        let key = unescape(key);
        if !key.is_empty() {
            out.insert(key, unescape(value));
        }
    }
    out
}

/// Java's `.properties` escapes decoded (see [`parse_properties`]).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        chars.nth(3);
                    }
                    // Java refuses a malformed \u; it is kept as written here.
                    _ => out.push_str("\\u"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A value as `.properties` writes it, so that [`parse_properties`] reads it back as it
/// is: backslashes doubled, line breaks and tabs escaped, a leading blank escaped.
fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

/// `http://host:port`, `https://host:port` or `host:port`.
fn parse_address(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or(value);
    let rest = rest.trim_end_matches('/');
    let rest = if rest.starts_with("localhost:") {
        rest.replacen("localhost", "127.0.0.1", 1)
    } else {
        rest.to_string()
    };
    rest.parse().map_err(|_| {
        bad(
            key,
            format!("{value:?} is not an address like http://127.0.0.1:8080"),
        )
    })
}

/// A gRPC address: an IP (TorchServe's form; the port stays `current`'s) or IP:port.
fn parse_grpc_address(
    key: &str,
    value: &str,
    current: SocketAddr,
) -> Result<SocketAddr, ConfigError> {
    let value = value.trim();
    let host = if value == "localhost" {
        "127.0.0.1"
    } else {
        value
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, current.port()));
    }
    parse_address(key, value)
        .map_err(|_| bad(key, format!("{value:?} is not an IP address (or IP:port)")))
}

fn parse_port(key: &str, value: &str) -> Result<u16, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("{value:?} is not a port number (0-65535)")))
}

fn parse_regex_list(key: &str, value: &str) -> Result<Vec<regex::Regex>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|r| {
            regex::Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| bad(key, format!("{r:?} is not a regular expression: {e}")))
        })
        .collect()
}

impl ServerConfig {
    /// Whether `url` matches one of `allowed_urls`.
    pub fn url_allowed(&self, url: &str) -> bool {
        self.allowed_urls.iter().any(|r| r.is_match(url))
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(key, format!("{value:?} is not true or false"))),
    }
}

fn parse_number(key: &str, value: &str) -> Result<usize, ConfigError> {
    value
        .parse()
        .map_err(|_| bad(key, format!("{value:?} is not a whole number")))
}

fn parse_positive(key: &str, value: &str) -> Result<usize, ConfigError> {
    match parse_number(key, value)? {
        0 => Err(bad(key, "must be at least 1")),
        n => Ok(n),
    }
}

/// How long a version with `scaleToZero: true` stays loaded without a request, unless
/// its `scaleToZeroIdleSeconds` says otherwise: 5 minutes.
pub const SCALE_TO_ZERO_IDLE: Duration = Duration::from_secs(300);

/// One model version's settings: the server's defaults, overridden by its
/// `model-config.yaml`.
#[derive(Clone, Debug)]
pub struct ModelSettings {
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    pub max_batch_delay: Duration,
    pub response_timeout: Duration,
    pub job_queue_size: usize,
    /// `handlerMemoryLimitMb`: the handler's linear memory cap, in bytes.
    pub handler_memory_limit: usize,
    /// `modulePerWorker` (default false): each worker loads its own copy of the
    /// TorchScript module instead of sharing one, for modules that keep state in their
    /// attributes between calls (streaming models, voice-activity detectors).
    pub module_per_worker: bool,
    /// `jitOptimize` (default off): TorchScript's freezing or `optimize_for_inference`
    /// at load, or freezing and the oneDNN Graph fuser (`fuse`; see `model::optimize`).
    pub jit_optimize: crate::model::JitOptimize,
    /// `fastImageDecode` (default false): the host's image decoding for this model's
    /// handler trades Pillow's exact pixels for time (see `imaging::Mode::Fast`).
    pub image_mode: crate::imaging::Mode,
    /// `deviceType` / `deviceIds`: where its workers run (see `core::device`).
    pub device: crate::core::device::DeviceRequest,
    /// `scaleToZero` (default false) with `scaleToZeroIdleSeconds` (default
    /// [`SCALE_TO_ZERO_IDLE`]): the version stays registered but unloaded (no weights,
    /// no handler instance) until a request comes, loads then, and unloads again after
    /// this long without a request. `None`: always loaded (`minWorkers: 0` keeps
    /// TorchServe's meaning, no worker and a 503).
    pub scale_to_zero: Option<Duration>,
    /// `input` / `output`: the tensors the model declares (Triton's keys; see
    /// `core::signature`), `None` where not declared.
    pub inputs: Option<Vec<crate::core::signature::TensorSpec>>,
    pub outputs: Option<Vec<crate::core::signature::TensorSpec>>,
    /// `models`: the models a pipeline may call (`models.infer`); also passed to the
    /// pipeline in its config.
    pub models: Vec<String>,
    /// The yaml keys the server does not use, passed to the handler as JSON.
    pub handler_config: serde_json::Map<String, serde_json::Value>,
}

impl ModelSettings {
    /// The server's defaults for a model.
    pub fn defaults(server: &ServerConfig) -> ModelSettings {
        ModelSettings {
            min_workers: server.default_workers_per_model,
            max_workers: server.default_workers_per_model,
            batch_size: server.batch_size,
            max_batch_delay: server.max_batch_delay,
            response_timeout: server.default_response_timeout,
            job_queue_size: server.job_queue_size,
            handler_memory_limit: server.handler_memory_limit,
            module_per_worker: false,
            device: Default::default(),
            jit_optimize: Default::default(),
            scale_to_zero: None,
            image_mode: Default::default(),
            inputs: None,
            outputs: None,
            models: Vec::new(),
            handler_config: serde_json::Map::new(),
        }
    }

    /// Applies settings given as JSON in `model-config.yaml`'s keys (`config.properties`'
    /// `models`). `what` names them in error messages.
    pub fn apply_json(
        &mut self,
        settings: &serde_json::Map<String, serde_json::Value>,
        what: &str,
    ) -> Result<(), ConfigError> {
        let yaml = serde_yaml::to_string(settings).map_err(|e| bad(what, e.to_string()))?;
        self.apply_yaml(&yaml, what)
    }

    /// Applies a `model-config.yaml`. `file` names the file in error messages.
    pub fn apply_yaml(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| bad(file, format!("not valid YAML: {e}")))?;
        let map = match value {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => return Ok(()),
            _ => return Err(bad(file, "must be a mapping of keys to values")),
        };
        let mut min_set = false;
        let mut max_set = false;
        let mut device_type: Option<String> = None;
        let mut device_ids: Option<Vec<usize>> = None;
        let mut scale_to_zero: Option<bool> = None;
        let mut idle_seconds: Option<usize> = None;
        for (k, v) in map {
            let key = k
                .as_str()
                .ok_or_else(|| bad(file, "keys must be strings"))?
                .to_string();
            let int = |v: &serde_yaml::Value| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| bad(&key, format!("in {file}: must be a whole number")))
            };
            match key.as_str() {
                "minWorkers" => {
                    self.min_workers = int(&v)?;
                    min_set = true;
                }
                "maxWorkers" => {
                    self.max_workers = int(&v)?;
                    max_set = true;
                }
                "batchSize" => self.batch_size = int(&v)?.max(1),
                "maxBatchDelay" => self.max_batch_delay = Duration::from_millis(int(&v)? as u64),
                "responseTimeout" => {
                    self.response_timeout = Duration::from_secs(int(&v)?.max(1) as u64)
                }
                "jobQueueSize" => self.job_queue_size = int(&v)?.max(1),
                "handlerMemoryLimitMb" => {
                    let mb = int(&v)?;
                    if mb == 0 || mb << 20 > self.handler_memory_limit {
                        return Err(bad(
                            &key,
                            format!(
                                "in {file}: {mb} MiB; it must be between 1 and the server's handler_memory_limit_mb ({})",
                                self.handler_memory_limit >> 20
                            ),
                        ));
                    }
                    self.handler_memory_limit = mb << 20;
                }
                "fastImageDecode" => {
                    let fast = v
                        .as_bool()
                        .ok_or_else(|| bad(&key, format!("in {file}: must be true or false")))?;
                    self.image_mode = if fast {
                        crate::imaging::Mode::Fast
                    } else {
                        crate::imaging::Mode::Exact
                    };
                }
                "modulePerWorker" => {
                    self.module_per_worker = v
                        .as_bool()
                        .ok_or_else(|| bad(&key, format!("in {file}: must be true or false")))?
                }
                // Triton's tensor lists; another value (a handler's own `output:
                // probabilities`) is the handler's.
                "input" | "output" if v.is_sequence() => {
                    let json = serde_json::to_value(&v)
                        .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                    let specs = crate::core::signature::parse_specs(&key, &json)
                        .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                    match key.as_str() {
                        "input" => self.inputs = Some(specs),
                        _ => self.outputs = Some(specs),
                    }
                }
                "models" => {
                    let names = v
                        .as_sequence()
                        .and_then(|s| {
                            s.iter()
                                .map(|m| m.as_str().map(String::from))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            bad(&key, format!("in {file}: must be a list of model names"))
                        })?;
                    for name in &names {
                        crate::archive::validate_model_name(name)
                            .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                    }
                    self.models = names;
                    let json = serde_json::to_value(&v)
                        .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                    self.handler_config.insert(key, json);
                }
                "jitOptimize" => {
                    let text = match &v {
                        serde_yaml::Value::Bool(b) => b.to_string(),
                        serde_yaml::Value::String(s) => s.clone(),
                        _ => String::new(),
                    };
                    self.jit_optimize = crate::model::JitOptimize::parse(&text)
                        .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                }
                "deviceType" => {
                    device_type = Some(
                        v.as_str()
                            .ok_or_else(|| bad(&key, format!("in {file}: must be cpu or gpu")))?
                            .to_string(),
                    )
                }
                "deviceIds" => {
                    device_ids = Some(
                        v.as_sequence()
                            .and_then(|s| {
                                s.iter()
                                    .map(|i| i.as_u64().map(|i| i as usize))
                                    .collect::<Option<Vec<_>>>()
                            })
                            .ok_or_else(|| {
                                bad(&key, format!("in {file}: must be a list of GPU indices"))
                            })?,
                    )
                }
                "scaleToZero" => {
                    scale_to_zero =
                        Some(v.as_bool().ok_or_else(|| {
                            bad(&key, format!("in {file}: must be true or false"))
                        })?)
                }
                "scaleToZeroIdleSeconds" => match int(&v)? {
                    0 => return Err(bad(&key, format!("in {file}: must be at least 1"))),
                    n => idle_seconds = Some(n),
                },
                "startupTimeout" | "parallelType" | "parallelLevel" => {}
                _ => {
                    let json = serde_json::to_value(&v)
                        .map_err(|e| bad(&key, format!("in {file}: {e}")))?;
                    self.handler_config.insert(key, json);
                }
            }
        }
        if device_type.is_some() || device_ids.is_some() {
            self.device =
                crate::core::device::DeviceRequest::parse(device_type.as_deref(), device_ids)
                    .map_err(|e| bad("deviceType", format!("in {file}: {e}")))?;
        }
        match (scale_to_zero, idle_seconds) {
            (Some(true), idle) => {
                self.scale_to_zero =
                    Some(idle.map_or(SCALE_TO_ZERO_IDLE, |s| Duration::from_secs(s as u64)))
            }
            (Some(false), _) => self.scale_to_zero = None,
            // Changing the idle time of a version that scales to zero already.
            (None, Some(s)) if self.scale_to_zero.is_some() => {
                self.scale_to_zero = Some(Duration::from_secs(s as u64))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "scaleToZeroIdleSeconds",
                    format!("in {file}: has no effect without scaleToZero: true"),
                ));
            }
            (None, None) => {}
        }
        if min_set && !max_set {
            self.max_workers = self.max_workers.max(self.min_workers);
        }
        if max_set && !min_set {
            self.min_workers = self.min_workers.min(self.max_workers);
        }
        if self.max_workers < self.min_workers {
            return Err(bad(
                "maxWorkers",
                format!(
                    "in {file}: {} is below minWorkers {}",
                    self.max_workers, self.min_workers
                ),
            ));
        }
        Ok(())
    }
}

/// Settings given by the management API at registration; they win over the archive's.
#[derive(Clone, Debug, Default)]
pub struct ModelOverrides {
    pub batch_size: Option<usize>,
    pub max_batch_delay: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub initial_workers: Option<usize>,
    /// `maxWorkers` (at least `minWorkers`).
    pub max_workers: Option<usize>,
}

impl ModelOverrides {
    /// Applies the overrides; `initial_workers` sets `minWorkers` (and raises
    /// `maxWorkers` to it).
    pub fn apply(&self, settings: &mut ModelSettings) -> Result<(), String> {
        if let Some(b) = self.batch_size {
            settings.batch_size = b.max(1);
        }
        if let Some(d) = self.max_batch_delay {
            settings.max_batch_delay = d;
        }
        if let Some(t) = self.response_timeout {
            settings.response_timeout = t;
        }
        if let Some(w) = self.initial_workers {
            settings.min_workers = w;
            settings.max_workers = settings.max_workers.max(w);
        }
        if let Some(m) = self.max_workers {
            settings.max_workers = m.max(settings.min_workers);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_variables_name_known_keys_only() {
        let vars = [
            ("TS_INFERENCE_ADDRESS", "http://0.0.0.0:8085"),
            ("TS_DEFAULT_WORKERS_PER_MODEL", "3"),
            ("TS_NUMBER_OF_NETTY_THREADS", "4"),
            ("TS_CONFIG_FILE", "/x.properties"),
            ("TS_NO_SUCH_KEY", "1"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let got = env_overrides(vars);
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "default_workers_per_model",
                "inference_address",
                "number_of_netty_threads"
            ]
        );
        let mut c = ServerConfig::default();
        c.apply(&got).unwrap();
        assert_eq!(c.default_workers_per_model, 3);
        assert_eq!(c.inference_address.port(), 8085);
    }

    #[test]
    fn properties_as_java_reads_them() {
        let props =
            parse_properties("# comment\n! also\nkey=value\nspaced : v2 \nlong=a\\\n  b\nempty=\n");
        assert_eq!(props["key"], "value");
        assert_eq!(props["spaced"], "v2");
        assert_eq!(props["long"], "ab");
        assert_eq!(props["empty"], "");
        assert_eq!(props.len(), 4);
    }

    #[test]
    fn java_escapes_as_torchserve_writes_them() {
        // What `Properties.store` writes for TorchServe's snapshots: `:` and `=`
        // escaped, the JSON's line breaks as `\n`.
        let props = parse_properties(concat!(
            "inference_address=http\\://0.0.0.0\\:8080\n",
            "model_snapshot={\\n  \"name\": \"startup.cfg\",\\n  \"modelCount\": 0\\n}\n",
            "key\\ with\\=odd\\:chars = \\u00e9t\\u00e9\\t!\n",
            "spaced value with blanks\n",
            "backslash=C\\\\models\\\\\n",
            "trailing=kept\\ \n",
            "continued=a,\\\n    b\n",
        ));
        assert_eq!(props["inference_address"], "http://0.0.0.0:8080");
        assert_eq!(
            props["model_snapshot"],
            "{\n  \"name\": \"startup.cfg\",\n  \"modelCount\": 0\n}"
        );
        assert_eq!(props["key with=odd:chars"], "\u{e9}t\u{e9}\t!");
        assert_eq!(props["spaced"], "value with blanks");
        assert_eq!(props["backslash"], "C\\models\\");
        assert_eq!(props["trailing"], "kept ");
        assert_eq!(props["continued"], "a,b");
        let mut c = ServerConfig::default();
        c.apply(&props).unwrap();
        assert_eq!(c.inference_address.to_string(), "0.0.0.0:8080");
    }

    #[test]
    fn values_are_escaped_so_that_they_read_back() {
        for v in [
            "plain",
            "a\\b\\",
            " lead",
            "trail ",
            "two\nlines\ttab",
            "C:\\x=y",
        ] {
            let text = format!("k={}\n", escape_value(v));
            assert_eq!(parse_properties(&text)["k"], v, "{text:?}");
        }
    }

    #[test]
    fn malformed_values_name_their_key() {
        let mut c = ServerConfig::default();
        let err = c
            .apply(&parse_properties("job_queue_size=0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`job_queue_size`"), "{err}");
        let err = c
            .apply(&parse_properties("inference_address=nowhere"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`inference_address`"), "{err}");
        let err = c
            .apply(&parse_properties("allowed_urls=http://("))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`allowed_urls`"), "{err}");
    }

    /// Every key of the table, set to its example (unlike its default), is written and
    /// read back to the same value: a key cannot be readable but lost by a snapshot.
    #[test]
    fn every_key_survives_a_write_and_a_read() {
        let defaults = ServerConfig::default();
        let mut set = ServerConfig::default();
        for key in KEYS {
            let before = (key.write)(&set);
            (key.read)(&mut set, key.name, key.example).unwrap();
            let after = (key.write)(&set);
            assert_ne!(before, after, "`{}`: its example is its default", key.name);
            assert!(after.is_some(), "`{}` is read but not written", key.name);
        }
        let text = set.to_properties();
        let mut again = ServerConfig::default();
        again.apply(&parse_properties(&text)).unwrap();
        for key in KEYS {
            assert_eq!(
                (key.write)(&again),
                (key.write)(&set),
                "`{}` did not survive:\n{text}",
                key.name
            );
            assert_ne!(
                (key.write)(&again),
                (key.write)(&defaults),
                "`{}` came back as its default",
                key.name
            );
        }
        // And the defaults themselves come back as they were.
        let mut back = ServerConfig::default();
        back.apply(&parse_properties(&defaults.to_properties()))
            .unwrap();
        assert_eq!(back.to_properties(), defaults.to_properties());
    }

    #[test]
    fn aliases_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for key in KEYS {
            for name in std::iter::once(&key.name).chain(key.aliases) {
                assert!(seen.insert(*name), "`{name}` is in the table twice");
            }
        }
    }

    #[test]
    fn defaults_are_secure() {
        let c = ServerConfig::default();
        for addr in [c.inference_address, c.management_address, c.metrics_address] {
            assert!(addr.ip().is_loopback(), "{addr}");
        }
        assert!(!c.enable_model_api);
        assert!(!c.disable_token_authorization);
        assert!(!c.url_allowed("https://example.com/a.mar"));
    }

    #[test]
    fn allowed_urls_match_whole_urls() {
        let mut c = ServerConfig::default();
        assert!(c.url_allowed("file:///models/a.mar"));
        assert!(
            !c.url_allowed("https://example.com/a.mar"),
            "downloads need an explicit entry"
        );
        c.apply(&parse_properties(
            // A regex's `\.` is `\\.` in a .properties file, as Java reads it.
            r"allowed_urls=https://models\\.example\\.com/.*,file://.*",
        ))
        .unwrap();
        assert!(c.url_allowed("https://models.example.com/a.mar"));
        assert!(!c.url_allowed("https://modelsxexample.com/a.mar"));
        assert!(!c.url_allowed("https://models.example.com.evil.net/a.mar"));
        assert!(!c.url_allowed("xhttps://models.example.com/a.mar"));
    }

    #[test]
    fn yaml_settings_and_handler_keys() {
        let mut s = ModelSettings::defaults(&ServerConfig::default());
        s.apply_yaml(
            "minWorkers: 2\nbatchSize: 4\nmaxBatchDelay: 50\ntopk: 3\n",
            "model-config.yaml",
        )
        .unwrap();
        assert_eq!((s.min_workers, s.batch_size), (2, 4));
        assert_eq!(s.max_batch_delay, Duration::from_millis(50));
        assert_eq!(s.handler_config["topk"], 3);
        let err = s
            .apply_yaml("batchSize: many\n", "model-config.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`batchSize`"), "{err}");
    }
}
