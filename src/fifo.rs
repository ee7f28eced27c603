//! The named pipe between the sidecar and the consumer, both ends: [`crate::sidecar::writer`] (the
//! sidecar's side, a Rust thread inside the Python process) and [`crate::consumer::reader`] (the
//! consumer's side). What both
//! ends rely on lives here: the rules for the FIFO itself (a FIFO this user owns, never through a
//! symlink, in a private directory: [`prepare_fifo`], checked again on what was opened) and
//! [`PIPE_BUF`], the write size up to which lines never interleave.
//!
//! Either end may start first: whichever comes first creates the FIFO; the writer retries its
//! non-blocking open until a reader is there, and the reader waits for writers with `poll()`.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use thiserror::Error;

/// A `write()` of at most this many bytes to a pipe is atomic.
pub const PIPE_BUF: usize = 4096;

/// Why the FIFO cannot be used. Each message is one sentence a user can act on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FifoError {
    /// Something other than a FIFO is at the path.
    #[error("{path} is {what}, not a FIFO; remove it or choose another --fifo path")]
    NotAFifo {
        /// The path given.
        path: PathBuf,
        /// What is there instead.
        what: &'static str,
    },
    /// The path is a symbolic link.
    #[error("{path} is a symbolic link; refusing to follow it (point --fifo at the real location)")]
    Symlink {
        /// The path given.
        path: PathBuf,
    },
    /// The FIFO belongs to another user.
    #[error("{path} is owned by uid {owner}, not by this user (uid {me}); another user could inject prices through it, so it is refused")]
    ForeignOwner {
        /// The path given.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's uid.
        me: u32,
    },
    /// The FIFO is readable or writable by other users: they may hold it open already (a chmod
    /// would not take their handle away), so it is refused rather than tightened.
    #[error("{path} has mode {mode:o}: other users can open it (and may hold it open already, to read bars or inject prices), so it is refused, never tightened; remove it and let barbridge create a fresh 0600 one")]
    OpenToOthers {
        /// The path given.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The FIFO's directory is not private (see [`crate::private`]).
    #[error(transparent)]
    Directory(#[from] crate::private::PrivateError),
    /// The FIFO could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The FIFO (or its lock file) could not be opened or inspected.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A reader option is out of range (see [`crate::consumer::reader::ReaderOptions::validate`]).
    #[error("reader option {name} is {value}; it must be {rule}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
    /// Reading the FIFO failed.
    #[error("reading {path} failed: {source}")]
    Read {
        /// The FIFO.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another reader holds the FIFO's reader lock.
    #[error("{path} already has a reader{holder}; a FIFO has exactly one reader (a second one would silently take part of the bars): stop it, or give this one its own FIFO")]
    Busy {
        /// The FIFO.
        path: PathBuf,
        /// ` (pid N)` when the lock file names the holder, else empty.
        holder: String,
    },
}

/// Make sure `path` is a FIFO this user owns in a private directory of this user's (see
/// [`crate::private::ensure_private_dir`]), creating the directory (0700) and the FIFO (0600)
/// when absent.
///
/// # Errors
/// [`FifoError::Directory`] for a directory that is not private; [`FifoError::NotAFifo`], [`FifoError::Symlink`] or [`FifoError::ForeignOwner`] for what is at `path`; [`FifoError::Create`] or [`FifoError::Open`] when the OS refuses.
pub fn prepare_fifo(path: &Path) -> Result<(), FifoError> {
    let me = nix::unistd::getuid().as_raw();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    crate::private::ensure_private_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
                Ok(()) => log::info!("created FIFO {} (mode 0600)", path.display()),
                Err(nix::errno::Errno::EEXIST) => {} // the other side created it meanwhile
                Err(e) => return Err(FifoError::Create { path: path.to_path_buf(), source: e.into() }),
            }
        }
        Err(source) => return Err(FifoError::Open { path: path.to_path_buf(), source }),
    }
    let meta = std::fs::symlink_metadata(path).map_err(|source| FifoError::Open { path: path.to_path_buf(), source })?;
    check_private_fifo(path, &meta, me)
}

/// Check what is at `path` without creating or changing anything (what a preflight asks):
/// `Ok(false)` when nothing is there, `Ok(true)` for a FIFO this user owns that others can
/// neither read nor write. Its directory is not checked here ([`prepare_fifo`] does).
///
/// # Errors
/// [`FifoError::NotAFifo`], [`FifoError::Symlink`], [`FifoError::ForeignOwner`] or [`FifoError::OpenToOthers`] for what is at `path`; [`FifoError::Open`] when it cannot be inspected.
pub fn check_existing_fifo(path: &Path) -> Result<bool, FifoError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_private_fifo(path, &meta, nix::unistd::getuid().as_raw()).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FifoError::Open { path: path.to_path_buf(), source }),
    }
}

/// [`check_fifo`], and nobody else may open it: refused, never tightened, because whoever opened
/// it while it was open to them keeps their handle.
fn check_private_fifo(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), FifoError> {
    check_fifo(path, meta, me)?;
    if meta.mode() & 0o066 != 0 {
        return Err(FifoError::OpenToOthers { path: path.to_path_buf(), mode: meta.mode() & 0o7777 });
    }
    Ok(())
}

fn check_fifo(path: &Path, meta: &std::fs::Metadata, me: u32) -> Result<(), FifoError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(FifoError::Symlink { path: path.to_path_buf() });
    }
    if !ft.is_fifo() {
        let what = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(FifoError::NotAFifo { path: path.to_path_buf(), what });
    }
    if meta.uid() != me {
        return Err(FifoError::ForeignOwner { path: path.to_path_buf(), owner: meta.uid(), me });
    }
    Ok(())
}

/// Check what was actually opened at `path`: a FIFO this user owns.
pub(crate) fn check_opened(path: &Path, file: &File) -> Result<(), FifoError> {
    let meta = file.metadata().map_err(|source| FifoError::Open { path: path.to_path_buf(), source })?;
    check_fifo(path, &meta, nix::unistd::getuid().as_raw())
}
