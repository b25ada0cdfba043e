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

/// Writes a snapshot of `registry` under `config`'s settings into `dir`. Errors are
/// logged, not returned: a failed snapshot must not fail the change that caused it.
pub fn write(dir: &Path, config: &ServerConfig, registry: &Registry) {
    if let Err(e) = try_write(dir, config, registry) {
        tracing::warn!("cannot write a config snapshot into {}: {e}", dir.display());
    }
}

fn try_write(dir: &Path, config: &ServerConfig, registry: &Registry) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-snapshot.cfg",
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
    text.push_str(&config.to_properties());
    text.push_str(&format!("model_snapshot={snapshot}\n"));
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
