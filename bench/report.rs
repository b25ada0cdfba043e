//! What one benchmark measured, kept for `bench/RESULTS.md`. A [`Report`] prints each
//! line as the benchmark goes (markdown: its tables) and keeps it; [`Report::figure`]
//! records a headline number under a dotted key (`mobilenet.rps.c1`); [`Report::save`]
//! writes `bench/results/NAME.md` (the tables) and `bench/results/NAME.json` (the
//! figures, when and on which CPU they were measured). `bench/results.rs` (the last step
//! of `make bench`) assembles `bench/RESULTS.md` from them: the summary table of the
//! figures, then each benchmark's tables. A benchmark run on its own (`make
//! bench-models`) replaces only its own part.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The folder the parts go to.
pub fn results_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results")
}

/// The CPU's model name, from /proc/cpuinfo (empty where there is none).
pub fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// One benchmark's tables and figures.
pub struct Report {
    name: &'static str,
    text: String,
    figures: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// A report saved as `bench/results/NAME.{md,json}`.
    pub fn new(name: &'static str) -> Report {
        Report {
            name,
            text: String::new(),
            figures: serde_json::Map::new(),
        }
    }

    /// Prints `s` and keeps it as a line of the report.
    pub fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.text, "{}", s.as_ref());
    }

    /// Records a headline figure for the summary table (not printed).
    pub fn figure(&mut self, key: impl Into<String>, value: f64) {
        if let Some(n) = serde_json::Number::from_f64(value) {
            self.figures
                .insert(key.into(), serde_json::Value::Number(n));
        }
    }

    /// Writes the tables and the figures, stamped with the time and the CPU.
    pub fn save(self) {
        let dir = results_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let json = serde_json::json!({
            "measured": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            "cpu": cpu(),
            "cores": cores,
            "figures": self.figures,
        });
        std::fs::write(dir.join(format!("{}.md", self.name)), &self.text).unwrap();
        std::fs::write(
            dir.join(format!("{}.json", self.name)),
            serde_json::to_string_pretty(&json).unwrap() + "\n",
        )
        .unwrap();
        eprintln!("== written to bench/results/{}.{{md,json}}", self.name);
    }
}
