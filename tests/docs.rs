//! The documented commands are the tested commands: every script that a README, a
//! handler guide or the Makefile names exists and is executable, so that the command a
//! user copies runs as written (a test that runs it through `bash` would not notice a
//! missing run bit; the tests run scripts directly for the same reason).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The project's Markdown files and the Makefile, outside build and dependency folders.
fn documents(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !name.starts_with('.')
                && !["target", "node_modules", "corpus"].contains(&name.as_str())
            {
                documents(&path, out);
            }
        } else if name.ends_with(".md") || name == "Makefile" {
            out.push(path);
        }
    }
}

/// The script paths (`something.sh`, `something.py` with a folder) that `text` names.
fn scripts_named(text: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"(?:\./)?\b[A-Za-z0-9_-]+(?:/[A-Za-z0-9_.-]+)*/[A-Za-z0-9_.-]+\.(?:sh|py)\b",
    )
    .unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn every_script_the_docs_name_exists_and_runs_as_written() {
    let root = root();
    let mut docs = Vec::new();
    documents(&root, &mut docs);
    assert!(docs.len() > 3, "found only {docs:?}");
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for named in scripts_named(&text) {
            // Relative to the repository root, or to the document's own folder.
            let candidates = [root.join(&named), doc.parent().unwrap().join(&named)];
            let Some(path) = candidates.iter().find(|p| p.is_file()) else {
                problems.push(format!(
                    "{} names {named}, which does not exist",
                    doc.display()
                ));
                continue;
            };
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            if mode & 0o111 == 0 {
                problems.push(format!(
                    "{} names {named}, which has no run bit (chmod +x, and `git update-index --chmod=+x`)",
                    doc.display()
                ));
            }
            let head = std::fs::read(path).unwrap();
            if !head.starts_with(b"#!") {
                problems.push(format!("{named} has no #! line"));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 5, "only {checked} scripts named in the docs");
}

#[test]
fn the_pattern_finds_script_paths() {
    assert_eq!(
        scripts_named("run `scripts/build-c-handler.sh [OUT.wasm]` or ./scripts/demo.sh; not x.sh"),
        ["scripts/build-c-handler.sh", "./scripts/demo.sh"]
    );
}
