//! Python handlers: `wasmserve archive --handler handler.py` builds a handler written
//! against wasmserve's TorchServe-shaped Python module (`wasmserve_handler`, see
//! `examples/python_handler`) into a component with componentize-py, and refuses a plain
//! TorchServe handler (one that imports torch, numpy, PIL or TorchServe's `ts`, or defines
//! no `WitWorld`) with a message that says what runs in the sandbox and what does not.
//!
//! This module owns: the check of the handler's source, the installation of
//! componentize-py on first use (into the same cache venv and under the same lock as
//! `scripts/build-python-handler.sh`, so that both share it), the build itself (the
//! handler's folder's `*.py`, the embedded `wasmserve_handler.py` and the embedded WIT
//! package in a temporary folder), and the message a server gives when an archive made
//! by TorchServe's torch-model-archiver names a Python handler ([`refusal_at_load`]).
//! The binary needs nothing of the repository at run time: the glue module and the WIT
//! files are compiled in.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, bail};

use crate::builtin;

/// The componentize-py release handlers are built with (the same as the script's).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The glue between a TorchServe-style class and the WIT world, put next to the handler
/// unless its folder has its own copy.
const GLUE: &str = include_str!("../../../examples/python_handler/wasmserve_handler.py");
const GLUE_FILE: &str = "wasmserve_handler.py";

/// Where the example lives, in the wasmserve repository.
pub const EXAMPLE: &str = "examples/python_handler";

/// Packages a TorchServe handler commonly imports that cannot run inside the sandbox
/// (native code, or TorchServe's own `ts`), by their top-level module name.
const FORBIDDEN: &[&str] = &[
    "torch",
    "torchvision",
    "torchaudio",
    "torchtext",
    "ts",
    "numpy",
    "PIL",
    "cv2",
    "scipy",
    "pandas",
    "sklearn",
    "transformers",
    "onnxruntime",
];

/// Builds the Python handler at `path` into a component: checks its source, installs
/// componentize-py on first use, and runs it over a copy of the handler's folder.
pub fn build(path: &Path) -> anyhow::Result<Vec<u8>> {
    let source = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    if let Err(problem) = check_source(&source) {
        bail!("{}", refusal(&file, &problem));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !is_identifier(&stem) || stem == "wasmserve_handler" || stem == "wit_world" {
        bail!(
            "{file}: componentize-py imports the handler as the module {stem:?}, which is not a \
             usable Python module name; rename the file (letters, digits and `_`, e.g. handler.py)"
        );
    }

    let componentize_py = componentize_py()?;

    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let src = work.path().join("src");
    let wit = work.path().join("wit");
    fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    fs::create_dir_all(&wit).with_context(|| format!("creating {}", wit.display()))?;
    copy_sources(path, &src)?;
    if !src.join(GLUE_FILE).exists() {
        fs::write(src.join(GLUE_FILE), GLUE).context("writing wasmserve_handler.py")?;
    }
    for (name, text) in crate::sandbox::WIT_FILES {
        fs::write(wit.join(name), text).with_context(|| format!("writing wit/{name}"))?;
    }

    let out = work.path().join("out.wasm");
    eprintln!("wasmserve archive: building {file} with componentize-py (about 20 s)");
    // componentize-py generates the bindings (module wit_world) from wit/, imports the
    // handler at build time and snapshots the initialised interpreter into the component.
    let run = Command::new(&componentize_py)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "handler", "componentize", "-p"])
        .arg(&src)
        .arg(&stem)
        .arg("-o")
        .arg(&out)
        .current_dir(&src)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Its own Rust backtrace would bury the handler's Python traceback.
        .env("RUST_BACKTRACE", "0")
        .output()
        .with_context(|| format!("running {}", componentize_py.display()))?;
    if !run.status.success() || !out.is_file() {
        bail!(
            "componentize-py could not build {file} ({}):\n{}\n\
             componentize-py imports the handler while it builds, so an exception above is \
             one raised by the handler's module; only pure Python and the standard library \
             are bundled (see {EXAMPLE} in the wasmserve repository)",
            run.status,
            tail(&run)
        );
    }
    fs::read(&out).with_context(|| format!("reading {}", out.display()))
}

/// The message the server gives when an archive (made by TorchServe's
/// torch-model-archiver) names the Python handler `handler` that is no built-in.
pub fn refusal_at_load(handler: &str) -> String {
    let module = handler.split_once(':').map_or(handler, |(m, _)| m);
    let file = module.rsplit('/').next().unwrap_or(module);
    let file = if file.ends_with(".py") {
        file.to_string()
    } else {
        format!("{file}.py")
    };
    format!(
        "handler {handler:?} is a TorchServe Python handler, which wasmserve cannot run as \
         it is: wasmserve runs handlers as WebAssembly components.{}\n\
         Port the handler to the wasmserve_handler module after {EXAMPLE} in the wasmserve \
         repository, then rebuild the archive with `wasmserve archive --handler {file} …` \
         (it builds the component with componentize-py and packs it); or rebuild it with a \
         built-in handler, e.g. `wasmserve archive --handler image_classifier …` ({})",
        what_runs(),
        builtin::names().join(", ")
    )
}

/// What keeps a Python file from being built into a handler.
#[derive(Debug, PartialEq)]
enum Problem {
    /// It imports packages that cannot run in the sandbox: (top-level module, line).
    Imports(Vec<(String, usize)>),
    /// It does not define `WitWorld`, the component's exports.
    NoWitWorld,
}

/// The refusal for `file` with `problem`.
fn refusal(file: &str, problem: &Problem) -> String {
    let head = match problem {
        Problem::Imports(found) => {
            let list = found
                .iter()
                .map(|(m, line)| format!("{m} (line {line})"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "{file} imports {list}, which cannot run in wasmserve: this is a plain \
                 TorchServe Python handler, and wasmserve runs handlers as WebAssembly \
                 components."
            )
        }
        Problem::NoWitWorld => format!(
            "{file} defines no `WitWorld` (the component's exports: `WitWorld = \
             export(MyHandler)` at the end of the file, with `export` from the \
             wasmserve_handler module), so it is not a wasmserve Python handler."
        ),
    };
    format!(
        "{head}{}\n\
         Port it after {EXAMPLE} in the wasmserve repository (an MNIST classifier: its \
         handler.py subclasses wasmserve_handler.BaseHandler; `wasmserve archive` adds \
         wasmserve_handler.py when the handler's folder has none), then run \
         `wasmserve archive --handler {file} …` again; or use a built-in handler, e.g. \
         `--handler image_classifier` ({})",
        what_runs(),
        builtin::names().join(", ")
    )
}

/// What a Python handler can do in the sandbox, and what it cannot.
fn what_runs() -> &'static str {
    "\nWhat runs in the sandbox: pure Python and the standard library modules componentize-py \
     bundles (json, struct, array, zlib, math, re, …); the `wasmserve_handler` module's \
     BaseHandler with TorchServe's initialize(context), preprocess(data) and \
     postprocess(outputs); the host's `image` interface for decoding and resizing images \
     (`from wit_world.imports import image`); the model's forward, which the host runs in \
     libtorch between preprocess and postprocess.\n\
     What does not: torch, numpy, PIL or any other package with native code (nor \
     TorchServe's `ts` package) inside the sandbox; the network; files other than the \
     archive's, read-only under /model."
}

/// Checks that `source` is a wasmserve Python handler: no import of a package that
/// cannot run in the sandbox, and a `WitWorld` defined at the top level.
fn check_source(source: &str) -> Result<(), Problem> {
    let code = strip_strings_and_comments(source);
    let import = regex::Regex::new(r"^\s*import\s+(.+)$").unwrap();
    let from = regex::Regex::new(r"^\s*from\s+([A-Za-z_][\w.]*)\s+import\b(.*)$").unwrap();
    let world = regex::Regex::new(r"^(WitWorld\s*[=:]|class\s+WitWorld\b)").unwrap();
    let mut found: Vec<(String, usize)> = Vec::new();
    let mut defines_world = false;
    for (n, line) in logical_lines(&code) {
        for statement in line.split(';') {
            let mut modules: Vec<&str> = Vec::new();
            if let Some(c) = import.captures(statement) {
                for item in c.get(1).unwrap().as_str().split(',') {
                    let name = item.split_whitespace().next().unwrap_or("");
                    modules.push(name.trim_matches(|c| c == '(' || c == ')'));
                }
            } else if let Some(c) = from.captures(statement) {
                modules.push(c.get(1).unwrap().as_str());
                // `from x import WitWorld` (or `… as WitWorld`) defines it too.
                let names = c[2].replace(['(', ')', '\\'], " ");
                if names
                    .split(',')
                    .any(|n| n.split_whitespace().last() == Some("WitWorld"))
                {
                    defines_world = true;
                }
            } else if world.is_match(statement) {
                defines_world = true;
            }
            for module in modules {
                let top = module.split('.').next().unwrap_or("");
                if FORBIDDEN.contains(&top) && !found.iter().any(|(m, _)| m == top) {
                    found.push((top.to_string(), n));
                }
            }
        }
    }
    if !found.is_empty() {
        return Err(Problem::Imports(found));
    }
    if !defines_world {
        return Err(Problem::NoWitWorld);
    }
    Ok(())
}

/// `source` with its string literals emptied and its comments removed, line breaks kept
/// (so that line numbers still hold): an `import torch` inside a docstring is no import.
fn strip_strings_and_comments(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' || c == b'\'' {
            let triple = b[i..].starts_with(&[c, c, c]);
            i += if triple { 3 } else { 1 };
            while i < b.len() {
                if b[i] == b'\\' {
                    if b.get(i + 1) == Some(&b'\n') {
                        out.push(b'\n');
                    }
                    i += 2;
                    continue;
                }
                if triple && b[i..].starts_with(&[c, c, c]) {
                    i += 3;
                    break;
                }
                if !triple && b[i] == c {
                    i += 1;
                    break;
                }
                if b[i] == b'\n' {
                    out.push(b'\n');
                    if !triple {
                        // An unterminated string ends at its line.
                        i += 1;
                        break;
                    }
                }
                i += 1;
            }
            out.extend_from_slice(b"\"\"");
        } else {
            out.push(c);
            i += 1;
        }
    }
    // Only whole ASCII-delimited ranges were dropped, so the rest is still UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// The logical lines of `code` (stripped of strings and comments), each with the number
/// of the line it starts on: lines inside brackets or ending with `\\` are joined.
fn logical_lines(code: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut depth = 0usize;
    for (n, line) in code.lines().enumerate() {
        if current.is_empty() {
            start = n + 1;
        }
        for c in line.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if let Some(joined) = line.strip_suffix('\\') {
            current.push_str(joined);
            current.push(' ');
        } else if depth > 0 {
            current.push_str(line);
            current.push(' ');
        } else {
            current.push_str(line);
            lines.push((start, std::mem::take(&mut current)));
        }
    }
    if !current.is_empty() {
        lines.push((start, current));
    }
    lines
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Copies the `*.py` files of the handler's folder (the handler may import its sibling
/// modules) into `to`.
fn copy_sources(handler: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = match handler.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "py") && path.is_file() {
            fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The cache folder: `$WASMSERVE_CACHE`, else `~/.cache/wasmserve` (as the scripts).
fn cache_root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WASMSERVE_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("wasmserve")),
        None => bail!(
            "neither WASMSERVE_CACHE nor HOME is set: set WASMSERVE_CACHE to a folder where \
             componentize-py can be installed"
        ),
    }
}

/// The `componentize-py` executable, installed into the cache's venv on first use
/// (`${WASMSERVE_CACHE:-~/.cache/wasmserve}/componentize-py-VERSION`, under the lock
/// `scripts/build-python-handler.sh` takes too).
fn componentize_py() -> anyhow::Result<PathBuf> {
    let cache = cache_root()?;
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let venv = cache.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let exe = venv.join("bin").join("componentize-py");
    let lock_path = cache.join(".componentize-py.lock");
    // One installer at a time; the lock goes with the file when it is dropped.
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let works = || {
        Command::new(&exe)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if venv.join(".installed").is_file() && works() {
        return Ok(exe);
    }
    eprintln!(
        "wasmserve archive: installing componentize-py {COMPONENTIZE_PY_VERSION} into {} \
         (once; needs PyPI)",
        venv.display()
    );
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    let python = std::env::var_os("PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let shown = python.to_string_lossy().into_owned();
    let made = match Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{shown} is not installed (or not on PATH): building a Python handler needs \
             Python 3 with venv to install componentize-py (Debian/Ubuntu: apt install \
             python3 python3-venv), or set PYTHON to the interpreter to use"
        ),
        Err(e) => return Err(e).with_context(|| format!("running {shown}")),
    };
    if !made.status.success() {
        let _ = fs::remove_dir_all(&venv);
        bail!(
            "`{shown} -m venv {}` failed ({}):\n{}\n\
             install Python's venv module (Debian/Ubuntu: apt install python3-venv), or set \
             PYTHON to another interpreter",
            venv.display(),
            made.status,
            tail(&made)
        );
    }
    let pip = Command::new(venv.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
        ])
        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
        .output()
        .context("running pip in the componentize-py venv")?;
    if !pip.status.success() {
        let _ = fs::remove_dir_all(&venv);
        bail!(
            "pip could not install componentize-py=={COMPONENTIZE_PY_VERSION} ({}):\n{}\n\
             it needs access to PyPI the first time (behind a proxy: HTTPS_PROXY, or \
             PIP_INDEX_URL for a mirror); then run the command again",
            pip.status,
            tail(&pip)
        );
    }
    if !works() {
        let _ = fs::remove_dir_all(&venv);
        bail!(
            "componentize-py {COMPONENTIZE_PY_VERSION} was installed into {} but does not \
             run; remove that folder and run the command again",
            venv.display()
        );
    }
    fs::write(venv.join(".installed"), b"")
        .with_context(|| format!("writing {}", venv.join(".installed").display()))?;
    drop(lock);
    Ok(exe)
}

/// The last lines a process wrote (stderr, else stdout), for an error message.
fn tail(output: &Output) -> String {
    const LINES: usize = 40;
    let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(&output.stderr)
    } else {
        String::from_utf8_lossy(&output.stdout)
    };
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let skip = lines.len().saturating_sub(LINES);
    let mut shown = lines[skip..].join("\n");
    if skip > 0 {
        shown.insert_str(0, &format!("[… {skip} lines before]\n"));
    }
    if shown.is_empty() {
        shown = "(it printed nothing)".into();
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_HANDLER: &str = include_str!("../../../examples/python_handler/handler.py");

    const TORCHSERVE_HANDLER: &str = r#"""" A TorchServe handler. """
import io
import torch
from PIL import Image
from ts.torch_handler.base_handler import BaseHandler


class MyHandler(BaseHandler):
    def preprocess(self, data):
        import numpy as np
        return torch.tensor(np.array(Image.open(io.BytesIO(data[0]["body"]))))
"#;

    #[test]
    fn the_examples_handler_is_accepted() {
        assert_eq!(check_source(EXAMPLE_HANDLER), Ok(()));
    }

    #[test]
    fn a_torchserve_handler_is_refused_naming_its_imports() {
        let Err(problem) = check_source(TORCHSERVE_HANDLER) else {
            panic!("accepted");
        };
        assert_eq!(
            problem,
            Problem::Imports(vec![
                ("torch".into(), 3),
                ("PIL".into(), 4),
                ("ts".into(), 5),
                ("numpy".into(), 10),
            ])
        );
        let message = refusal("my_handler.py", &problem);
        for part in [
            "torch (line 3)",
            "ts (line 5)",
            "examples/python_handler",
            "in the wasmserve repository",
            "wasmserve_handler",
            "`image` interface",
            "libtorch",
            "the network",
            "/model",
            "--handler image_classifier",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message}");
        }
    }

    #[test]
    fn one_forbidden_import_is_enough() {
        for (source, module) in [
            ("import os, torch.nn as nn\nWitWorld = 1\n", "torch"),
            ("import torchvision\nWitWorld = 1\n", "torchvision"),
            ("from ts import context\nWitWorld = 1\n", "ts"),
            ("import ts.torch_handler\nWitWorld = 1\n", "ts"),
            ("x = 1; import numpy\nWitWorld = 1\n", "numpy"),
            (
                "try:\n    from PIL import Image\nexcept ImportError:\n    pass\nWitWorld = 1\n",
                "PIL",
            ),
        ] {
            match check_source(source) {
                Err(Problem::Imports(found)) => assert_eq!(found[0].0, module, "{source}"),
                other => panic!("{source}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_handler_without_witworld_is_refused() {
        let source =
            "from wasmserve_handler import BaseHandler\n\nclass H(BaseHandler):\n    pass\n";
        assert_eq!(check_source(source), Err(Problem::NoWitWorld));
        let message = refusal("h.py", &Problem::NoWitWorld);
        assert!(
            message.contains("WitWorld") && message.contains(EXAMPLE),
            "{message}"
        );
        // Mentioned in a comment or a string is not defined.
        let source = "# WitWorld = export(H)\ns = '''\nWitWorld = 1\n'''\n";
        assert_eq!(check_source(source), Err(Problem::NoWitWorld));
    }

    #[test]
    fn witworld_may_be_a_class_or_imported() {
        for source in [
            "WitWorld = export(H)\n",
            "WitWorld: type = export(H)\n",
            "import wit_world\nclass WitWorld(wit_world.WitWorld):\n    pass\n",
            "from mine import (\n    WitWorld,\n)\n",
            "from mine import Exports as WitWorld\n",
        ] {
            assert_eq!(check_source(source), Ok(()), "{source}");
        }
    }

    #[test]
    fn imports_inside_strings_and_comments_do_not_count() {
        let source = "\"\"\"Unlike TorchServe:\nimport torch\n\"\"\"\n# import numpy\n\
                      s = 'import PIL'\nt = \"from ts import x\"  # import torch\nWitWorld = 1\n";
        assert_eq!(check_source(source), Ok(()));
    }

    #[test]
    fn the_load_time_refusal_says_how_to_rebuild() {
        let message = refusal_at_load("my_handler.py");
        for part in [
            "\"my_handler.py\"",
            "wasmserve archive --handler my_handler.py",
            "examples/python_handler",
            "in the wasmserve repository",
            "numpy",
            "image_classifier",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message}");
        }
        assert!(refusal_at_load("src/my_handler.py:handle").contains("--handler my_handler.py"));
    }

    #[test]
    fn module_names() {
        assert!(is_identifier("handler") && is_identifier("_h2"));
        assert!(!is_identifier("my-handler") && !is_identifier("2h") && !is_identifier(""));
    }
}
