//! Config snapshots, TorchServe's `logs/config/<timestamp>-snapshot.cfg`: after every
//! change to the served set the server writes its settings and every model version
//! (archive, workers, batching, default) as a `config.properties` with a
//! `model_snapshot` key; `wasmserve start` without `--ts-config` and `--models`
//! restores the newest one. `--ncs` turns both off.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::ServerConfig;
use crate::registry::Registry;

/// How many snapshots to keep; older ones are removed.
const KEEP: usize = 20;

/// The newest snapshot in `dir`, if any.
pub fn latest(dir: &Path) -> Option<PathBuf> {
    let mut snapshots: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-snapshot.cfg"))
        .collect();
    snapshots.sort();
    snapshots.pop()
}

/// Serializes writers, so that two changes never race for a name and a later snapshot
/// always records a later state; the value counts the snapshots this process wrote.
static WRITER: std::sync::Mutex<u64> = std::sync::Mutex::new(0);

/// Writes a snapshot of `registry` under `config`'s settings into `dir`. Errors are
/// logged, not returned: a failed snapshot must not fail the change that caused it.
pub fn write(dir: &Path, config: &ServerConfig, registry: &Registry) {
    let mut sequence = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    *sequence += 1;
    if let Err(e) = try_write(dir, config, registry, *sequence) {
        tracing::warn!("cannot write a config snapshot into {}: {e}", dir.display());
    }
}

fn try_write(
    dir: &Path,
    config: &ServerConfig,
    registry: &Registry,
    sequence: u64,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Two changes can land in the same millisecond (a scale answered and a set-default
    // right after it): the sequence number keeps both, and keeps names sorting in the
    // order they were written.
    let name = format!(
        "{}-{sequence:06}-snapshot.cfg",
        chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
    );
    let mut models = serde_json::Map::new();
    let mut count = 0;
    for (model, default) in registry.list() {
        let mut versions = serde_json::Map::new();
        for v in registry.versions(&model).unwrap_or_default() {
            let (min, max) = v.workers_range();
            count += 1;
            versions.insert(
                v.version.clone(),
                json!({
                    "defaultVersion": v.version == default.version,
                    "marName": v.url,
                    "minWorkers": min,
                    "maxWorkers": max,
                    "batchSize": v.settings.batch_size,
                    "maxBatchDelay": v.settings.max_batch_delay.as_millis() as u64,
                    "responseTimeout": v.settings.response_timeout.as_secs(),
                }),
            );
        }
        models.insert(model, versions.into());
    }
    let snapshot = json!({"name": name, "modelCount": count, "models": models});
    let mut text = format!(
        "# wasmserve config snapshot, {}\n",
        chrono::Utc::now().to_rfc3339()
    );
    // The server's settings through the one table of keys (config::KEYS), with this
    // snapshot's models as its `model_snapshot`.
    let mut settings = config.clone();
    settings.model_snapshot = Some(snapshot.to_string());
    text.push_str(&settings.to_properties());
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(&name))?;
    prune(dir);
    Ok(())
}

fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut snapshots: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-snapshot.cfg"))
        .collect();
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(KEEP);
    for old in &snapshots[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

/// One model version recorded in a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotModel {
    pub name: String,
    pub version: String,
    pub default: bool,
    pub url: String,
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    pub max_batch_delay_ms: u64,
    pub response_timeout_s: u64,
}

/// Reads the `model_snapshot` value of a snapshot.
pub fn parse_models(value: &str) -> Result<Vec<SnapshotModel>, String> {
    let v: serde_json::Value = serde_json::from_str(value).map_err(|e| format!("not JSON: {e}"))?;
    let models = v["models"].as_object().ok_or("no `models` object")?;
    let mut out = Vec::new();
    for (name, versions) in models {
        for (version, m) in versions
            .as_object()
            .ok_or("a model's versions must be an object")?
        {
            let num = |k: &str| {
                m[k].as_u64()
                    .ok_or_else(|| format!("{name} {version}: `{k}` must be a number"))
            };
            out.push(SnapshotModel {
                name: name.clone(),
                version: version.clone(),
                default: m["defaultVersion"].as_bool().unwrap_or(false),
                url: m["marName"]
                    .as_str()
                    .ok_or_else(|| format!("{name} {version}: no marName"))?
                    .to_string(),
                min_workers: num("minWorkers")? as usize,
                max_workers: num("maxWorkers")? as usize,
                batch_size: num("batchSize")? as usize,
                max_batch_delay_ms: num("maxBatchDelay")?,
                response_timeout_s: num("responseTimeout")?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_in_the_same_millisecond_each_get_a_snapshot_and_the_last_is_newest() {
        let dir = tempfile::tempdir().unwrap();
        let (config, registry) = (ServerConfig::default(), Registry::default());
        for _ in 0..5 {
            write(dir.path(), &config, &registry);
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        names.sort();
        assert_eq!(latest(dir.path()), names.pop());
        let text = std::fs::read_to_string(latest(dir.path()).unwrap()).unwrap();
        assert!(text.contains("model_snapshot={"), "{text}");
    }

    #[test]
    fn only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (config, registry) = (ServerConfig::default(), Registry::default());
        for _ in 0..KEEP + 3 {
            write(dir.path(), &config, &registry);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), KEEP);
    }
}
