//! Token authorization as TorchServe 0.11+ does it: at start the server writes
//! `key_file.json` (mode 0600) with three keys, and every request to the inference API
//! must carry `Authorization: Bearer <inference key>`, every request to the management
//! API `Authorization: Bearer <management key>`. A missing, wrong or expired key is a
//! 400 `InvalidKeyException`, in TorchServe's words. `GET /token?type=inference|management`
//! on the management API, with the `API` key, replaces that key (the old one stops
//! working) and rewrites the file.
//!
//! Not checked, on purpose: `GET /ping` and `GET /v2/health/{live,ready}` (so that
//! Kubernetes and load balancers can probe a server with keys on; TorchServe's frontend
//! checks the inference key before the handler that serves `/ping`, so a keyless
//! `/ping` there is refused), `OPTIONS /` (the API description) and the metrics API.
//! `--disable-token-auth` or
//! `disable_token_authorization=true` turns all of it off.
//!
//! The file, as TorchServe writes it:
//!
//! ```json
//! {
//!   "management": {"key": "…", "expiration time": "2026-11-26T19:15:00Z"},
//!   "inference": {"key": "…", "expiration time": "2026-11-26T19:15:00Z"},
//!   "API": {"key": "…"}
//! }
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request};

use crate::core::Error;

/// Which key a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Inference,
    Management,
}

#[derive(Clone, Debug)]
struct Key {
    key: String,
    expires: DateTime<Utc>,
}

#[derive(Debug)]
struct Keys {
    inference: Key,
    management: Key,
    api: String,
}

/// The keys of a running server and the file that publishes them.
#[derive(Debug)]
pub struct TokenAuth {
    keys: Mutex<Keys>,
    file: PathBuf,
    lifetime: Duration,
}

fn new_key() -> String {
    // 122 random bits from the OS generator.
    uuid::Uuid::new_v4().simple().to_string()
}

impl TokenAuth {
    /// Makes fresh keys valid for `lifetime` and writes them to `file` (mode 0600).
    pub fn generate(file: &Path, lifetime: Duration) -> std::io::Result<TokenAuth> {
        let expires = Utc::now() + lifetime;
        let auth = TokenAuth {
            keys: Mutex::new(Keys {
                inference: Key {
                    key: new_key(),
                    expires,
                },
                management: Key {
                    key: new_key(),
                    expires,
                },
                api: new_key(),
            }),
            file: file.to_path_buf(),
            lifetime,
        };
        auth.write()?;
        Ok(auth)
    }

    /// Where the keys are.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn json(keys: &Keys) -> serde_json::Value {
        let ts = |k: &Key| k.expires.to_rfc3339_opts(SecondsFormat::Secs, true);
        serde_json::json!({
            "management": {"key": keys.management.key, "expiration time": ts(&keys.management)},
            "inference": {"key": keys.inference.key, "expiration time": ts(&keys.inference)},
            "API": {"key": keys.api},
        })
    }

    /// Writes the key file, readable by its owner only.
    fn write(&self) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&Self::json(&self.lock()))? + "\n";
        if let Some(dir) = self.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let dir = self
            .file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // tempfile creates with mode 0600; renaming keeps it.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }

    /// The bearer key of a request, if any.
    fn bearer<B>(req: &Request<B>) -> Option<&str> {
        let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, key) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    }

    /// Whether `req` may use the API that needs `kind`.
    pub fn check<B>(&self, kind: KeyKind, req: &Request<B>) -> Result<(), Error> {
        let path = req.uri().path().trim_end_matches('/');
        let open = (kind == KeyKind::Inference && path == "/ping" && req.method() == Method::GET)
            || (path.is_empty() && req.method() == Method::OPTIONS)
            || (kind == KeyKind::Management && path == "/token")
            // Health probes (Kubernetes, KServe) carry no key.
            || (kind == KeyKind::Inference
                && matches!(path, "/v2/health/live" | "/v2/health/ready")
                && req.method() == Method::GET);
        if open {
            return Ok(());
        }
        let given = Self::bearer(req).ok_or(Error::InvalidKey)?;
        let keys = self.lock();
        let key = match kind {
            KeyKind::Inference => &keys.inference,
            KeyKind::Management => &keys.management,
        };
        if constant_time_eq(given.as_bytes(), key.key.as_bytes()) && Utc::now() < key.expires {
            Ok(())
        } else {
            Err(Error::InvalidKey)
        }
    }

    /// `GET /token?type=…` with the `API` key: a new key of that type, returned as the
    /// whole key file.
    pub fn refresh<B>(&self, req: &Request<B>, kind: &str) -> Result<serde_json::Value, Error> {
        let given = Self::bearer(req).ok_or(Error::InvalidKey)?;
        let value = {
            let mut keys = self.lock();
            if !constant_time_eq(given.as_bytes(), keys.api.as_bytes()) {
                return Err(Error::InvalidKey);
            }
            let fresh = Key {
                key: new_key(),
                expires: Utc::now() + self.lifetime,
            };
            match kind {
                "inference" => keys.inference = fresh,
                "management" => keys.management = fresh,
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid value for parameter type: {other}; use inference or management"
                    )));
                }
            }
            Self::json(&keys)
        };
        self.write()
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", self.file.display())))?;
        Ok(value)
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, key: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(path).method(Method::POST);
        if let Some(k) = key {
            b = b.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        b.body(()).unwrap()
    }

    #[test]
    fn keys_are_checked_per_api_and_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key_file.json");
        let auth = TokenAuth::generate(&file, Duration::from_secs(60)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let keys: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let inf = keys["inference"]["key"].as_str().unwrap().to_string();
        let mgmt = keys["management"]["key"].as_str().unwrap().to_string();
        let api = keys["API"]["key"].as_str().unwrap().to_string();
        let p = "/predictions/m";
        assert!(auth.check(KeyKind::Inference, &req(p, Some(&inf))).is_ok());
        assert!(
            auth.check(KeyKind::Inference, &req(p, Some(&mgmt)))
                .is_err()
        );
        assert!(auth.check(KeyKind::Inference, &req(p, None)).is_err());
        assert!(
            auth.check(KeyKind::Management, &req("/models", Some(&mgmt)))
                .is_ok()
        );
        assert!(
            auth.refresh(&req("/token", Some(&inf)), "inference")
                .is_err()
        );
        let fresh = auth
            .refresh(&req("/token", Some(&api)), "inference")
            .unwrap();
        let new_inf = fresh["inference"]["key"].as_str().unwrap();
        assert_ne!(new_inf, inf);
        assert!(auth.check(KeyKind::Inference, &req(p, Some(&inf))).is_err());
        assert!(
            auth.check(KeyKind::Inference, &req(p, Some(new_inf)))
                .is_ok()
        );
        let expired = TokenAuth::generate(&file, Duration::ZERO).unwrap();
        let keys: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let k = keys["inference"]["key"].as_str().unwrap();
        assert!(expired.check(KeyKind::Inference, &req(p, Some(k))).is_err());
    }
}
