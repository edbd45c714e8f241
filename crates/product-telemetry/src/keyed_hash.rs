//! The keyed one-way hash: values that should be linkable on one machine but never
//! readable (a project name, a repository URL).
//!
//! [`KeyedHasher::hash`] is HMAC-SHA256 under a random 32-byte secret, truncated to
//! 12 bytes and written as `h:` followed by 24 lower-case hex digits. The same value
//! hashes the same on this machine (for this app) and differently everywhere else;
//! without the secret, which never leaves the machine, a hash cannot be reversed or
//! checked against a guess (a plain SHA-256 of a repository URL could be).
//!
//! Why 12 bytes: 96 bits make an accidental collision between one machine's values
//! practically impossible (a 50 % chance needs about 2⁴⁸ distinct values), and 24 hex
//! digits stay below the [scrubber](crate::scrub)'s 32-digit `<secret>` rule, so a
//! hashed value passes the scrubber unchanged. The `h:` prefix tells a reader of the
//! data that the value is a hash, not a name.
//!
//! # The secret file
//!
//! The secret lives in `telemetry_secret` beside the install id, in
//! `<cache home>/<app>/` ([`crate::identity::app_cache_dir`]): 32 raw random bytes from
//! the operating system, mode 0600 on Unix. It is created race-free like the id (written
//! to a private temporary file, then hard-linked into place, so concurrent first runs
//! all end with the winner's secret). A file that is not exactly 32 bytes, or is all
//! zeros, is replaced under a lock. When the folder cannot be used, a random
//! per-process secret is used instead: hashes are then stable only within this process
//! and not linkable across runs. Nothing here panics; [`KeyedHasher::load_or_create`]
//! never fails.
//!
//! Like the id, the secret is only created when telemetry is enabled (the caller
//! decides when to call [`KeyedHasher::load_or_create`]). Deleting it (together with
//! the id) makes all earlier hashes unlinkable.
//!
//! ```
//! use product_telemetry::keyed_hash::KeyedHasher;
//!
//! let hasher = KeyedHasher::from_secret([7; 32]);
//! let a = hasher.hash("git@github.com:ada/secret-project.git");
//! assert_eq!(a, hasher.hash("git@github.com:ada/secret-project.git"));
//! assert!(a.starts_with("h:") && a.len() == 2 + 24);
//! assert_ne!(a, KeyedHasher::from_secret([8; 32]).hash("git@github.com:ada/secret-project.git"));
//! ```

use std::fmt;
use std::fs::{self, File};

use crate::identity::{lock_within, parent, private_file};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The name of the secret file inside `<cache home>/<app>/`.
pub const SECRET_FILE_NAME: &str = "telemetry_secret";
/// The secret's length in bytes.
pub const SECRET_LEN: usize = 32;
/// What every hash starts with.
pub const HASH_PREFIX: &str = "h:";
/// How many bytes of the HMAC a hash keeps (written as twice as many hex digits).
const HASH_BYTES: usize = 12;
/// Files larger than this cannot be a secret; only this much is read.
const MAX_READ: u64 = 64;
/// How long a repair waits for another process holding the repair lock.
const LOCK_WAIT: Duration = Duration::from_millis(500);
/// HMAC-SHA256's block size: shorter keys are zero-padded to it (RFC 2104).
const BLOCK: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// How the secret in use was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretOrigin {
    /// Read from an existing, valid secret file.
    Existing,
    /// This process created the secret file.
    Created,
    /// The file held something other than a secret and was replaced.
    Repaired,
    /// Given by the caller ([`KeyedHasher::from_secret`]).
    Given,
    /// The file could not be used; this secret lives only as long as the process.
    Ephemeral(String),
}

/// Hashes values with HMAC-SHA256 under a per-install secret.
///
/// Cheap to clone. Its `Debug` output does not show the secret.
#[derive(Clone)]
pub struct KeyedHasher {
    /// The HMAC already keyed: hashing clones it and feeds the value.
    mac: HmacSha256,
    origin: SecretOrigin,
}

impl fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHasher")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl KeyedHasher {
    /// Reads the secret in `dir` (usually [`crate::identity::app_cache_dir`]), creating
    /// or repairing the file as needed; falls back to a random per-process secret
    /// (logged at debug level) when that fails.
    pub fn load_or_create(dir: &Path) -> KeyedHasher {
        match load_or_create_secret(&secret_path(dir)) {
            Ok((secret, origin)) => KeyedHasher::with_origin(secret, origin),
            Err(err) => {
                log::debug!("telemetry: using a per-process hash secret: {err}");
                KeyedHasher::ephemeral(err.to_string())
            }
        }
    }

    /// A hasher with this secret (for tests, or a secret kept elsewhere).
    pub fn from_secret(secret: [u8; SECRET_LEN]) -> KeyedHasher {
        KeyedHasher::with_origin(secret, SecretOrigin::Given)
    }

    /// A hasher with a random secret that is not saved anywhere.
    pub fn ephemeral(reason: impl Into<String>) -> KeyedHasher {
        KeyedHasher::with_origin(process_secret(), SecretOrigin::Ephemeral(reason.into()))
    }

    fn with_origin(secret: [u8; SECRET_LEN], origin: SecretOrigin) -> KeyedHasher {
        // Zero-padding the key to the block size is what HMAC does with a short key, and
        // lets the infallible constructor be used.
        let mut key = [0u8; BLOCK];
        key[..SECRET_LEN].copy_from_slice(&secret);
        KeyedHasher {
            mac: HmacSha256::new(&key.into()),
            origin,
        }
    }

    /// `h:` and the first 12 bytes of HMAC-SHA256(secret, `value`) in lower-case hex.
    pub fn hash(&self, value: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut mac = self.mac.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 2 * HASH_BYTES);
        out.push_str(HASH_PREFIX);
        for &byte in digest.iter().take(HASH_BYTES) {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }

    /// How the secret was obtained.
    pub fn origin(&self) -> &SecretOrigin {
        &self.origin
    }

    /// Whether hashes are linkable across runs (the secret is saved on disk).
    pub fn is_persistent(&self) -> bool {
        matches!(
            self.origin,
            SecretOrigin::Existing | SecretOrigin::Created | SecretOrigin::Repaired
        )
    }
}

/// The secret file in `dir`.
pub fn secret_path(dir: &Path) -> PathBuf {
    dir.join(SECRET_FILE_NAME)
}

/// Why the secret file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum SecretError {
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the operating system gave no random bytes: {0}")]
    Random(getrandom::Error),
    #[error("timed out waiting for the lock on {0}")]
    LockTimeout(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn load_or_create_secret(path: &Path) -> Result<([u8; SECRET_LEN], SecretOrigin), SecretError> {
    match read_secret(path) {
        Ok(Some(secret)) => Ok((secret, SecretOrigin::Existing)),
        Ok(None) => repair(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// `Ok(None)` when the file exists but does not hold a secret.
fn read_secret(path: &Path) -> io::Result<Option<[u8; SECRET_LEN]>> {
    let mut content = Vec::with_capacity(SECRET_LEN);
    File::open(path)?.take(MAX_READ).read_to_end(&mut content)?;
    Ok(<[u8; SECRET_LEN]>::try_from(content.as_slice())
        .ok()
        .filter(|secret| secret.iter().any(|&b| b != 0)))
}

fn create(path: &Path) -> Result<([u8; SECRET_LEN], SecretOrigin), SecretError> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let secret = random_secret()?;
    let temp = write_temp(dir, &secret).map_err(io_error(dir))?;
    // Publishing by hard link is atomic and fails if another process won the race, so
    // the file is never seen half-written and never overwritten.
    let outcome = match fs::hard_link(&temp, path) {
        Ok(()) => Ok((secret, SecretOrigin::Created)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_secret(path) {
            Ok(Some(winner)) => Ok((winner, SecretOrigin::Existing)),
            Ok(None) => repair(path),
            Err(e) => Err(io_error(path)(e)),
        },
        // Filesystems without hard links: exclusive creation still lets one writer win.
        Err(_) => create_exclusive(path, &secret),
    };
    let _ = fs::remove_file(&temp);
    outcome
}

fn create_exclusive(
    path: &Path,
    secret: &[u8; SECRET_LEN],
) -> Result<([u8; SECRET_LEN], SecretOrigin), SecretError> {
    match private_file(path).and_then(|mut f| f.write_all(secret)) {
        Ok(()) => Ok((*secret, SecretOrigin::Created)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_secret(path) {
            Ok(Some(winner)) => Ok((winner, SecretOrigin::Existing)),
            _ => repair(path),
        },
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Replaces an invalid secret file. Serialised by a lock file so that concurrent
/// repairs agree on one new secret.
fn repair(path: &Path) -> Result<([u8; SECRET_LEN], SecretOrigin), SecretError> {
    let dir = parent(path);
    let lock_path = dir.join(format!(".{SECRET_FILE_NAME}.lock"));
    let _lock = match lock_within(&lock_path, LOCK_WAIT) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(SecretError::LockTimeout(lock_path)),
        Err(e) => return Err(io_error(&lock_path)(e)),
    };
    // Another process may have repaired it while we waited.
    if let Ok(Some(secret)) = read_secret(path) {
        return Ok((secret, SecretOrigin::Existing));
    }
    log::debug!(
        "telemetry: replacing invalid hash secret {}",
        path.display()
    );
    let secret = random_secret()?;
    let temp = write_temp(dir, &secret).map_err(io_error(dir))?;
    let renamed = fs::rename(&temp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    renamed.map_err(io_error(path))?;
    Ok((secret, SecretOrigin::Repaired))
}

/// Writes `secret` to a new private file in `dir`.
fn write_temp(dir: &Path, secret: &[u8; SECRET_LEN]) -> io::Result<PathBuf> {
    let temp = dir.join(format!(
        ".{SECRET_FILE_NAME}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = private_file(&temp).and_then(|mut f| {
        f.write_all(secret)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

fn random_secret() -> Result<[u8; SECRET_LEN], SecretError> {
    let mut secret = [0u8; SECRET_LEN];
    getrandom::fill(&mut secret).map_err(SecretError::Random)?;
    Ok(secret)
}

/// A per-process secret: random when the operating system allows, otherwise (only
/// when it has no randomness at all) derived from the time, the process id and
/// addresses, which is weak but still unknown outside the process.
fn process_secret() -> [u8; SECRET_LEN] {
    if let Ok(secret) = random_secret() {
        return secret;
    }
    use sha2::Digest;
    let local = 0u8;
    let mut hasher = Sha256::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update((&raw const local as usize).to_le_bytes());
    hasher.update(format!("{:?}", std::thread::current().id()).as_bytes());
    hasher.finalize().into()
}
