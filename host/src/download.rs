//! Registering from `http(s)://` URLs: the archive is downloaded into the model store,
//! only from URLs that `allowed_urls` allows, with every redirect checked again, within
//! `max_download_size`, under a file name taken from the URL that cannot escape the
//! store. A failed download leaves no file behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::config::ServerConfig;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Why a download failed; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("URL {0} is not allowed: add a matching pattern to allowed_urls")]
    NotAllowed(String),
    #[error("cannot take an archive file name from {0}: the URL must end in NAME.mar")]
    BadName(String),
    #[error("Model archive file {0} already exists in the model store")]
    Exists(String),
    #[error("the archive at {url} is larger than max_download_size ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("downloading {url}: {message}")]
    Fetch { url: String, message: String },
}

/// The file name an archive URL is stored under: its last path segment, which must be
/// `NAME.mar` with TorchServe's name characters.
pub fn file_name(url: &str) -> Result<String, DownloadError> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or("");
    let stem = name
        .strip_suffix(".mar")
        .ok_or_else(|| DownloadError::BadName(url.into()))?;
    crate::archive::validate_model_name(stem).map_err(|_| DownloadError::BadName(url.into()))?;
    Ok(name.to_string())
}

/// Downloads `url` into `store` and returns the file's path.
pub fn download(url: &str, store: &Path, config: &ServerConfig) -> Result<PathBuf, DownloadError> {
    let name = file_name(url)?;
    let target = store.join(&name);
    if target.exists() {
        return Err(DownloadError::Exists(name));
    }
    let fetch_err = |message: String| DownloadError::Fetch {
        url: url.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let mut current = url.to_string();
    let mut response = None;
    for _ in 0..=MAX_REDIRECTS {
        if !config.url_allowed(&current) {
            return Err(DownloadError::NotAllowed(current));
        }
        let resp = agent
            .get(&current)
            .call()
            .map_err(|e| fetch_err(e.to_string()))?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| fetch_err(format!("{status} without a Location")))?;
            current = resolve(&current, location);
            continue;
        }
        if !status.is_success() {
            return Err(fetch_err(format!("the server answered {status}")));
        }
        response = Some(resp);
        break;
    }
    let response =
        response.ok_or_else(|| fetch_err(format!("more than {MAX_REDIRECTS} redirects")))?;
    let limit = config.max_download_size;
    let mut tmp = tempfile::NamedTempFile::new_in(store).map_err(|e| fetch_err(e.to_string()))?;
    let mut body = response.into_body().into_reader().take(limit + 1);
    let n = std::io::copy(&mut body, &mut tmp).map_err(|e| fetch_err(e.to_string()))?;
    if n > limit {
        return Err(DownloadError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    tmp.flush().map_err(|e| fetch_err(e.to_string()))?;
    tmp.persist_noclobber(&target)
        .map_err(|_| DownloadError::Exists(name))?;
    Ok(target)
}

/// `location` relative to `base` (absolute URLs, absolute paths and relative paths).
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        format!("{}{location}", &base[..host_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= host_end)
            .map_or(host_end, |i| i);
        format!("{}/{location}", &base[..dir_end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape_the_store() {
        assert_eq!(
            file_name("https://h/x/resnet-18.mar?sig=1").unwrap(),
            "resnet-18.mar"
        );
        for bad in [
            "https://h/x/",
            "https://h/..mar",
            "https://h/a/../.mar",
            "https://h/model.zip",
            "https://h/%2e%2e.mar",
        ] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_against_the_current_url() {
        assert_eq!(
            resolve("http://a:1/m/x.mar", "/n/y.mar"),
            "http://a:1/n/y.mar"
        );
        assert_eq!(resolve("http://a:1/m/x.mar", "y.mar"), "http://a:1/m/y.mar");
        assert_eq!(
            resolve("http://a:1/m/x.mar", "https://b/z.mar"),
            "https://b/z.mar"
        );
    }
}
