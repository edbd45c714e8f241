//! The PostHog project key events are sent to: one key, or one per environment.
//!
//! Project keys (`phc_…`) are write-only and meant to be embedded in programs. An app
//! that keeps separate projects for local, staging and production picks one from an
//! endpoint variable it names, as the reference does with `PORTIA_API_ENDPOINT`:
//! a value containing `localhost` selects the local key, one containing `dev` the
//! staging key, anything else (or no value) the production key.

use crate::Environment;

/// Which project key to send with.
///
/// ```
/// use product_telemetry::{Environment, ProjectKey};
/// let key = ProjectKey::per_environment("MYAPP_API_ENDPOINT", "phc_local", "phc_staging", "phc_prod");
/// let env = |v: &str| Environment::from_pairs([("MYAPP_API_ENDPOINT", v)]);
/// assert_eq!(key.resolve(&env("http://localhost:8000")), "phc_local");
/// assert_eq!(key.resolve(&env("https://api.dev.example.com")), "phc_staging");
/// assert_eq!(key.resolve(&env("https://api.example.com")), "phc_prod");
/// assert_eq!(key.resolve(&Environment::from_pairs::<&str, &str>([])), "phc_prod");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectKey {
    /// Always this key.
    Single(String),
    /// One key per environment, chosen from an endpoint variable.
    PerEnvironment {
        /// The variable holding the app's API endpoint.
        variable: String,
        /// Used when the endpoint contains `localhost`.
        local: String,
        /// Used when the endpoint contains `dev`.
        staging: String,
        /// Used otherwise.
        production: String,
    },
}

impl ProjectKey {
    /// A single key for every environment.
    pub fn new(key: impl Into<String>) -> Self {
        ProjectKey::Single(key.into())
    }

    /// One key per environment, selected by the endpoint in `variable`.
    pub fn per_environment(
        variable: impl Into<String>,
        local: impl Into<String>,
        staging: impl Into<String>,
        production: impl Into<String>,
    ) -> Self {
        ProjectKey::PerEnvironment {
            variable: variable.into(),
            local: local.into(),
            staging: staging.into(),
            production: production.into(),
        }
    }

    /// The key to use in `env`.
    pub fn resolve(&self, env: &Environment) -> &str {
        match self {
            ProjectKey::Single(key) => key,
            ProjectKey::PerEnvironment {
                variable,
                local,
                staging,
                production,
            } => match env.var(variable) {
                Some(endpoint) if endpoint.contains("localhost") => local,
                Some(endpoint) if endpoint.contains("dev") => staging,
                _ => production,
            },
        }
    }
}

impl From<&str> for ProjectKey {
    fn from(key: &str) -> Self {
        ProjectKey::new(key)
    }
}

impl From<String> for ProjectKey {
    fn from(key: String) -> Self {
        ProjectKey::new(key)
    }
}
