//! The migration guide (`docs/migrating-from-torchserve.md`) cannot drift from the code:
//! the keys in the first column of the tables under its heading "Keys wasmserve reads"
//! are exactly `config::KEYS` (names and aliases), those under "TorchServe keys that are
//! read and ignored" exactly `config::TORCHSERVE_ONLY`, each listed once; every
//! repository path it names in backticks exists; every flag its `wasmserve` commands use
//! (in `sh` blocks and inline code) is one that command's `--help` lists; and the README
//! links to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasmserve::config::{KEYS, TORCHSERVE_ONLY};

const GUIDE: &str = "docs/migrating-from-torchserve.md";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn guide() -> String {
    std::fs::read_to_string(root().join(GUIDE)).unwrap_or_else(|e| panic!("{GUIDE}: {e}"))
}

/// The level of a Markdown heading line (`## x` is 2), outside code blocks.
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    (hashes > 0 && line[hashes..].starts_with(' ')).then_some(hashes)
}

/// `text`'s lines, each with whether it is inside a fenced code block (fences included).
fn lines_with_fences(text: &str) -> Vec<(&str, bool)> {
    let mut inside = false;
    text.lines()
        .map(|line| {
            let fence = line.trim_start().starts_with("```");
            let code = inside || fence;
            if fence {
                inside = !inside;
            }
            (line, code)
        })
        .collect()
}

/// The lines of the one section whose heading contains `title`, up to the next heading
/// of the same or a higher level.
fn section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    let lines = lines_with_fences(text);
    let starts: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter(|(_, (line, code))| !code && line.contains(title))
        .filter_map(|(i, (line, _))| heading_level(line).map(|level| (i, level)))
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "{GUIDE} must have one heading containing {title:?}"
    );
    let (start, level) = starts[0];
    lines[start + 1..]
        .iter()
        .take_while(|(line, code)| *code || heading_level(line).is_none_or(|l| l > level))
        .map(|(line, _)| *line)
        .collect()
}

/// The cells of a table row, split at `|` that is not escaped as `\|`.
fn cells(row: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    if out.last().is_some_and(|c| c.trim().is_empty()) {
        out.pop();
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// `text` without its fenced code blocks.
fn prose(text: &str) -> String {
    lines_with_fences(text)
        .into_iter()
        .filter(|(_, code)| !code)
        .map(|(line, _)| format!("{line}\n"))
        .collect()
}

/// The `code` spans of `text` (prose: no fenced blocks).
fn code_spans(text: &str) -> Vec<String> {
    regex::Regex::new(r"`([^`]+)`")
        .unwrap()
        .captures_iter(text)
        .map(|c| c[1].to_string())
        .collect()
}

/// The code spans in the first column of the tables in `lines` (each table's header
/// row and separator row skipped), in order, repeats kept.
fn first_column(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut row_in_table = 0;
    for line in lines {
        if !line.trim_start().starts_with('|') {
            row_in_table = 0;
            continue;
        }
        row_in_table += 1;
        let row = cells(line);
        let separator = row.iter().all(|c| {
            let c = c.trim_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        });
        if row_in_table == 1 || separator {
            continue;
        }
        if let Some(first) = row.first() {
            out.extend(code_spans(first));
        }
    }
    out
}

/// What differs between the keys a section lists and the code's: repeats, keys missing
/// from the guide, keys the code does not have.
fn differences(listed: &[String], code: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for key in listed {
        if !seen.insert(key.clone()) {
            problems.push(format!("`{key}` is listed twice"));
        }
    }
    for key in code.difference(&seen) {
        problems.push(format!("missing: `{key}`"));
    }
    for key in seen.difference(code) {
        problems.push(format!("not a key of the code's (extra): `{key}`"));
    }
    problems
}

fn check_section(title: &str, code: BTreeSet<String>) {
    let text = guide();
    let listed = first_column(&section(&text, title));
    assert!(
        !listed.is_empty(),
        "{GUIDE}: no table with keys under {title:?}"
    );
    let problems = differences(&listed, &code);
    assert!(
        problems.is_empty(),
        "{GUIDE}, section {title:?}, against host/src/config.rs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_keys_wasmserve_reads_are_exactly_config_keys() {
    let code: BTreeSet<String> = KEYS
        .iter()
        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
        .map(String::from)
        .collect();
    check_section("Keys wasmserve reads", code);
}

#[test]
fn the_ignored_torchserve_keys_are_exactly_torchserve_only() {
    let code: BTreeSet<String> = TORCHSERVE_ONLY.iter().map(|k| k.to_string()).collect();
    check_section("TorchServe keys that are read and ignored", code);
}

/// The repository paths `text` names in code spans (`host/src/config.rs`,
/// `handlers/`), without a trailing `/`.
fn paths_named(text: &str) -> Vec<String> {
    let path = regex::Regex::new(
        r"^(?:host|tests|handlers|examples|deploy|wit|proto|scripts|docs|bench)/[A-Za-z0-9_./-]*$",
    )
    .unwrap();
    code_spans(&prose(text))
        .into_iter()
        .filter(|s| path.is_match(s))
        .map(|s| s.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn every_path_the_guide_names_exists() {
    let text = guide();
    let named = paths_named(&text);
    assert!(named.len() > 20, "only {named:?}");
    let missing: Vec<&String> = named.iter().filter(|p| !root().join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "{GUIDE} names paths that do not exist: {missing:?}"
    );
}

/// The `wasmserve …` commands of `text`: the lines of its `sh` blocks (continuation
/// lines joined, comments cut) and its inline code spans that start with `wasmserve `.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                logical.push_str(part);
                logical.push(' ');
            }
            None => {
                logical.push_str(trimmed);
                let command = std::mem::take(&mut logical);
                let command = command.split(" #").next().unwrap_or("");
                let command = command.split_whitespace().collect::<Vec<_>>().join(" ");
                if command.starts_with("wasmserve ") {
                    out.push(command);
                }
            }
        }
    }
    out.extend(
        code_spans(&prose(text))
            .into_iter()
            .filter(|s| s.starts_with("wasmserve ")),
    );
    out
}

/// The subcommand words of `command` (`["handler", "new"]`, `["archive"]`) and its
/// flags (`--model-name`, `-v`), values after `=` cut off.
fn subcommand_and_flags(command: &str) -> (Vec<String>, Vec<String>) {
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    let depth = if words.first() == Some(&"handler") {
        2
    } else {
        1
    };
    let sub = words.iter().take(depth).map(|w| w.to_string()).collect();
    let flags = words
        .iter()
        .filter(|w| w.starts_with('-') && w.len() > 1)
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect();
    (sub, flags)
}

/// Whether clap's help text lists `flag` (`--force`, or `-f` as in `-f, --force`).
fn help_lists(help: &str, flag: &str) -> bool {
    let pattern = format!(r"(?m)(^|[\s,]){}([\s,<=\[]|$)", regex::escape(flag));
    regex::Regex::new(&pattern).unwrap().is_match(help)
}

#[test]
fn every_flag_of_its_commands_is_one_the_binary_takes() {
    let text = guide();
    let commands = commands(&text);
    assert!(commands.len() >= 8, "only {commands:?}");
    let mut problems = Vec::new();
    let mut helps = std::collections::HashMap::new();
    for command in &commands {
        let (sub, flags) = subcommand_and_flags(command);
        let help = helps.entry(sub.clone()).or_insert_with(|| {
            let out = Command::new(env!("CARGO_BIN_EXE_wasmserve"))
                .args(&sub)
                .arg("--help")
                .output()
                .expect("running wasmserve --help");
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        let Some(help) = help else {
            problems.push(format!(
                "`{command}`: `wasmserve {}` is no command",
                sub.join(" ")
            ));
            continue;
        };
        for flag in flags {
            if !help_lists(help, &flag) {
                problems.push(format!(
                    "`{command}`: `wasmserve {}` has no flag {flag}",
                    sub.join(" ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{GUIDE}:\n{}", problems.join("\n"));
}

#[test]
fn the_readme_links_to_the_guide() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("]({GUIDE})")),
        "README.md has no link to {GUIDE}"
    );
}

#[test]
fn the_parsers_find_what_they_should() {
    let text = "# Guide\n\n## Keys A\n\n| key | what |\n|---|---|\n| `a`, `b` (also `c`) | `not-this` |\n\
                | `d\\|e` | x |\n\n```sh\n# not a heading\nwasmserve start --models \\\n  all --set k=v # --nope\n```\n\n\
                ### Below A\n\n| k | w |\n|:-|-:|\n| `f` | x |\n\n## Keys B\n\n| key |\n|---|\n| `g` |\n";
    let a = section(text, "Keys A");
    assert_eq!(first_column(&a), ["a", "b", "c", "d|e", "f"]);
    assert_eq!(first_column(&section(text, "Keys B")), ["g"]);
    assert_eq!(commands(text), ["wasmserve start --models all --set k=v"]);
    let (sub, flags) = subcommand_and_flags("wasmserve handler new x --target wasm32-wasip1");
    assert_eq!(
        (sub, flags),
        (
            vec!["handler".into(), "new".into()],
            vec!["--target".into()]
        )
    );
    assert!(help_lists(
        "  -f, --force\n      --model-name <MODEL_NAME>\n",
        "-f"
    ));
    assert!(help_lists(
        "  -f, --force\n      --model-name <MODEL_NAME>\n",
        "--model-name"
    ));
    assert!(!help_lists("      --model-name-x <X>\n", "--model-name"));
    assert_eq!(
        differences(
            &["x", "x", "y"].map(String::from),
            &["x", "z"].map(String::from).into()
        ),
        [
            "`x` is listed twice",
            "missing: `z`",
            "not a key of the code's (extra): `y`"
        ]
    );
    assert_eq!(
        paths_named(
            "`host/src/config.rs`, `handlers/`, `/mnt/models`, `a b/c`\n```sh\n`tests/x`\n```\n"
        ),
        ["host/src/config.rs", "handlers"]
    );
}
