//! Reading the files users name (archives, config files, snapshots, certificates) so
//! that nothing but a regular file is ever read: a FIFO, a device or a socket given as
//! an archive would otherwise block the reading thread until someone writes to it, and
//! with it the request, the registration or the stop. Files are opened without
//! blocking and checked on the open handle (no window between check and open).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}, not a regular file: refused without reading it",
            path.display()
        ),
    )
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Opens `path` for reading if it is a regular file (links followed), never blocking
/// on a FIFO or a device.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, kind(&meta)));
    }
    Ok(file)
}

/// Whether `path` is a regular file (links followed), without opening it.
pub fn check_regular_file(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(not_regular(path, kind(&meta)))
    }
}

/// The text of the regular file `path`.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    open_regular(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Sleeps for the milliseconds in the environment variable `var`, if set: a test's
/// handle on a moment it must hit (e.g. a kill in the middle of writing a snapshot).
/// Unset, it costs one environment lookup.
pub fn test_pause(var: &str) {
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("model.mar");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo).unwrap_err().to_string();
        assert!(err.contains("a FIFO"), "{err}");
        assert!(check_regular_file(&fifo).is_err());
        assert!(open_regular(dir.path()).is_err());
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(read_to_string(&file).unwrap(), "x");
    }
}
