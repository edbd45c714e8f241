//! The user's saved telemetry preference for one app, and whether the first-run notice
//! was shown.
//!
//! Stored as a small JSON file in the app's config folder —
//! `$XDG_CONFIG_HOME/<app>/telemetry.json` when that variable is absolute, otherwise
//! `~/.config/<app>/telemetry.json` — written to a temporary file and renamed into
//! place (atomic). A file that cannot be parsed is reported as corrupt and replaced on
//! the next save; it never stops the program.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Environment;

/// The preference file's name.
pub const PREFERENCE_FILE_NAME: &str = "telemetry.json";

/// What the user chose, and what they were shown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Preference {
    /// `Some(false)` after `telemetry disable`, `Some(true)` after `telemetry enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The first-run notice was shown on this machine.
    #[serde(default)]
    pub notice_shown: bool,
}

/// Why the preference could not be read or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreferenceError {
    /// No home folder and no absolute `XDG_CONFIG_HOME`.
    #[error("no config folder to keep the preference in")]
    NoConfigDir,
    /// The file exists but is not a valid preference.
    #[error("{path} is not a valid preference file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The preference file of `app`.
///
/// ```
/// use product_telemetry::{preference::preference_path, Environment};
/// let env = Environment::from_pairs([("HOME", "/home/ada")]);
/// assert_eq!(preference_path("myapp", &env), Some("/home/ada/.config/myapp/telemetry.json".into()));
/// ```
pub fn preference_path(app: &str, env: &Environment) -> Option<PathBuf> {
    if !crate::identity::is_valid_app_name(app) {
        return None;
    }
    let base = env
        .var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env.home_dir().map(|home| home.join(".config")))?;
    Some(base.join(app).join(PREFERENCE_FILE_NAME))
}

/// Reads the preference; a missing file is the default preference.
pub fn load(path: &Path) -> Result<Preference, PreferenceError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PreferenceError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Preference::default()),
        Err(source) => Err(PreferenceError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Saves the preference atomically (temporary file, then rename).
pub fn save(path: &Path, preference: &Preference) -> Result<(), PreferenceError> {
    let io_err = |source| PreferenceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let temp = dir.join(format!(
        ".{PREFERENCE_FILE_NAME}.{}.tmp",
        std::process::id()
    ));
    let text = serde_json::to_vec_pretty(preference).map_err(|e| io_err(io::Error::other(e)))?;
    let written = fs::write(&temp, text).and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app").join(PREFERENCE_FILE_NAME);
        assert_eq!(load(&path).unwrap(), Preference::default());
        let saved = Preference {
            enabled: Some(false),
            notice_shown: true,
        };
        save(&path, &saved).unwrap();
        assert_eq!(load(&path).unwrap(), saved);
    }

    #[test]
    fn corrupt_files_are_reported_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PREFERENCE_FILE_NAME);
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(PreferenceError::Corrupt { .. })));
        save(&path, &Preference::default()).unwrap();
        assert_eq!(load(&path).unwrap(), Preference::default());
    }

    #[test]
    fn a_folder_in_place_of_the_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PREFERENCE_FILE_NAME);
        fs::create_dir_all(&path).unwrap();
        assert!(load(&path).is_err());
        assert!(save(&path, &Preference::default()).is_err());
    }
}
