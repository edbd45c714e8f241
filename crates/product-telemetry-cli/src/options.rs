//! Options shared by every command, from flags or `PRODUCT_TELEMETRY_*` variables, and
//! the library configuration they describe.

use clap::Args;
use product_telemetry::{DEFAULT_HOST, TelemetryConfig};

/// The app, host, key and version telemetry is sent with.
#[derive(Debug, Args)]
pub(crate) struct GlobalOptions {
    /// The application's name: it names the cache folder holding the id.
    #[arg(
        long,
        global = true,
        env = "PRODUCT_TELEMETRY_APP",
        default_value = "product-telemetry"
    )]
    pub(crate) app: String,
    /// The PostHog (or compatible) host: https, or http to a loopback address.
    #[arg(long, global = true, env = "PRODUCT_TELEMETRY_HOST", default_value = DEFAULT_HOST)]
    pub(crate) host: String,
    /// The project API key (phc_…).
    #[arg(
        long,
        global = true,
        env = "PRODUCT_TELEMETRY_API_KEY",
        hide_env_values = true
    )]
    pub(crate) api_key: Option<String>,
    /// The application's version, sent as `sdk_version`.
    #[arg(long, global = true, env = "PRODUCT_TELEMETRY_APP_VERSION")]
    pub(crate) app_version: Option<String>,
}

impl GlobalOptions {
    /// The configuration, when a non-empty API key was given.
    pub(crate) fn config_with_key(&self) -> Option<TelemetryConfig> {
        self.api_key
            .as_deref()
            .is_some_and(|k| !k.is_empty())
            .then(|| self.config())
    }

    /// The same options as `PRODUCT_TELEMETRY_*` variables, for a child process.
    pub(crate) fn as_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PRODUCT_TELEMETRY_APP", self.app.clone()),
            ("PRODUCT_TELEMETRY_HOST", self.host.clone()),
        ];
        if let Some(key) = &self.api_key {
            env.push(("PRODUCT_TELEMETRY_API_KEY", key.clone()));
        }
        if let Some(version) = &self.app_version {
            env.push(("PRODUCT_TELEMETRY_APP_VERSION", version.clone()));
        }
        env
    }

    /// The library configuration for these options (the key may be empty).
    pub(crate) fn config(&self) -> TelemetryConfig {
        let notice = format!(
            "{app}: anonymous usage data (no personal data, no IP address) is collected with product-telemetry.\n\
             To opt out: `product-telemetry --app {app} telemetry disable`, or set DO_NOT_TRACK=1 or ANONYMIZED_TELEMETRY=false.",
            app = self.app
        );
        let mut config =
            TelemetryConfig::new(self.app.clone(), self.api_key.clone().unwrap_or_default())
                .host(self.host.clone())
                .notice(notice);
        if let Some(version) = &self.app_version {
            config = config.app_version(version.clone());
        }
        config
    }
}
