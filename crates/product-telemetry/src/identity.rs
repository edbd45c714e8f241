//! The anonymous install id: where it lives, how it is created, validated and repaired.
//!
//! One random UUID v4 per app per machine, stored at
//! `<cache home>/<app>/telemetry_user_id` — for the app `portia` exactly the file the
//! Python SDK uses, so both share one id. The id is never derived from machine data.
//!
//! Creation is race-free: the id is written to a private temporary file and hard-linked
//! into place, so concurrent first runs all end with the winner's id. A file that does
//! not hold a UUID is replaced under a lock. When the file can neither be read nor
//! written, a random per-process id is used; nothing here panics.
//!
//! This module and the spool are the only ones that touch the filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::Environment;

/// The name of the id file inside `<cache home>/<app>/`.
pub const USER_ID_FILE_NAME: &str = "telemetry_user_id";

/// The reference implementation's sentinel for "the id could not be read or written".
///
/// Kept for parity and shown by status displays; it is **never sent**: when the id file
/// is unusable, events carry a random per-process id instead, so that unrelated
/// machines are not merged into one person.
pub const UNKNOWN_USER_ID: &str = "UNKNOWN";

/// Files larger than this cannot be an id; only this much is read.
const MAX_ID_FILE_BYTES: u64 = 4096;
/// How long a repair waits for another process holding the repair lock.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// The cache home: `$XDG_CACHE_HOME` when set, non-empty and absolute, otherwise
/// `~/.<app>` (the reference's rule, which is not `~/.cache`).
///
/// `None` only when no home folder can be found.
///
/// ```
/// use product_telemetry::{identity::xdg_cache_home, Environment};
/// let env = Environment::from_pairs([("HOME", "/home/ada"), ("XDG_CACHE_HOME", "relative/ignored")]);
/// assert_eq!(xdg_cache_home("portia", &env), Some("/home/ada/.portia".into()));
/// ```
pub fn xdg_cache_home(app: &str, env: &Environment) -> Option<PathBuf> {
    if !is_valid_app_name(app) {
        return None;
    }
    if let Some(xdg) = env.var_os("XDG_CACHE_HOME") {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return Some(xdg);
        }
    }
    env.home_dir().map(|home| home.join(format!(".{app}")))
}

/// Whether `app` can name folders: non-empty, at most 64 characters of ASCII letters,
/// digits, `-`, `_` and `.`, not starting with `.`. Anything else (a path, `..`, an
/// empty name) would put the app's files outside its own folder, so no path is derived
/// from it and telemetry stays off.
///
/// ```
/// use product_telemetry::identity::is_valid_app_name;
/// assert!(is_valid_app_name("portia"));
/// assert!(is_valid_app_name("my-app_2.0"));
/// for bad in ["", ".", "..", "../x", "/abs", "a/b", "a\\b", ".hidden"] {
///     assert!(!is_valid_app_name(bad), "{bad:?}");
/// }
/// ```
pub fn is_valid_app_name(app: &str) -> bool {
    !app.is_empty()
        && app.len() <= 64
        && !app.starts_with('.')
        && app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The app's folder under the cache home: `<cache home>/<app>`.
pub fn app_cache_dir(app: &str, env: &Environment) -> Option<PathBuf> {
    xdg_cache_home(app, env).map(|dir| dir.join(app))
}

/// The id file: `<cache home>/<app>/telemetry_user_id`.
pub fn user_id_path(app: &str, env: &Environment) -> Option<PathBuf> {
    app_cache_dir(app, env).map(|dir| dir.join(USER_ID_FILE_NAME))
}

/// How the id in use was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdOrigin {
    /// Read from an existing, valid id file.
    Existing,
    /// This process created the id file.
    Created,
    /// The file held something other than a UUID and was replaced.
    Repaired,
    /// The file could not be used; this id lives only as long as the process.
    Ephemeral(String),
}

/// The anonymous id events are sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserId {
    id: String,
    origin: IdOrigin,
}

impl UserId {
    /// Reads, creates or repairs the id file at `path`; falls back to a random
    /// per-process id (with the reason) when that fails or there is no path.
    pub fn resolve(path: Option<&Path>) -> UserId {
        let outcome = match path {
            Some(path) => load_or_create(path),
            None => Err(IdentityError::NoHome),
        };
        match outcome {
            Ok((uuid, origin)) => UserId {
                id: uuid.hyphenated().to_string(),
                origin,
            },
            Err(err) => {
                log::debug!("telemetry: using a per-process id: {err}");
                UserId::ephemeral(err.to_string())
            }
        }
    }

    /// A random id that is not saved anywhere.
    pub fn ephemeral(reason: impl Into<String>) -> UserId {
        UserId {
            id: Uuid::new_v4().hyphenated().to_string(),
            origin: IdOrigin::Ephemeral(reason.into()),
        }
    }

    /// The id as sent on the wire (a hyphenated UUID).
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// How this id was obtained.
    pub fn origin(&self) -> &IdOrigin {
        &self.origin
    }
}

/// Why the id file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No home folder and no absolute `XDG_CACHE_HOME`.
    #[error("no home folder to keep the id in")]
    NoHome,
    /// The id file's folder could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading or writing the id file failed.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process held the repair lock for too long.
    #[error("timed out waiting for the lock on {0}")]
    LockTimeout(PathBuf),
}

/// What is at the id file, without creating or changing anything.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdFileState {
    /// No file yet: it is created on the first enabled run.
    Missing,
    /// A valid id.
    Valid(Uuid),
    /// Something other than a UUID: it will be replaced.
    Invalid,
    /// The file cannot be read.
    Unreadable(io::Error),
}

/// Looks at the id file without touching it (for status displays).
pub fn inspect(path: &Path) -> IdFileState {
    match read_id(path) {
        Ok(Some(id)) => IdFileState::Valid(id),
        Ok(None) => IdFileState::Invalid,
        Err(e) if e.kind() == io::ErrorKind::NotFound => IdFileState::Missing,
        Err(e) => IdFileState::Unreadable(e),
    }
}

/// Reads the id at `path`, creating or repairing the file as needed.
pub fn load_or_create(path: &Path) -> Result<(Uuid, IdOrigin), IdentityError> {
    let io_err = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    match read_id(path) {
        Ok(Some(id)) => Ok((id, IdOrigin::Existing)),
        Ok(None) => repair(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        Err(e) => Err(io_err(e)),
    }
}

/// `Ok(None)` when the file exists but does not hold a UUID.
fn read_id(path: &Path) -> io::Result<Option<Uuid>> {
    let mut content = Vec::new();
    File::open(path)?
        .take(MAX_ID_FILE_BYTES)
        .read_to_end(&mut content)?;
    Ok(std::str::from_utf8(&content)
        .ok()
        .and_then(|text| Uuid::try_parse(text.trim()).ok())
        .filter(|id| !id.is_nil()))
}

fn create(path: &Path) -> Result<(Uuid, IdOrigin), IdentityError> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|source| IdentityError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let id = Uuid::new_v4();
    let temp = write_temp(dir, id).map_err(|source| IdentityError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // Publishing by hard link is atomic and fails if another process won the race, so
    // the file is never seen half-written and never overwritten.
    let linked = fs::hard_link(&temp, path);
    let outcome = match linked {
        Ok(()) => Ok((id, IdOrigin::Created)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_id(path) {
            Ok(Some(winner)) => Ok((winner, IdOrigin::Existing)),
            Ok(None) => repair(path),
            Err(source) => Err(IdentityError::Io {
                path: path.to_path_buf(),
                source,
            }),
        },
        // Filesystems without hard links: exclusive creation still lets one writer win.
        Err(_) => create_exclusive(path, id),
    };
    let _ = fs::remove_file(&temp);
    outcome
}

fn create_exclusive(path: &Path, id: Uuid) -> Result<(Uuid, IdOrigin), IdentityError> {
    match private_file(path).and_then(|mut f| f.write_all(id.hyphenated().to_string().as_bytes())) {
        Ok(()) => Ok((id, IdOrigin::Created)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_id(path) {
            Ok(Some(winner)) => Ok((winner, IdOrigin::Existing)),
            _ => repair(path),
        },
        Err(source) => Err(IdentityError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces an invalid id file. Serialised by a lock file so that concurrent repairs
/// agree on one new id.
fn repair(path: &Path) -> Result<(Uuid, IdOrigin), IdentityError> {
    let io_err = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent(path);
    let lock_path = dir.join(format!(".{USER_ID_FILE_NAME}.lock"));
    let _lock = match lock_within(&lock_path, LOCK_WAIT) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(IdentityError::LockTimeout(lock_path)),
        Err(e) => return Err(io_err(e)),
    };
    // Another process may have repaired it while we waited.
    if let Ok(Some(id)) = read_id(path) {
        return Ok((id, IdOrigin::Existing));
    }
    log::debug!("telemetry: replacing invalid id file {}", path.display());
    let id = Uuid::new_v4();
    let temp = write_temp(dir, id).map_err(io_err)?;
    let renamed = fs::rename(&temp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed.map_err(io_err)?;
    Ok((id, IdOrigin::Repaired))
}

/// Writes `id` (no newline, as the Python SDK does) to a new private file in `dir`.
fn write_temp(dir: &Path, id: Uuid) -> io::Result<PathBuf> {
    let temp = dir.join(format!(
        ".{USER_ID_FILE_NAME}.{}.{}.tmp",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    let written =
        private_file(&temp).and_then(|mut f| f.write_all(id.hyphenated().to_string().as_bytes()));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// Opens (creating) the lock file at `path` and takes its exclusive lock, waiting at
/// most `wait` for another process to release it. `None` when the wait ran out. The
/// lock is held until the returned file is dropped.
pub(crate) fn lock_within(path: &Path, wait: Duration) -> io::Result<Option<File>> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let deadline = Instant::now() + wait;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(Some(lock)),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Creates a new file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The folder holding `path` (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn absolute_xdg_cache_home_wins() {
        let e = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/var/cache/u")]);
        assert_eq!(
            user_id_path("portia", &e),
            Some(PathBuf::from("/var/cache/u/portia/telemetry_user_id"))
        );
    }

    #[test]
    fn empty_or_relative_xdg_cache_home_falls_back_to_dot_app() {
        for xdg in ["", "cache", "./cache"] {
            let e = env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", xdg)]);
            assert_eq!(
                user_id_path("portia", &e),
                Some(PathBuf::from("/home/u/.portia/portia/telemetry_user_id")),
                "{xdg:?}"
            );
        }
    }

    #[test]
    fn no_home_means_no_path() {
        assert_eq!(user_id_path("portia", &env(&[])), None);
    }

    #[test]
    fn missing_path_gives_ephemeral_random_ids() {
        let a = UserId::resolve(None);
        let b = UserId::resolve(None);
        assert!(matches!(a.origin(), IdOrigin::Ephemeral(_)));
        assert_ne!(a.as_str(), b.as_str());
        assert_ne!(a.as_str(), UNKNOWN_USER_ID);
        assert!(Uuid::try_parse(a.as_str()).is_ok());
    }
}
