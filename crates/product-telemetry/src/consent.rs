//! Consent: whether telemetry is on, and which setting decided it.
//!
//! Decided once, before any I/O, from (in order of precedence):
//!
//! 1. the application's own switch ([`TelemetryConfig::enabled`](crate::TelemetryConfig::enabled)),
//!    which can turn telemetry off but never overrides a user's opt-out;
//! 2. `DO_NOT_TRACK` set to `1`, `true` or `yes` (the community convention);
//! 3. `ANONYMIZED_TELEMETRY` set to `false`, `0`, `no` or `off` (the reference's variable);
//! 4. the user's saved preference (`telemetry enable|disable`, see
//!    [`preference`](crate::preference));
//! 5. the default: enabled.
//!
//! Values are compared without regard to letter case or surrounding spaces. This module
//! never touches the filesystem or the network.

use std::fmt;

use crate::Environment;

/// The variable the reference implementation reads; a false-like value disables telemetry.
pub const ANONYMIZED_TELEMETRY: &str = "ANONYMIZED_TELEMETRY";
/// The community-wide opt-out (<https://consoledonottrack.com>); a true-like value disables.
pub const DO_NOT_TRACK: &str = "DO_NOT_TRACK";

/// Which setting decided the consent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentSource {
    /// The application turned telemetry off in its configuration.
    Application,
    /// `DO_NOT_TRACK` holds the given true-like value.
    DoNotTrack(String),
    /// `ANONYMIZED_TELEMETRY` holds the given value.
    AnonymizedTelemetry(String),
    /// The user's saved preference.
    SavedPreference,
    /// The saved preference file exists but cannot be read or parsed: telemetry stays
    /// off until `telemetry enable` or `disable` rewrites it (privacy first).
    UnreadablePreference,
    /// Nothing was set: the default applies.
    Default,
}

/// What the user's saved preference says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// No preference saved (or none that sets `enabled`).
    Missing,
    /// `telemetry enable` (`true`) or `telemetry disable` (`false`).
    Set(bool),
    /// The file is there but cannot be read or parsed.
    Unreadable,
}

/// The outcome of the consent rules: enabled or not, and why.
///
/// ```
/// use product_telemetry::{Consent, Environment};
/// let consent = Consent::decide(None, &Environment::from_pairs([("ANONYMIZED_TELEMETRY", " Off ")]));
/// assert!(!consent.is_enabled());
/// assert_eq!(consent.to_string(), "disabled (ANONYMIZED_TELEMETRY= Off )");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    enabled: bool,
    source: ConsentSource,
}

impl Consent {
    /// Applies the rules to the application's switch (`None` when it has none) and the
    /// environment, with no saved preference.
    pub fn decide(application: Option<bool>, env: &Environment) -> Consent {
        Consent::decide_with(application, env, || Saved::Missing)
    }

    /// Applies every rule; `saved` is asked for the user's saved preference only when
    /// nothing before it decided (so a disabled run need not read the file).
    pub fn decide_with(
        application: Option<bool>,
        env: &Environment,
        saved: impl FnOnce() -> Saved,
    ) -> Consent {
        if application == Some(false) {
            return Consent::disabled(ConsentSource::Application);
        }
        if let Some(value) = env.var(DO_NOT_TRACK).filter(|v| is_true_like(v)) {
            return Consent::disabled(ConsentSource::DoNotTrack(value));
        }
        if let Some(value) = env.var(ANONYMIZED_TELEMETRY) {
            if is_false_like(&value) {
                return Consent::disabled(ConsentSource::AnonymizedTelemetry(value));
            }
            if is_true_like(&value) {
                return Consent {
                    enabled: true,
                    source: ConsentSource::AnonymizedTelemetry(value),
                };
            }
        }
        match saved() {
            Saved::Set(enabled) => {
                return Consent {
                    enabled,
                    source: ConsentSource::SavedPreference,
                };
            }
            Saved::Unreadable => return Consent::disabled(ConsentSource::UnreadablePreference),
            Saved::Missing => {}
        }
        Consent {
            enabled: true,
            source: ConsentSource::Default,
        }
    }

    fn disabled(source: ConsentSource) -> Consent {
        Consent {
            enabled: false,
            source,
        }
    }

    /// Whether telemetry may be collected and sent.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The setting that decided.
    pub fn source(&self) -> &ConsentSource {
        &self.source
    }
}

impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.enabled { "enabled" } else { "disabled" };
        match &self.source {
            ConsentSource::Application => write!(f, "{state} (by the application)"),
            ConsentSource::DoNotTrack(v) => write!(f, "{state} ({DO_NOT_TRACK}={v})"),
            ConsentSource::AnonymizedTelemetry(v) => {
                write!(f, "{state} ({ANONYMIZED_TELEMETRY}={v})")
            }
            ConsentSource::SavedPreference => write!(f, "{state} (saved preference)"),
            ConsentSource::UnreadablePreference => {
                write!(f, "{state} (the saved preference file is unreadable)")
            }
            ConsentSource::Default => write!(f, "{state} (default)"),
        }
    }
}

fn normalized(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

fn is_false_like(value: &str) -> bool {
    matches!(normalized(value).as_str(), "false" | "0" | "no" | "off")
}

pub(crate) fn is_true_like(value: &str) -> bool {
    matches!(normalized(value).as_str(), "true" | "1" | "yes" | "on")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(app: Option<bool>, pairs: &[(&str, &str)]) -> Consent {
        Consent::decide(app, &Environment::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn enabled_by_default() {
        let c = decide(None, &[]);
        assert!(c.is_enabled());
        assert_eq!(c.source(), &ConsentSource::Default);
    }

    #[test]
    fn every_false_spelling_of_anonymized_telemetry_disables() {
        for v in [
            "false",
            "FALSE",
            "False",
            "0",
            "no",
            "NO",
            "off",
            "Off",
            " off ",
            "\tfalse\n",
        ] {
            let c = decide(None, &[(ANONYMIZED_TELEMETRY, v)]);
            assert!(!c.is_enabled(), "{v:?} should disable");
            assert_eq!(
                c.source(),
                &ConsentSource::AnonymizedTelemetry(v.to_string())
            );
        }
    }

    #[test]
    fn other_anonymized_telemetry_values_leave_it_enabled() {
        for v in ["true", "1", "yes", "", "maybe", "nope"] {
            assert!(
                decide(None, &[(ANONYMIZED_TELEMETRY, v)]).is_enabled(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn do_not_track_true_like_disables() {
        for v in ["1", "true", "TRUE", "yes", " 1 "] {
            let c = decide(None, &[(DO_NOT_TRACK, v)]);
            assert!(!c.is_enabled(), "{v:?}");
            assert_eq!(c.to_string(), format!("disabled (DO_NOT_TRACK={v})"));
        }
        for v in ["0", "false", ""] {
            assert!(decide(None, &[(DO_NOT_TRACK, v)]).is_enabled(), "{v:?}");
        }
    }

    #[test]
    fn do_not_track_beats_an_explicit_enable() {
        let c = decide(
            Some(true),
            &[(DO_NOT_TRACK, "1"), (ANONYMIZED_TELEMETRY, "true")],
        );
        assert!(!c.is_enabled());
        assert!(matches!(c.source(), ConsentSource::DoNotTrack(_)));
    }

    #[test]
    fn application_switch_comes_first() {
        let c = decide(Some(false), &[(ANONYMIZED_TELEMETRY, "true")]);
        assert!(!c.is_enabled());
        assert_eq!(c.source(), &ConsentSource::Application);
        assert_eq!(c.to_string(), "disabled (by the application)");
    }
}
