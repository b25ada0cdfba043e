//! Config snapshots, TorchServe's `logs/config/<timestamp>-snapshot.cfg`: after every
//! change to the served set the server writes its settings and every model version
//! (archive, workers, batching, default) as a `config.properties` with a
//! `model_snapshot` key; `wasmserve start` without `--ts-config` and `--models`
//! restores the newest valid one. `--ncs` turns both off.
//!
//! Names carry a sequence number, which orders them (never the date in the name); a
//! file is written whole or not at all (temporary file, sync, rename) and ends with an
//! end line, so that one cut short is recognised and skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::ServerConfig;
use crate::registry::Registry;

/// How many snapshots to keep; older ones are removed.
const KEEP: usize = 20;

const SUFFIX: &str = "-snapshot.cfg";

/// A snapshot file's place in the order: its sequence number, then its time stamp
/// (TorchServe's names, `TIMESTAMP-snapshot.cfg`, have no sequence: 0). The sequence
/// decides, so that a name with a wrong clock (a future date) cannot outrank the
/// snapshots written after it; each writer continues from the highest on disk.
fn order_key(path: &Path) -> Option<(u64, String)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(SUFFIX)?;
    if stem.starts_with('.') {
        return None;
    }
    Some(match stem.split_once('-') {
        Some((stamp, seq)) => (seq.parse().ok()?, stamp.to_string()),
        None => (0, stem.to_string()),
    })
}

/// The snapshots in `dir`, oldest first.
fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<((u64, String), PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| Some((order_key(&p)?, p)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// What restoring found: the newest valid snapshot and its settings, and every newer
/// one that was skipped, with the reason.
#[derive(Debug, Default)]
pub struct Restorable {
    pub chosen: Option<(PathBuf, ServerConfig)>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// The newest snapshot in `dir` that reads whole: a regular file, ending with its end
/// line when this server wrote it, its settings valid, its `model_snapshot` complete
/// (JSON that parses, as many versions as its `modelCount`). Newer ones that do not
/// are skipped, each with its reason.
pub fn restorable(dir: &Path) -> Restorable {
    let mut found = Restorable::default();
    for path in snapshots(dir).into_iter().rev() {
        match check(&path) {
            Ok(config) => {
                found.chosen = Some((path, config));
                break;
            }
            Err(why) => found.skipped.push((path, why)),
        }
    }
    found
}

/// The first line of a snapshot this server writes, and its last: a file that starts
/// with the one and lacks the other was cut short (a truncated `key=value` line still
/// parses, as a wrong value).
const HEADER: &str = "# wasmserve config snapshot";
const END: &str = "# end of wasmserve config snapshot\n";

fn check(path: &Path) -> Result<ServerConfig, String> {
    let text = crate::fsutil::read_to_string(path).map_err(|e| e.to_string())?;
    if text.starts_with(HEADER) && !text.ends_with(END) {
        return Err("it does not end with its end line: it was cut short".into());
    }
    let config = ServerConfig::from_text(&text).map_err(|e| e.to_string())?;
    let models = config
        .model_snapshot
        .as_deref()
        .ok_or("it has no model_snapshot (cut short?)")?;
    let value: serde_json::Value = serde_json::from_str(models)
        .map_err(|e| format!("its model_snapshot is not whole JSON: {e}"))?;
    let listed = parse_models(models)?.len() as u64;
    match value["modelCount"].as_u64() {
        Some(n) if n == listed => Ok(config),
        n => Err(format!(
            "its model_snapshot lists {listed} version(s) but says modelCount {n:?}"
        )),
    }
}

/// Serializes writers, so that two changes never race for a name and a later snapshot
/// always records a later state.
static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes a snapshot of `registry` under `config`'s settings into `dir`. Errors are
/// logged, not returned: a failed snapshot must not fail the change that caused it.
pub fn write(dir: &Path, config: &ServerConfig, registry: &Registry) {
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = try_write(dir, config, registry) {
        tracing::warn!("cannot write a config snapshot into {}: {e}", dir.display());
    }
}

fn try_write(dir: &Path, config: &ServerConfig, registry: &Registry) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // After the highest sequence on disk, whatever the names' clocks say; two changes
    // in one millisecond get two names.
    let sequence = snapshots(dir)
        .iter()
        .filter_map(|p| order_key(p))
        .map(|(seq, _)| seq)
        .max()
        .unwrap_or(0)
        + 1;
    let name = format!(
        "{}-{sequence:06}{SUFFIX}",
        chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
    );
    let mut models = serde_json::Map::new();
    let mut count = 0;
    for (model, default) in registry.list() {
        let mut versions = serde_json::Map::new();
        // A workflow's models come and go with their workflow, which is not recorded.
        for v in registry.versions(&model).unwrap_or_default() {
            if v.workflow.is_some() {
                continue;
            }
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
        if !versions.is_empty() {
            models.insert(model, versions.into());
        }
    }
    let snapshot = json!({"name": name, "modelCount": count, "models": models});
    let mut text = format!("{HEADER}, {}\n", chrono::Utc::now().to_rfc3339());
    // The server's settings through the one table of keys (config::KEYS), with this
    // snapshot's models as its `model_snapshot`.
    let mut settings = config.clone();
    settings.model_snapshot = Some(snapshot.to_string());
    text.push_str(&settings.to_properties());
    text.push_str(END);
    write_durably(dir, &name, text.as_bytes())?;
    prune(dir);
    Ok(())
}

/// Writes `bytes` as `dir/name` so that a crash at any moment leaves either the whole
/// file or none: into a temporary file, synced, renamed over, and the folder synced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    file.write_all(first)?;
    crate::fsutil::test_pause("WASMSERVE_TEST_SNAPSHOT_PAUSE_MS");
    file.write_all(rest)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Keeps the newest [`KEEP`] snapshots, and removes temporary files left by a crash.
fn prune(dir: &Path) {
    let all = snapshots(dir);
    let excess = all.len().saturating_sub(KEEP);
    for old in &all[..excess] {
        let _ = std::fs::remove_file(old);
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
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

    /// The newest snapshot in `dir`, valid or not.
    fn latest(dir: &Path) -> Option<PathBuf> {
        snapshots(dir).pop()
    }

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
    fn the_sequence_orders_snapshots_not_the_date_in_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let (config, registry) = (ServerConfig::default(), Registry::default());
        std::fs::write(
            dir.path().join("29991231235959999-000004-snapshot.cfg"),
            "model_snapshot={}",
        )
        .unwrap();
        std::fs::write(dir.path().join("20200101000000000-snapshot.cfg"), "").unwrap();
        write(dir.path(), &config, &registry);
        let newest = latest(dir.path()).unwrap();
        assert!(
            newest.to_string_lossy().ends_with("-000005-snapshot.cfg"),
            "{}",
            newest.display()
        );
    }

    #[test]
    fn a_cut_short_snapshot_is_skipped_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (config, registry) = (ServerConfig::default(), Registry::default());
        write(dir.path(), &config, &registry);
        let good = latest(dir.path()).unwrap();
        let text = std::fs::read_to_string(&good).unwrap();
        let cut = dir.path().join("20261201000000000-000002-snapshot.cfg");
        std::fs::write(&cut, &text[..text.len() - 10]).unwrap();
        let found = restorable(dir.path());
        assert_eq!(found.chosen.map(|(p, _)| p), Some(good));
        assert_eq!(found.skipped.len(), 1);
        assert_eq!(found.skipped[0].0, cut);
        assert!(
            found.skipped[0].1.contains("cut short"),
            "{:?}",
            found.skipped
        );
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
