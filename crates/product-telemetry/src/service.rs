//! The anonymous telemetry service: consent, the install id and common properties on
//! top of the [`Client`].
//!
//! [`ProductTelemetry`] is the Rust form of the reference's `ProductTelemetry`. An
//! application usually initialises the process-wide instance once with [`init`] and
//! captures through [`capture`]; tests build their own instances with
//! [`ProductTelemetry::new`].
//!
//! When consent is withheld nothing is created: no id file, no thread, no socket, and
//! `capture` is a single check.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::client::{Client, ClientBuilder, DEFAULT_HOST, Message};
use crate::consent::{Consent, Saved};
use crate::event::{BoxedEvent, Event};
use crate::identity::{UserId, app_cache_dir, is_valid_app_name, user_id_path};
use crate::keyed_hash::KeyedHasher;
use crate::preference::{self, Preference, PreferenceError, preference_path};
use crate::scrub::Scrubber;
use crate::sent_log::SENT_LOG_FILE_NAME;
use crate::stats::Stats;
use crate::telemetry::Telemetry;
use crate::{Environment, Error, ProjectKey};

/// The property carrying the application's version, as the reference names it.
pub const DEFAULT_VERSION_PROPERTY: &str = "sdk_version";
/// How long the guard returned by [`init`] waits for delivery when dropped.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

type ClientOptions = Box<dyn FnOnce(ClientBuilder) -> ClientBuilder + Send>;

/// What an application says about its telemetry.
///
/// ```
/// use product_telemetry::{ProjectKey, TelemetryConfig};
/// let config = TelemetryConfig::new("myapp", "phc_project_key_placeholder")
///     .app_version("1.4.0")
///     .info_url("https://example.com/telemetry");
/// let per_env = TelemetryConfig::new(
///     "myapp",
///     ProjectKey::per_environment("MYAPP_API_ENDPOINT", "phc_local", "phc_staging", "phc_prod"),
/// );
/// ```
pub struct TelemetryConfig {
    pub(crate) app: String,
    api_key: ProjectKey,
    host: String,
    app_version: Option<String>,
    version_property: String,
    info_url: Option<String>,
    enabled: Option<bool>,
    person_profiles: bool,
    geoip: bool,
    send_ip: bool,
    pub(crate) env: Environment,
    shutdown_timeout: Duration,
    spool: bool,
    scrub: bool,
    trusted: Vec<String>,
    notice: Option<String>,
    capture_panics: bool,
    client_options: Option<ClientOptions>,
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("app", &self.app)
            .field("host", &self.host)
            .field("app_version", &self.app_version)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl TelemetryConfig {
    /// Telemetry for `app` (which names its cache folder) sent to the project `api_key`.
    pub fn new(app: impl Into<String>, api_key: impl Into<ProjectKey>) -> Self {
        TelemetryConfig {
            app: app.into(),
            api_key: api_key.into(),
            host: DEFAULT_HOST.to_string(),
            app_version: None,
            version_property: DEFAULT_VERSION_PROPERTY.to_string(),
            info_url: None,
            enabled: None,
            person_profiles: false,
            geoip: false,
            send_ip: false,
            env: Environment::process(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            spool: true,
            scrub: true,
            trusted: Vec::new(),
            notice: None,
            capture_panics: false,
            client_options: None,
        }
    }

    /// The PostHog host (default [`DEFAULT_HOST`]).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The application's version, sent as `sdk_version` (see
    /// [`version_property`](Self::version_property)).
    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// The property name for the application's version (default `sdk_version`).
    pub fn version_property(mut self, name: impl Into<String>) -> Self {
        self.version_property = name.into();
        self
    }

    /// A page explaining the app's telemetry, given in the one log line at start-up.
    pub fn info_url(mut self, url: impl Into<String>) -> Self {
        self.info_url = Some(url.into());
        self
    }

    /// The application's own switch: `false` turns telemetry off whatever else is set;
    /// `true` leaves the decision to the user's settings.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    /// Let PostHog build a person profile per install (`$process_person_profile`).
    /// Default off: anonymous telemetry needs none.
    pub fn person_profiles(mut self, on: bool) -> Self {
        self.person_profiles = on;
        self
    }

    /// Let PostHog look up the sender's location (`$geoip_disable`). Default off.
    pub fn geoip(mut self, on: bool) -> Self {
        self.geoip = on;
        self
    }

    /// Let PostHog store the connection's IP address. Default off: events carry
    /// `$ip: "0.0.0.0"`, which stops the server from recording the real one.
    pub fn send_ip(mut self, on: bool) -> Self {
        self.send_ip = on;
        self
    }

    /// Where environment variables are read from (default: the process environment).
    pub fn environment(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// How long the [`init`] guard waits for delivery when dropped (default 1 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Keep undelivered events in the spool under the app's cache folder (default on),
    /// so that nothing is lost to a crash, an offline run or an early exit.
    pub fn spool(mut self, on: bool) -> Self {
        self.spool = on;
        self
    }

    /// Scrub personal data from string property values before they leave (default on;
    /// see [`scrub`](crate::scrub) for exactly what is removed).
    pub fn scrub(mut self, on: bool) -> Self {
        self.scrub = on;
        self
    }

    /// A top-level property whose value the scrubber leaves alone (for example a
    /// four-part version number, which would otherwise read as an IP address).
    pub fn trusted_property(mut self, key: impl Into<String>) -> Self {
        self.trusted.push(key.into());
        self
    }

    /// The spool folder of this project: `<cache home>/<app>/spool/<id>`, where `<id>`
    /// is derived from the project key, so that events waiting for one project are
    /// never delivered to another (a changed host, such as a new proxy in front of the
    /// same project, still delivers them).
    pub fn spool_dir(&self) -> Option<PathBuf> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.api_key.resolve(&self.env).as_bytes());
        let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        self.spool_root().map(|root| root.join(id))
    }

    /// The folder holding every destination's spool: `<cache home>/<app>/spool`.
    pub fn spool_root(&self) -> Option<PathBuf> {
        app_cache_dir(&self.app, &self.env).map(|dir| dir.join("spool"))
    }

    /// Tunes the underlying [`ClientBuilder`] (batch size, intervals, timeouts, transport).
    ///
    /// ```
    /// # use product_telemetry::TelemetryConfig;
    /// use std::time::Duration;
    /// let config = TelemetryConfig::new("myapp", "phc_placeholder")
    ///     .client_options(|client| client.flush_interval(Duration::from_millis(200)));
    /// ```
    pub fn client_options(
        mut self,
        options: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static,
    ) -> Self {
        self.client_options = Some(Box::new(options));
        self
    }

    /// The first-run notice's text, shown once per app per machine on stderr before
    /// any event leaves (default: a short text naming the app, the info link and how
    /// to opt out). Never shown when telemetry is disabled.
    pub fn notice(mut self, text: impl Into<String>) -> Self {
        self.notice = Some(text.into());
        self
    }

    /// Record panics as `$exception` events (opt-in): a chained panic hook, the message
    /// scrubbed, the location reduced to a crate-relative file and line, and the event
    /// kept in the spool when it cannot be delivered before the process dies.
    pub fn capture_panics(mut self, on: bool) -> Self {
        self.capture_panics = on;
        self
    }

    /// The notice that will be shown on the first enabled run.
    pub fn notice_text(&self) -> String {
        if let Some(text) = &self.notice {
            return text.clone();
        }
        let link = self
            .info_url
            .as_deref()
            .map(|url| format!(" Learn more: {url}"))
            .unwrap_or_default();
        format!(
            "{app} collects anonymous usage data (no personal data, no IP address) to improve the tool.{link}\n\
             To opt out, set DO_NOT_TRACK=1 or ANONYMIZED_TELEMETRY=false.",
            app = self.app
        )
    }

    /// The consent these settings lead to: the environment, then the saved preference.
    pub fn consent(&self) -> Consent {
        Consent::decide_with(self.enabled, &self.env, || {
            saved_in(&self.load_preference())
        })
    }

    /// The user's saved preference file for this app.
    pub fn preference_path(&self) -> Option<PathBuf> {
        preference_path(&self.app, &self.env)
    }

    /// The preference file and what reading it gave (`None` without a config folder).
    fn load_preference(&self) -> Option<(PathBuf, Result<Preference, PreferenceError>)> {
        let path = self.preference_path()?;
        let loaded = preference::load(&path);
        Some((path, loaded))
    }

    /// Shows the first-run notice on stderr unless the preference read at start-up
    /// says it was shown before, and remembers that it now was. An unreadable file is
    /// left alone (telemetry is off then anyway).
    fn show_notice_once(&self, loaded: Option<(PathBuf, Result<Preference, PreferenceError>)>) {
        let Some((path, Ok(mut saved))) = loaded else {
            return;
        };
        if saved.notice_shown {
            return;
        }
        eprintln!("{}", self.notice_text());
        saved.notice_shown = true;
        if let Err(e) = preference::save(&path, &saved) {
            log::debug!("telemetry: cannot remember that the notice was shown: {e}");
        }
    }

    /// The id file this app uses.
    pub fn user_id_path(&self) -> Option<PathBuf> {
        user_id_path(&self.app, &self.env)
    }

    /// The project key selected in this environment.
    pub fn resolved_api_key(&self) -> &str {
        self.api_key.resolve(&self.env)
    }

    /// The configured host.
    pub fn host_url(&self) -> &str {
        &self.host
    }

    /// The application's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The log of what was sent: `<cache home>/<app>/sent.log`.
    pub fn sent_log_path(&self) -> Option<PathBuf> {
        app_cache_dir(&self.app, &self.env).map(|dir| dir.join(SENT_LOG_FILE_NAME))
    }

    fn client_builder(&mut self) -> ClientBuilder {
        let mut builder = Client::builder(self.api_key.resolve(&self.env))
            .host(self.host.clone())
            .forced_property("$process_person_profile", self.person_profiles);
        if !self.geoip {
            builder = builder.forced_property("$geoip_disable", true);
        }
        if !self.send_ip {
            builder = builder.forced_property("$ip", "0.0.0.0");
        }
        if self.scrub {
            builder = builder.scrubber(Some(Scrubber::from_environment(&self.env)));
        }
        builder = builder.common_properties(self.env.clone());
        if let Some(path) = self.sent_log_path().filter(|_| self.spool) {
            builder = builder.sent_log(path);
        }
        for key in &self.trusted {
            builder = builder.trusted_property(key.clone());
        }
        if let Some(dir) = self.spool_dir().filter(|_| self.spool) {
            builder = builder.spool_dir(dir);
        }
        if let Some(version) = &self.app_version {
            builder =
                builder.property(self.version_property.clone(), Value::from(version.as_str()));
        }
        match self.client_options.take() {
            Some(options) => options(builder),
            None => builder,
        }
    }
}

/// What a preference read says about consent; an unreadable file is reported as such
/// (and keeps telemetry off) rather than taken for "no preference".
fn saved_in(loaded: &Option<(PathBuf, Result<Preference, PreferenceError>)>) -> Saved {
    match loaded {
        Some((
            _,
            Ok(Preference {
                enabled: Some(on), ..
            }),
        )) => Saved::Set(*on),
        Some((_, Err(e))) => {
            log::debug!("telemetry: the saved preference is unreadable: {e}");
            Saved::Unreadable
        }
        _ => Saved::Missing,
    }
}

#[derive(Debug)]
struct Active {
    client: Client,
    distinct_id: Arc<str>,
    user_id: UserId,
    /// Where the keyed-hash secret lives (beside the id file).
    secret_dir: Option<PathBuf>,
    hasher: OnceLock<KeyedHasher>,
}

/// The anonymous telemetry service.
///
/// ```no_run
/// use std::time::Duration;
/// use product_telemetry::{DynamicEvent, ProductTelemetry, TelemetryConfig};
///
/// let telemetry = ProductTelemetry::new(TelemetryConfig::new("myapp", "phc_placeholder"));
/// telemetry.capture(DynamicEvent::new("command_run").property("command", "build"));
/// telemetry.shutdown(Duration::from_secs(1)).ok();
/// ```
#[derive(Debug)]
pub struct ProductTelemetry {
    app: String,
    consent: Consent,
    active: Option<Active>,
    shutdown_timeout: Duration,
}

impl ProductTelemetry {
    /// Decides consent and, when enabled, reads or creates the install id and starts the
    /// worker. Never fails: a configuration error is logged and leaves telemetry off.
    pub fn new(mut config: TelemetryConfig) -> Self {
        // The preference file is read at most once: for consent, then for the notice.
        let mut loaded = None;
        let consent = Consent::decide_with(config.enabled, &config.env, || {
            saved_in(loaded.insert(config.load_preference()))
        });
        let mut telemetry = ProductTelemetry {
            app: config.app.clone(),
            consent,
            active: None,
            shutdown_timeout: config.shutdown_timeout,
        };
        if !telemetry.consent.is_enabled() {
            log::debug!("Telemetry disabled: {}", telemetry.consent);
            return telemetry;
        }
        if !is_valid_app_name(&config.app) {
            log::warn!(
                "telemetry is off: {:?} is not a valid app name (letters, digits, '-', '_', '.')",
                config.app
            );
            return telemetry;
        }
        config.show_notice_once(loaded.unwrap_or_else(|| config.load_preference()));
        let client = match config.client_builder().build() {
            Ok(client) => client,
            Err(error) => {
                log::warn!("telemetry for {} is off: {error}", config.app);
                return telemetry;
            }
        };
        let user_id = UserId::resolve(config.user_id_path().as_deref());
        match &config.info_url {
            Some(url) => {
                log::info!("Anonymized telemetry is enabled. See {url} for more information.")
            }
            None => log::info!(
                "Anonymized telemetry is enabled for {}. Set ANONYMIZED_TELEMETRY=false or DO_NOT_TRACK=1 to turn it off.",
                config.app
            ),
        }
        let distinct_id: Arc<str> = Arc::from(user_id.as_str());
        if config.capture_panics {
            crate::panic_capture::install(client.clone(), Arc::clone(&distinct_id));
        }
        telemetry.active = Some(Active {
            client,
            distinct_id,
            user_id,
            secret_dir: app_cache_dir(&config.app, &config.env),
            hasher: OnceLock::new(),
        });
        telemetry
    }

    /// Captures an event. Never blocks, never panics, never fails.
    #[inline]
    pub fn capture<E: Event>(&self, event: E) {
        if let Some(active) = &self.active {
            active.client.enqueue(Message::boxed(
                Arc::clone(&active.distinct_id),
                BoxedEvent::new(event),
            ));
        }
    }

    /// Whether events are being collected.
    pub fn is_enabled(&self) -> bool {
        self.active.is_some()
    }

    /// The consent decision and what decided it.
    pub fn consent(&self) -> &Consent {
        &self.consent
    }

    /// The application's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The anonymous id events are sent with (`None` when disabled: no id is created).
    pub fn user_id(&self) -> Option<&UserId> {
        self.active.as_ref().map(|a| &a.user_id)
    }

    /// A keyed one-way hash of `value` (HMAC-SHA256 with a random per-install secret
    /// kept beside the id): equal values give equal hashes on this machine, and the
    /// value cannot be read back. For project names, repository URLs and the like.
    /// `None` when telemetry is disabled (no secret is created then).
    ///
    /// ```no_run
    /// # use product_telemetry::{ProductTelemetry, TelemetryConfig, DynamicEvent};
    /// # let telemetry = ProductTelemetry::new(TelemetryConfig::new("app", "phc_placeholder"));
    /// if let Some(repo) = telemetry.keyed_hash("git@example.com:acme/secret-project.git") {
    ///     telemetry.capture(DynamicEvent::new("repo_opened").property("repo", repo));
    /// }
    /// ```
    pub fn keyed_hash(&self, value: &str) -> Option<String> {
        let active = self.active.as_ref()?;
        let hasher = active.hasher.get_or_init(|| match &active.secret_dir {
            Some(dir) => KeyedHasher::load_or_create(dir),
            None => KeyedHasher::ephemeral("no home folder"),
        });
        Some(hasher.hash(value))
    }

    /// The underlying PostHog client (`None` when disabled).
    pub fn client(&self) -> Option<&Client> {
        self.active.as_ref().map(|a| &a.client)
    }

    /// Counters (all zero when disabled).
    pub fn stats(&self) -> Stats {
        self.client().map(Client::stats).unwrap_or_default()
    }

    /// Delivers everything captured so far, waiting at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.client().ok_or(Error::Disabled)?.flush(timeout)
    }

    /// Waits until everything captured so far is in the spool (or delivered), so it
    /// survives a crash of this process. See [`Client::persist`].
    pub fn persist(&self, timeout: Duration) -> Result<(), Error> {
        self.client().ok_or(Error::Disabled)?.persist(timeout)
    }

    /// Delivers what is queued and stops, waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.client().ok_or(Error::Disabled)?.shutdown(timeout)
    }
}

impl Telemetry for ProductTelemetry {
    fn capture_boxed(&self, event: BoxedEvent) {
        if let Some(active) = &self.active {
            active
                .client
                .enqueue(Message::boxed(Arc::clone(&active.distinct_id), event));
        }
    }
}

static GLOBAL: OnceLock<ProductTelemetry> = OnceLock::new();

/// Initialises the process-wide service. Returns a guard that shuts it down, within
/// the configured bound, when dropped (keep it alive in `main`).
///
/// A second call is harmless: it changes nothing, logs a warning and returns an inert
/// guard. Use [`try_init`] to be told instead.
///
/// ```no_run
/// use product_telemetry::{DynamicEvent, TelemetryConfig};
///
/// fn main() {
///     let _telemetry = product_telemetry::init(
///         TelemetryConfig::new("myapp", "phc_project_key_placeholder").app_version("1.0.0"),
///     );
///     product_telemetry::capture(DynamicEvent::new("app_started"));
/// } // the guard delivers what is queued, for at most 1 s
/// ```
pub fn init(config: TelemetryConfig) -> TelemetryGuard {
    match try_init(config) {
        Ok(guard) => guard,
        Err(_) => {
            log::warn!("telemetry is already initialised; this init() changed nothing");
            TelemetryGuard { owner: None }
        }
    }
}

/// Like [`init`], but a second call returns [`AlreadyInitialised`].
pub fn try_init(config: TelemetryConfig) -> Result<TelemetryGuard, AlreadyInitialised> {
    let mut created = false;
    let telemetry = GLOBAL.get_or_init(|| {
        created = true;
        ProductTelemetry::new(config)
    });
    if created {
        Ok(TelemetryGuard {
            owner: Some(telemetry),
        })
    } else {
        Err(AlreadyInitialised)
    }
}

/// The process-wide service was initialised before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("telemetry is already initialised")]
pub struct AlreadyInitialised;

/// The process-wide service, if [`init`] was called.
pub fn global() -> Option<&'static ProductTelemetry> {
    GLOBAL.get()
}

/// Captures an event with the process-wide service; does nothing before [`init`].
#[inline]
pub fn capture<E: Event>(event: E) {
    if let Some(telemetry) = GLOBAL.get() {
        telemetry.capture(event);
    }
}

/// Shuts the process-wide service down when dropped, waiting at most its
/// `shutdown_timeout`.
#[must_use = "dropping the guard shuts telemetry down at once"]
#[derive(Debug)]
pub struct TelemetryGuard {
    owner: Option<&'static ProductTelemetry>,
}

impl TelemetryGuard {
    /// The service this guard owns (`None` for the inert guard of a second `init`).
    pub fn telemetry(&self) -> Option<&'static ProductTelemetry> {
        self.owner
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(telemetry) = self.owner {
            let _ = telemetry.shutdown(telemetry.shutdown_timeout);
        }
    }
}
