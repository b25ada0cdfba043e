//! A workflow's specification file (TorchServe's workflow YAML): `models:` with the
//! global node settings (`min-workers`, `max-workers`, `batch-size`,
//! `max-batch-delay`, `retry-attempts`, `timeout-ms`) and one entry per model (`url`
//! plus its own overrides), and `dag:`, each node mapped to its successors. Parsing
//! checks the shape and the values; the graph itself is [`super::dag`]'s.

use serde_yaml::Value;

/// The settings of a node: TorchServe's keys and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    /// Milliseconds.
    pub max_batch_delay: u64,
    /// Further tries after a node timed out or found no worker.
    pub retry_attempts: usize,
    /// Each try's time bound, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            min_workers: 1,
            max_workers: 1,
            batch_size: 1,
            max_batch_delay: 50,
            retry_attempts: 1,
            timeout_ms: 10_000,
        }
    }
}

/// The keys of [`NodeSettings`], as the spec spells them.
pub const SETTING_KEYS: [&str; 6] = [
    "min-workers",
    "max-workers",
    "batch-size",
    "max-batch-delay",
    "retry-attempts",
    "timeout-ms",
];

impl NodeSettings {
    /// Applies `key: value` if `key` is a setting; `Ok(false)` if it is not one.
    fn apply(&mut self, key: &str, value: &Value, at: &str) -> Result<bool, String> {
        if !SETTING_KEYS.contains(&key) {
            return Ok(false);
        }
        let n = value
            .as_u64()
            .ok_or_else(|| format!("{at}{key} must be a whole number ≥ 0, not {value:?}"))?;
        match key {
            "min-workers" => self.min_workers = n as usize,
            "max-workers" => self.max_workers = n as usize,
            "batch-size" => self.batch_size = (n as usize).max(1),
            "max-batch-delay" => self.max_batch_delay = n,
            "retry-attempts" => self.retry_attempts = n as usize,
            _ => {
                if n == 0 {
                    return Err(format!("{at}timeout-ms must be positive"));
                }
                self.timeout_ms = n
            }
        }
        Ok(true)
    }
}

/// One entry of `models:`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Its node name (the key).
    pub name: String,
    /// Its `.mar`: a file in the war or the model store, or `file://…`.
    pub url: String,
    pub settings: NodeSettings,
}

/// A parsed specification.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The global settings (also those of the function nodes).
    pub defaults: NodeSettings,
    pub models: Vec<ModelSpec>,
    /// Each node with its successors, in the file's order.
    pub dag: Vec<(String, Vec<String>)>,
}

impl Spec {
    /// The model named `node`, if it is one.
    pub fn model(&self, node: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == node)
    }
}

fn key_of(k: &Value, what: &str) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{what} names must be strings, not {other:?}")),
    }
}

/// Parses the text of a specification file.
pub fn parse(text: &str) -> Result<Spec, String> {
    let root: Value = serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let Value::Mapping(root) = root else {
        return Err("it must be a mapping with `models:` and `dag:`".into());
    };
    for k in root.keys() {
        let k = key_of(k, "top-level key")?;
        if k != "models" && k != "dag" {
            return Err(format!(
                "unknown top-level key `{k}`: a specification has `models:` and `dag:`"
            ));
        }
    }
    let mut defaults = NodeSettings::default();
    let mut entries = Vec::new();
    match root.get("models") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(models)) => {
            for (k, v) in models {
                let key = key_of(k, "model")?;
                if !defaults.apply(&key, v, "models.")? {
                    entries.push((key, v));
                }
            }
        }
        Some(_) => return Err("`models:` must be a mapping".into()),
    }
    let mut models = Vec::new();
    for (name, v) in entries {
        let Value::Mapping(entry) = v else {
            return Err(format!(
                "models.{name} must be a mapping with a `url` (or `{name}` is a misspelt \
                 global setting: {})",
                SETTING_KEYS.join(", ")
            ));
        };
        let mut settings = defaults;
        let mut url = None;
        for (k, v) in entry {
            let key = key_of(k, "setting")?;
            if key == "url" {
                url = Some(
                    v.as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| format!("models.{name}.url must be a file name or URL"))?
                        .to_string(),
                );
            } else if !settings.apply(&key, v, &format!("models.{name}."))? {
                return Err(format!(
                    "unknown key models.{name}.{key}: a model takes url, {}",
                    SETTING_KEYS.join(", ")
                ));
            }
        }
        let url = url.ok_or_else(|| format!("models.{name} has no url (its .mar)"))?;
        check_workers(&settings, &format!("models.{name}"))?;
        models.push(ModelSpec {
            name,
            url,
            settings,
        });
    }
    check_workers(&defaults, "models")?;
    let dag = match root.get("dag") {
        Some(Value::Mapping(dag)) if !dag.is_empty() => dag,
        Some(Value::Mapping(_)) | None | Some(Value::Null) => {
            return Err("`dag:` is missing or empty: it maps each node to its successors".into());
        }
        Some(_) => return Err("`dag:` must be a mapping of nodes to lists of nodes".into()),
    };
    let mut edges = Vec::new();
    for (k, v) in dag {
        let node = key_of(k, "dag node")?;
        let next = match v {
            Value::Null => Vec::new(),
            Value::Sequence(items) => items
                .iter()
                .filter(|i| !i.is_null())
                .map(|i| key_of(i, "dag node"))
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(format!(
                    "dag.{node} must be a list of nodes, e.g. [next_node], not {other:?}"
                ));
            }
        };
        edges.push((node, next));
    }
    Ok(Spec {
        defaults,
        models,
        dag: edges,
    })
}

fn check_workers(s: &NodeSettings, at: &str) -> Result<(), String> {
    if s.max_workers < s.min_workers {
        return Err(format!(
            "{at}: max-workers ({}) is less than min-workers ({})",
            s.max_workers, s.min_workers
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_torchserves_example() {
        let spec = parse(
            "models:\n  min-workers: 1\n  max-workers: 4\n  batch-size: 3\n  max-batch-delay: 5000\n  \
             retry-attempts: 3\n  timeout-ms: 5000\n  m1:\n    url: model1.mar\n    max-workers: 2\n    \
             batch-size: 4\n  m2:\n    url: model2.mar\ndag:\n  pre_processing: [m1]\n  m1: [m2]\n  m2: [post]\n",
        )
        .unwrap();
        assert_eq!(spec.defaults.max_workers, 4);
        assert_eq!(spec.models.len(), 2);
        let m1 = spec.model("m1").unwrap();
        assert_eq!((m1.settings.batch_size, m1.settings.max_workers), (4, 2));
        assert_eq!(m1.settings.timeout_ms, 5000);
        assert_eq!(spec.model("m2").unwrap().settings.batch_size, 3);
        assert_eq!(spec.dag[0], ("pre_processing".into(), vec!["m1".into()]));
    }

    #[test]
    fn refuses_what_it_cannot_run_with_the_reason() {
        for (text, needle) in [
            ("models: [a\n", "not valid YAML"),
            ("dag: {}\n", "missing or empty"),
            ("models:\n  m: {}\ndag:\n  m: []\n", "has no url"),
            ("models:\n  batchsize: 2\ndag:\n  a: []\n", "misspelt"),
            ("models:\n  timeout-ms: -1\ndag:\n  a: []\n", "timeout-ms"),
            (
                "models:\n  m:\n    url: m.mar\n    workers: 2\ndag:\n  m: []\n",
                "unknown key",
            ),
            ("dag:\n  a: b\n", "list of nodes"),
            ("dag:\n  a: []\nextra: 1\n", "unknown top-level key"),
            (
                "models:\n  min-workers: 3\n  max-workers: 2\ndag:\n  a: []\n",
                "max-workers",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }
}
