//! Reading the configuration file from disk: only a regular file, and only up
//! to [`MAX_CONFIG_BYTES`].
//!
//! The file is opened without blocking (a FIFO or a device would otherwise
//! wait for a writer forever) and judged by what was opened, not by a path
//! looked at earlier. This file owns that reading; it does not parse the text.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest configuration file read: far above any real one (a file with
/// 100,000 backends is about 5 MiB), and a bound on what a mistake can cost:
/// parsing TOML takes about 30 bytes of memory per byte of text.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The text of the regular file at `path`, or what is wrong with it.
pub fn read_config_text(path: &Path) -> Result<String, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if !metadata.is_file() {
        return Err(format!(
            "cannot use {} as the configuration file: it must be a regular file",
            describe(metadata.file_type())
        ));
    }
    if metadata.len() > MAX_CONFIG_BYTES {
        return Err(too_large(metadata.len()));
    }
    read_bounded(file)
}

/// Reads at most [`MAX_CONFIG_BYTES`] (the file may grow after it was looked at).
fn read_bounded(file: File) -> Result<String, String> {
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the configuration file: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {}): TOML files are UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

fn too_large(size: u64) -> String {
    format!(
        "the file is too large ({size} bytes or more); at most {MAX_CONFIG_BYTES} bytes (16 MiB) \
         are read"
    )
}

/// "a directory", "a FIFO (named pipe)", ... for messages.
fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "something other than a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("l4lb-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    #[test]
    fn reads_a_regular_file() {
        let path = temp_path("ok.toml");
        std::fs::write(&path, "[global]\n").expect("write");
        assert_eq!(read_config_text(&path).as_deref(), Ok("[global]\n"));
    }

    #[test]
    fn refuses_a_directory_and_a_device() {
        let dir = std::env::temp_dir();
        let message = read_config_text(&dir).unwrap_err();
        assert!(message.contains("a directory"), "{message}");
        let message = read_config_text(Path::new("/dev/null")).unwrap_err();
        assert!(message.contains("a character device"), "{message}");
    }

    #[test]
    fn refuses_a_file_over_the_bound() {
        let path = temp_path("huge.toml");
        let file = File::create(&path).expect("create");
        file.set_len(MAX_CONFIG_BYTES + 1).expect("sparse file");
        let message = read_config_text(&path).unwrap_err();
        assert!(message.contains("too large"), "{message}");
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        let path = temp_path("latin1.toml");
        std::fs::write(&path, b"# caf\xe9\n").expect("write");
        let message = read_config_text(&path).unwrap_err();
        assert!(message.contains("offset 5"), "{message}");
    }
}
