//! Where settings come from: the process environment, or a fixed map in tests.
//!
//! The library reads environment variables only through [`Environment`], so tests
//! can exercise every consent and path rule without touching the real process
//! environment. It never reads `.env` files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// A source of environment variables.
///
/// [`Environment::process`] (the default) reads the real environment; tests build one
/// from pairs with [`Environment::from_pairs`].
///
/// ```
/// use product_telemetry::Environment;
/// let env = Environment::from_pairs([("DO_NOT_TRACK", "1")]);
/// assert_eq!(env.var("DO_NOT_TRACK").as_deref(), Some("1"));
/// assert_eq!(env.var("HOME"), None);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Environment {
    fixed: Option<Arc<HashMap<String, OsString>>>,
}

impl Environment {
    /// The real process environment.
    pub fn process() -> Self {
        Self { fixed: None }
    }

    /// A fixed set of variables; every other variable is unset (including `HOME`).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<OsString>,
    {
        let map = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            fixed: Some(Arc::new(map)),
        }
    }

    /// The variable as an OS string, if set.
    pub fn var_os(&self, name: &str) -> Option<OsString> {
        match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => std::env::var_os(name),
        }
    }

    /// The variable as UTF-8, if set and valid UTF-8.
    pub fn var(&self, name: &str) -> Option<String> {
        self.var_os(name).and_then(|v| v.into_string().ok())
    }

    /// The user's home folder: `HOME` (or `USERPROFILE` on Windows) when set and
    /// non-empty, otherwise what the platform says (process environment only).
    pub fn home_dir(&self) -> Option<PathBuf> {
        let from_var = |name: &str| {
            self.var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        match &self.fixed {
            Some(_) => from_var(var),
            None => from_var(var).or_else(std::env::home_dir),
        }
    }
}
