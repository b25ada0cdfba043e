//! `wasmserve start` in the background and `wasmserve stop`, like TorchServe's
//! `--start`/`--stop`: the server runs as a detached child; its pid file appears when it
//! is ready to serve, and `stop` sends it SIGTERM and waits for it to finish.
//!
//! The pid file is `$TMPDIR/.wasmserve.pid`, or `WASMSERVE_PID_FILE`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::server::StartArgs;

/// Set in the child so that it writes the pid file once it serves.
const CHILD_ENV: &str = "WASMSERVE_DAEMON_CHILD";
/// How long `start` waits for the server to come up.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `stop` waits for the server to finish its requests and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

fn pid_file() -> PathBuf {
    std::env::var_os("WASMSERVE_PID_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(".wasmserve.pid"))
}

fn running_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Starts the server as a background process and returns once it serves.
pub fn start_background(args: &StartArgs) -> anyhow::Result<()> {
    if let Some(pid) = running_pid() {
        bail!("wasmserve is already running (pid {pid}); run `wasmserve stop` first");
    }
    args.config()?; // report configuration errors here, not in the log
    let _ = std::fs::remove_file(pid_file());
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let log_path = args.log_dir.join("wasmserve.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let log_start = log.metadata()?.len();

    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(CHILD_ENV, "1");
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the server process")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: String = text
                .get(log_start as usize..)
                .unwrap_or("")
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("the server exited ({status}) before it was ready:\n{tail}");
        }
        if running_pid() == Some(child.id() as i32) {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            for line in text
                .get(log_start as usize..)
                .unwrap_or("")
                .lines()
                .filter(|l| l.starts_with(crate::server::STARTUP_WARNING))
            {
                eprintln!("{line}");
            }
            println!(
                "wasmserve started (pid {}); log: {}",
                child.id(),
                log_path.display()
            );
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "the server did not become ready within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In the background child: writes the pid file, which tells `start` the server is up.
pub fn announce_ready() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        std::fs::write(pid_file(), std::process::id().to_string())
            .context("writing the pid file")?;
    }
    Ok(())
}

/// Removes the pid file if it is this process's.
pub fn forget_pid() {
    if running_pid() == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(pid_file());
    }
}

/// Stops the background server gracefully (SIGTERM) and waits for it to exit.
pub fn stop() -> anyhow::Result<()> {
    let Some(pid) = running_pid() else {
        let _ = std::fs::remove_file(pid_file());
        bail!("wasmserve is not running");
    };
    // SAFETY: sending SIGTERM to the pid our own server wrote.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = Instant::now();
    // SAFETY: signal 0 only checks for existence.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if started.elapsed() > STOP_TIMEOUT {
            bail!(
                "wasmserve (pid {pid}) did not stop within {} s",
                STOP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(pid_file());
    println!("wasmserve stopped");
    Ok(())
}
