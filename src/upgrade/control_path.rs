//! The control socket's file: its parent directory created when missing, the
//! socket readable and writable by its owner alone (0600), and a file left by a
//! process that is gone (nobody accepts on it) replaced — under a lock on
//! `<path>.lock` (which stays), so two processes starting at once cannot both
//! take a file for stale and remove each other's socket. A file a live process
//! still accepts on is never touched: that process is a predecessor.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// What is at the control socket's path.
#[derive(Debug, PartialEq, Eq)]
pub enum PathState {
    /// Nothing there.
    Free,
    /// A socket file nobody accepts on (its process is gone).
    Stale,
    /// A process accepts on it.
    Live,
}

/// Looks at `path` without changing anything.
pub fn probe(path: &Path) -> io::Result<PathState> {
    connect(path).map(|(state, _)| state)
}

/// Connects to the process accepting on `path`, if one does (the connection
/// comes with `PathState::Live`).
pub fn connect(path: &Path) -> io::Result<(PathState, Option<UnixStream>)> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((PathState::Free, None)),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path) {
        Ok(stream) => Ok((PathState::Live, Some(stream))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok((PathState::Stale, None)),
        Err(e) => Err(e),
    }
}

/// Listens on `path` (blocking accepts), replacing a stale file; fails when a
/// live process listens there.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    // Two processes starting at once must not both find the file stale and
    // remove each other's socket: the check and the bind happen under a lock.
    let mut lock_path = path.as_os_str().to_os_string();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    match probe(path)? {
        PathState::Free => {}
        PathState::Stale => std::fs::remove_file(path)?,
        PathState::Live => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process (another l4lb?) accepts on it",
            ));
        }
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_file_is_replaced_and_a_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("l4lb-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("nested").join("control.sock");
        assert_eq!(probe(&path).expect("probe"), PathState::Free);
        let first = listen(&path).expect("listen");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(probe(&path).expect("probe"), PathState::Live);
        let error = listen(&path).expect_err("a live socket");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        assert_eq!(probe(&path).expect("probe"), PathState::Stale);
        let _second = listen(&path).expect("a stale file is replaced");
        std::fs::write(dir.join("plain"), "x").expect("file");
        assert!(
            listen(&dir.join("plain")).is_err(),
            "a regular file is never removed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
