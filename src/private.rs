//! Private directories and files: the one place that decides whether a path another local user
//! may have prepared is safe to use.
//!
//! The rules, for every directory barbridge writes in (runtime directory with the FIFO, status
//! file directory, journal directory):
//! - it is a real directory (not a symbolic link), owned by this user, and neither group- nor
//!   other-writable; a missing one is created with mode 0700;
//! - every directory above it is owned by root or this user and is not writable by others unless
//!   it is sticky (like `/tmp`), so nobody else can rename it away and put their own in its place.
//!
//! A directory of ours that others can only read or enter (e.g. 0755) is accepted as it is: every
//! file barbridge creates in it is 0600 and nobody else can add, remove or rename entries. A
//! directory of ours that others can write is refused rather than tightened, because tightening
//! would keep trusting whatever they may already have put in it.
//!
//! Files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` ([`write_atomic`]) or opened with
//! `O_NOFOLLOW` and checked on the opened descriptor ([`open_private_file`]), so there is no
//! window between a check and the use of what was checked.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::libc;
use thiserror::Error;

/// Why a path is refused. Each message is one sentence a user can act on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PrivateError {
    /// The path is a symbolic link.
    #[error("{path} is a symbolic link; refusing to follow it (remove the link or use the real path)")]
    Symlink {
        /// The path concerned.
        path: PathBuf,
    },
    /// The path is not the kind of file expected.
    #[error("{path} is {what}; remove it or choose another path")]
    WrongType {
        /// The path concerned.
        path: PathBuf,
        /// What is there instead.
        what: &'static str,
    },
    /// The path belongs to another user.
    #[error("{path} is owned by uid {owner}, not by this user (uid {me}); another user could plant or swap files in it, so it is refused (remove it or choose a path of your own)")]
    ForeignOwner {
        /// The path concerned.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// This process's uid.
        me: u32,
    },
    /// Other users may write to the path.
    #[error("{path} is writable by other users (mode {mode:o}); make it private with `chmod go-w` after checking its contents, or choose a private directory (0700)")]
    Writable {
        /// The path concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory above the path lets another user replace it.
    #[error(
        "{dir}, above {path}, is {problem}; another user could replace {path}, so choose a location under directories only you or root can change"
    )]
    UnsafeParent {
        /// The path concerned.
        path: PathBuf,
        /// The directory above it at fault.
        dir: PathBuf,
        /// What is wrong with that directory.
        problem: String,
    },
    /// The path could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The path could not be opened or inspected.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file could not be written (see [`write_atomic`]); its old content stays.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

fn my_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Make sure `path` is a private directory of ours (see the module rules), creating it and any
/// missing parents with mode 0700.
///
/// # Errors
/// A [`PrivateError`] naming the path and what is wrong with it (a symlink, not a directory, another user's, writable by others, under a directory others can change), or why it could not be created.
pub fn ensure_private_dir(path: &Path) -> Result<(), PrivateError> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    let me = my_uid();
    check_parents(path, me)?;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
        // Something else is there: the open below says what.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(PrivateError::Create { path: path.to_path_buf(), source }),
        Ok(()) => {}
    }
    let dir =
        OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map_err(
            |source| match source.raw_os_error() {
                // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR on Linux (ELOOP elsewhere).
                Some(libc::ELOOP | libc::ENOTDIR) => match std::fs::symlink_metadata(path) {
                    Ok(m) if m.file_type().is_symlink() => PrivateError::Symlink { path: path.to_path_buf() },
                    _ => PrivateError::WrongType { path: path.to_path_buf(), what: "not a directory" },
                },
                _ => PrivateError::Open { path: path.to_path_buf(), source },
            },
        )?;
    let meta = dir.metadata().map_err(|source| PrivateError::Open { path: path.to_path_buf(), source })?;
    check_owner_and_mode(path, &meta, me)
}

/// Every existing directory above `path`: owned by root or `me`, not writable by others unless
/// sticky. Missing ones are skipped (they are about to be created, 0700, by us).
fn check_parents(path: &Path, me: u32) -> Result<(), PrivateError> {
    let abs = std::path::absolute(path).map_err(|source| PrivateError::Open { path: path.to_path_buf(), source })?;
    for dir in abs.ancestors().skip(1) {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PrivateError::Open { path: dir.to_path_buf(), source }),
        };
        let mode = meta.mode() & 0o7777;
        let problem = if meta.uid() != 0 && meta.uid() != me {
            format!("owned by uid {}, neither root nor this user (uid {me})", meta.uid())
        } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            format!("writable by other users and not sticky (mode {mode:o})")
        } else {
            continue;
        };
        return Err(PrivateError::UnsafeParent { path: path.to_path_buf(), dir: dir.to_path_buf(), problem });
    }
    Ok(())
}

fn check_owner_and_mode(path: &Path, meta: &Metadata, me: u32) -> Result<(), PrivateError> {
    if meta.uid() != me {
        return Err(PrivateError::ForeignOwner { path: path.to_path_buf(), owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(PrivateError::Writable { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// Check what `meta` (from `lstat`, or `fstat` of an opened file) describes: a regular file of
/// ours that others cannot write.
///
/// # Errors
/// [`PrivateError::Symlink`], [`PrivateError::WrongType`], [`PrivateError::ForeignOwner`] or [`PrivateError::Writable`].
pub fn check_private_file(path: &Path, meta: &Metadata) -> Result<(), PrivateError> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(PrivateError::Symlink { path: path.to_path_buf() });
    }
    if !ft.is_file() {
        return Err(PrivateError::WrongType { path: path.to_path_buf(), what: "not a regular file" });
    }
    check_owner_and_mode(path, meta, my_uid())
}

/// Open (or create, mode 0600) a file with `options` without following a symlink at `path`, then
/// check the opened file itself: a regular file of ours that others cannot write. For append
/// files such as the journal's day files. `O_NONBLOCK` is added so that a FIFO planted at `path`
/// cannot block the open (it has no effect on regular files).
///
/// # Errors
/// [`PrivateError::Symlink`] for a symlink at `path`, [`PrivateError::Open`] when the OS refuses, or what [`check_private_file`] finds wrong with the opened file.
pub fn open_private_file(path: &Path, options: &mut OpenOptions) -> Result<File, PrivateError> {
    let file = options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK).mode(0o600).open(path).map_err(|source| {
        match source.raw_os_error() {
            Some(libc::ELOOP) => PrivateError::Symlink { path: path.to_path_buf() },
            _ => PrivateError::Open { path: path.to_path_buf(), source },
        }
    })?;
    let meta = file.metadata().map_err(|source| PrivateError::Open { path: path.to_path_buf(), source })?;
    check_private_file(path, &meta)?;
    Ok(file)
}

/// Numbers the temporary files of [`write_atomic`] within this process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether [`write_atomic`] makes the new content durable before it returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Leave the data to the OS (cheap; a power loss may leave the old content).
    #[default]
    Cached,
    /// `fsync` the file before the rename and the directory after it.
    Synced,
}

/// Replace `dir/name` with `bytes` atomically: readers see the old or the new content, never a
/// mix. The content goes into a fresh temporary file in `dir`, created with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600 (a symlink planted at the temporary name is never
/// followed), which is then renamed over `name` (a symlink planted at `name` is replaced itself,
/// its target is untouched). `dir` should have passed [`ensure_private_dir`].
///
/// # Errors
/// [`PrivateError::Write`] with the I/O error of creating, writing, syncing or renaming the
/// temporary file (the old content stays).
pub fn write_atomic(dir: &Path, name: impl AsRef<OsStr>, bytes: &[u8], durability: Durability) -> Result<(), PrivateError> {
    let name = name.as_ref();
    let target = dir.join(name);
    replace_file(dir, name, &target, bytes, durability).map_err(|source| PrivateError::Write { path: target, source })
}

fn replace_file(dir: &Path, name: &OsStr, target: &Path, bytes: &[u8], durability: Durability) -> io::Result<()> {
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{}.tmp", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp_name);
    let create = || OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o600).open(&tmp);
    let mut file = match create() {
        // Left over by an earlier process with our pid, or planted: remove the entry itself.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            create()?
        }
        other => other?,
    };
    let result = file.write_all(bytes).and_then(|()| if durability == Durability::Synced { file.sync_data() } else { Ok(()) });
    drop(file);
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, target)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Synced {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_missing_directories_0700() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a").join("b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.path().join("a")), 0o700);
        ensure_private_dir(&dir).unwrap(); // existing and ours: fine
    }

    #[test]
    fn refuses_symlinks_files_and_writable_directories() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        ensure_private_dir(&real).unwrap();
        let link = base.path().join("link");
        symlink(&real, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");

        let file = base.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = ensure_private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("is not a directory; remove it"), "{err}");

        for m in [0o770, 0o707, 0o1777] {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(m)).unwrap();
            let err = ensure_private_dir(&real).unwrap_err().to_string();
            assert!(err.contains("writable by other users"), "mode {m:o}: {err}");
        }
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&real).unwrap(); // readable by others, writable only by us: accepted
        assert_eq!(mode(&real), 0o755, "left as it is");
    }

    #[test]
    fn refuses_a_directory_under_an_open_parent_but_not_under_a_sticky_one() {
        let base = tempfile::tempdir().unwrap();
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&open.join("run")).unwrap_err().to_string();
        assert!(err.contains("above") && err.contains("not sticky"), "{err}");
        assert!(!open.join("run").exists(), "nothing is created under an unsafe parent");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_private_dir(&open.join("run")).unwrap();
    }

    #[test]
    fn refuses_a_directory_of_another_user() {
        if !nix::unistd::getuid().is_root() {
            eprintln!("NOT TESTED: a directory of another user (needs root to chown)");
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = ensure_private_dir(&theirs).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534, not by this user"), "{err}");
        let err = ensure_private_dir(&theirs.join("run")).unwrap_err().to_string();
        assert!(err.contains("neither root nor this user"), "{err}");
    }

    #[test]
    fn write_atomic_replaces_planted_symlinks_and_never_follows_them() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("d");
        ensure_private_dir(&dir).unwrap();
        let target = base.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        // At the final name: the link itself is replaced.
        symlink(&target, dir.join("status.json")).unwrap();
        // At the next temporary name: never followed (removed, then created afresh).
        let next = TMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 16 {
            let _ = symlink(&target, dir.join(format!(".status.json.{}.{n}.tmp", std::process::id())));
        }
        for durability in [Durability::Cached, Durability::Synced] {
            write_atomic(&dir, "status.json", b"new", durability).unwrap();
            assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
            let meta = std::fs::symlink_metadata(dir.join("status.json")).unwrap();
            assert!(meta.file_type().is_file(), "the symlink itself was replaced");
            assert_eq!(meta.mode() & 0o777, 0o600);
            assert_eq!(std::fs::read(dir.join("status.json")).unwrap(), b"new");
        }
    }

    #[test]
    fn open_private_file_refuses_symlinks_and_files_others_can_write() {
        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let link = base.path().join("link");
        symlink(&target, &link).unwrap();
        let err = open_private_file(&link, OpenOptions::new().append(true).create(true)).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = open_private_file(&target, OpenOptions::new().append(true)).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");

        let fifo = base.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = open_private_file(&fifo, OpenOptions::new().read(true).append(true)).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");

        let fresh = base.path().join("fresh");
        open_private_file(&fresh, OpenOptions::new().append(true).create(true)).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }
}
