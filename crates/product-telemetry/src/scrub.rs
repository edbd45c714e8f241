//! The scrubber: removes personal data from string property values before they leave
//! the machine.
//!
//! A [`Scrubber`] is built once (usually with [`Scrubber::from_environment`]) and run by
//! the background worker over every event's properties ([`Scrubber::scrub_properties`]).
//! It owns the rules below and nothing else: it never reads files, never logs what it
//! removed, and never panics. It is a best-effort filter for *accidental* personal data
//! (a path in an error message, a URL in a config value); it is not a reason to put user
//! content into events.
//!
//! # What is scrubbed
//!
//! | found | becomes | example |
//! | --- | --- | --- |
//! | the home folder, as a path prefix (POSIX, Windows with `\`, `/` or JSON-escaped `\\`, inside `file://` URLs; ASCII case-insensitive) | `~` | `/home/ada/x` → `~/x`, `C:\Users\Ada\x` → `~\x`, `file:///home/ada/x` → `file://~/x` |
//! | the user name as a whole path component anywhere else | `<user>` | `/Volumes/ada/x` → `/Volumes/<user>/x` |
//! | an e-mail address (`local@domain.tld`, alphabetic TLD) | `<email>` | `ada@example.com` → `<email>` |
//! | an IPv4 address (four octets 0–255) or an IPv6 address with at least two colons and one decimal digit | `<ip>` | `10.0.0.1:80` → `<ip>:80`, `[::1]` → `[<ip>]` |
//! | a MAC address (six pairs of hex digits joined by `:` or `-`) | `<mac>` | |
//! | URL credentials (`scheme://user:pass@`) | removed | `https://u:p@host/a` → `https://host/a` |
//! | a URL's query and fragment (`?…`, `#…`, to the end of the URL) | removed | `https://host/a?q=1#f` → `https://host/a` |
//! | the credential after `Authorization:` / `"authorization": "` (a scheme word such as `Bearer` or `Basic` is kept) | `<token>` | `Authorization: Bearer xyz` → `Authorization: Bearer <token>` |
//! | the token after the word `Bearer` (any case) when it is not a plain word and has at least 8 characters | `<token>` | `bearer abc.def.ghi` → `bearer <token>` |
//! | tokens with a known prefix: `ghp_` `gho_` `ghu_` `ghs_` `ghr_` `github_pat_` `glpat-` `sk-` (incl. `sk-proj-`, `sk-ant-`) `sk_live_` `sk_test_` `pk_live_` `pk_test_` `rk_live_` `rk_test_` `whsec_` `xoxb-` `xoxp-` `xoxa-` `xoxr-` `xoxs-` `xapp-` `phx_` `phc_` `npm_` `hf_` `pypi-` `AIza`, and `AKIA`/`ASIA` + 16 upper-case letters or digits | `<token>` | `ghp_…` → `<token>` |
//! | a JWT (`eyJ….eyJ….signature`) | `<token>` | |
//! | a run of 32 or more hex digits (optionally `0x`-prefixed), unless it is all decimal digits | `<secret>` | a SHA-256, a 40-character git commit id |
//! | a run of 40 or more base64/base64url characters that looks random (see below) | `<secret>` | an AWS secret key |
//!
//! Each rule needs a boundary before its match (start of string, or a character that
//! cannot continue the match), so `task-1` and `disk-usage` hold no `sk-` token, and
//! each prefixed token needs a minimum body length (20 characters for `sk-`). Where
//! matches overlap, the one starting first wins; at one position the order is: URL
//! parts, e-mail (at its `@`), home folder, user name, `Authorization`, `Bearer`, JWT,
//! prefixed tokens, MAC, IP, hex, base64. A placeholder counts as a boundary for what
//! follows it.
//!
//! # What is deliberately kept
//!
//! Ordinary words and sentences; version strings (`1.2.3`, `v2.10.0-rc.1`, and
//! `v1.2.3.4`, `1.2.3.4-beta`, `1.2.3.4+build`); hyphenated UUIDs (each hex group is
//! short — the library's own ids are UUIDs); short hex such as git short SHAs; model
//! names (`gpt-4o-mini`, `claude-3-5-sonnet`); durations, numbers and ISO timestamps
//! (`12:34:56` is not IPv6); `file.rs:12`, relative paths, system paths (`/usr/bin/env`,
//! `C:\Program Files\x`); `npm @scope/pkg`, `pkg@1.2.3`, `user@` and `user@localhost`
//! (no dotted domain); host names and ports (`localhost:8080`, `https://example.com/a`).
//!
//! Choices worth knowing:
//! - A bare dotted quad such as `1.2.3.4` **is** scrubbed as an IP: it cannot be told
//!   from an address, and privacy wins. Send four-part versions with a `v` prefix or
//!   mark the property trusted.
//! - A 40-character git commit id is scrubbed (it is ≥ 32 hex digits): the commit of a
//!   private repository identifies that repository. Mark the property trusted to keep it.
//! - A 32-digit "simple" UUID without hyphens is scrubbed, a hyphenated one is kept.
//! - `phc_` project keys are public, but in a property value they are usually the
//!   *user's* key (which names their company), so they are scrubbed too.
//! - Generic account names (`root`, `admin`, `user`, `runner`, `ubuntu`, `app`, …) and
//!   one-character names are never treated as the user name: they are not personal and
//!   would wreck ordinary paths. A home folder that is a filesystem root is ignored.
//! - A plain word after `Bearer` ("the bearer instruments") is kept; after
//!   `Authorization:` everything up to the next space or quote is a credential.
//! - "Looks random" for base64: the number of changes between upper case, lower case and
//!   digits per character, plus the Shannon entropy divided by log₂ of the length, is at
//!   least 1.15. Random base64 of 40+ characters scores 1.2–1.6 (below 1.15 about once
//!   in 10⁵), long paths and identifiers 0.8–1.1. A run with `/` in it that fails as a
//!   whole is also tested segment by segment.
//!
//! # Properties
//!
//! [`Scrubber::scrub_properties`] scrubs every string value and every object key at
//! every depth (arrays and objects included). Left entirely alone (key and value) are
//! the top-level properties the app marked trusted and the library's own
//! [`LIBRARY_KEYS`]. Numbers, booleans and nulls are never changed. If two keys scrub
//! to the same text, the one that comes last wins.
//!
//! # Cost
//!
//! Hand-written scanning: one pass per string, no allocation unless something is
//! replaced (then one `String` for the result). No regular-expression engine: the
//! `regex` crate would add three crates and several hundred KB of code to every program
//! using this library, for rules that need hand-written validation anyway (IP parsing,
//! octet ranges, randomness, boundaries). Scrubbing runs on the background worker, never
//! on the caller's thread. `cargo bench -p product-telemetry --bench scrub` measures a
//! typical 10-property event (about 250 bytes of keys and strings), with nothing to
//! replace and with a path, an e-mail, a URL, an IP and a token to replace: about
//! 2.5 µs either way as the best of repeated batches on a 2-core VM, and a criterion
//! mean of 5–8 µs while that VM was loaded at 5 (a 60-byte log line alone: 0.6 µs best,
//! 1.7 µs mean) — a few times the cost of encoding the event as JSON.
//!
//! # Example
//!
//! ```
//! use product_telemetry::scrub::Scrubber;
//!
//! let scrubber = Scrubber::new(Some("/home/ada".into()), Some("ada".into()));
//! assert_eq!(
//!     scrubber.scrub_str("open /home/ada/notes.txt failed for ada@example.com"),
//!     "open ~/notes.txt failed for <email>"
//! );
//! assert_eq!(
//!     scrubber.scrub_str("GET https://bob:hunter2@api.example.com/v1/items?key=abc from 10.0.0.7"),
//!     "GET https://api.example.com/v1/items from <ip>"
//! );
//! // Nothing to remove: the input is returned as it is, without allocating.
//! assert!(matches!(scrubber.scrub_str("build 1.2.3 ok"), std::borrow::Cow::Borrowed(_)));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::Environment;

/// Properties the library itself sets; [`Scrubber::scrub_properties`] leaves them alone
/// (`$ip` is `0.0.0.0` by design and must not become `<ip>`).
pub const LIBRARY_KEYS: &[&str] = &[
    "$lib",
    "$lib_version",
    "$ip",
    "$geoip_disable",
    "$process_person_profile",
];

/// `TOKEN_FIRST_BYTES[b]`: some token prefix starts with the byte `b`.
const TOKEN_FIRST_BYTES: [bool; 128] = {
    let mut table = [false; 128];
    let mut n = 0;
    while n < TOKEN_PREFIXES.len() {
        table[(TOKEN_PREFIXES[n].0.as_bytes()[0] & 0x7f) as usize] = true;
        n += 1;
    }
    table
};

/// The placeholder for the home folder.
pub const HOME: &str = "~";
/// The placeholder for the user name in a path.
pub const USER: &str = "<user>";
/// The placeholder for an e-mail address.
pub const EMAIL: &str = "<email>";
/// The placeholder for an IPv4 or IPv6 address.
pub const IP: &str = "<ip>";
/// The placeholder for a MAC address.
pub const MAC: &str = "<mac>";
/// The placeholder for a bearer, API or access token.
pub const TOKEN: &str = "<token>";
/// The placeholder for a long hex or base64 secret.
pub const SECRET: &str = "<secret>";

/// User names that are not personal and would wreck ordinary paths if replaced.
const GENERIC_USER_NAMES: &[&str] = &[
    "root",
    "admin",
    "administrator",
    "user",
    "users",
    "guest",
    "nobody",
    "runner",
    "ubuntu",
    "app",
    "node",
    "home",
    "public",
    "default",
    "shared",
    "system",
];

/// Minimum hex digits for a `<secret>`.
const MIN_HEX: usize = 32;
/// Minimum base64 characters for a `<secret>`.
const MIN_BASE64: usize = 40;
/// Randomness score a base64 run needs to be a `<secret>` (see the module doc).
const BASE64_SCORE: f64 = 1.15;
/// Minimum length of a token after `Bearer` (outside an `Authorization` header).
const MIN_BEARER: usize = 8;

/// The body a token prefix must be followed by.
#[derive(Clone, Copy)]
enum Body {
    /// Letters and digits.
    Alnum,
    /// Letters, digits and `_`.
    Word,
    /// Letters, digits, `_` and `-`.
    UrlSafe,
    /// Letters, digits and `-`.
    Dashed,
    /// Upper-case letters and digits.
    Upper,
}

impl Body {
    fn allows(self, b: u8) -> bool {
        match self {
            Body::Alnum => b.is_ascii_alphanumeric(),
            Body::Word => b.is_ascii_alphanumeric() || b == b'_',
            Body::UrlSafe => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Body::Dashed => b.is_ascii_alphanumeric() || b == b'-',
            Body::Upper => b.is_ascii_uppercase() || b.is_ascii_digit(),
        }
    }
}

/// Known token prefixes: (prefix, body characters, minimum body length).
const TOKEN_PREFIXES: &[(&str, Body, usize)] = &[
    ("ghp_", Body::Alnum, 20),
    ("gho_", Body::Alnum, 20),
    ("ghu_", Body::Alnum, 20),
    ("ghs_", Body::Alnum, 20),
    ("ghr_", Body::Alnum, 20),
    ("github_pat_", Body::Word, 20),
    ("glpat-", Body::UrlSafe, 20),
    ("sk-", Body::UrlSafe, 20),
    ("sk_live_", Body::Alnum, 16),
    ("sk_test_", Body::Alnum, 16),
    ("pk_live_", Body::Alnum, 16),
    ("pk_test_", Body::Alnum, 16),
    ("rk_live_", Body::Alnum, 16),
    ("rk_test_", Body::Alnum, 16),
    ("whsec_", Body::Alnum, 20),
    ("xoxb-", Body::Dashed, 10),
    ("xoxp-", Body::Dashed, 10),
    ("xoxa-", Body::Dashed, 10),
    ("xoxr-", Body::Dashed, 10),
    ("xoxs-", Body::Dashed, 10),
    ("xapp-", Body::Dashed, 10),
    ("phx_", Body::UrlSafe, 20),
    ("phc_", Body::UrlSafe, 20),
    ("npm_", Body::Alnum, 30),
    ("hf_", Body::Alnum, 30),
    ("pypi-", Body::UrlSafe, 50),
    ("AIza", Body::UrlSafe, 30),
    ("AKIA", Body::Upper, 16),
    ("ASIA", Body::Upper, 16),
];

/// Removes personal data from strings and event properties.
///
/// Cheap to clone and to share between threads. Its `Debug` output does not show the
/// home folder or the user name.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// The home folder split at `/` and `\` (the first part is empty for POSIX).
    home: Option<Vec<String>>,
    user_name: Option<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("home", &self.home.as_ref().map(|_| "<set>"))
            .field("user_name", &self.user_name.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for this home folder and user name; either may be unknown.
    ///
    /// A home folder that is a filesystem root (`/`, `C:\`) or not valid UTF-8 is
    /// ignored, and so is a user name that is generic (`root`, `runner`, …), shorter
    /// than two characters or contains a path separator. All other rules apply anyway.
    pub fn new(home: Option<PathBuf>, user_name: Option<String>) -> Self {
        Scrubber {
            home: home.as_ref().and_then(|h| h.to_str()).and_then(home_parts),
            user_name: user_name.filter(|name| is_personal_user_name(name)),
        }
    }

    /// A scrubber for the home folder (`HOME`, or `USERPROFILE` on Windows) and the user
    /// name (`USER`, `USERNAME` or `LOGNAME`, else the home folder's last component)
    /// found in `env`.
    pub fn from_environment(env: &Environment) -> Self {
        let home = env.home_dir();
        let user_name = ["USER", "USERNAME", "LOGNAME"]
            .iter()
            .filter_map(|name| env.var(name))
            .map(|v| v.trim().to_string())
            .find(|v| !v.is_empty())
            .or_else(|| {
                home.as_ref()
                    .and_then(|h| h.file_name())
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
            });
        Scrubber::new(home, user_name)
    }

    /// `s` with personal data replaced by placeholders (see the module doc).
    ///
    /// Returns `s` itself, without allocating, when there is nothing to replace.
    pub fn scrub_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut scan = Scan {
            scrubber: self,
            s,
            b: s.as_bytes(),
            out: None,
            last: 0,
            url_end: 0,
        };
        scan.run();
        match scan.out {
            None => Cow::Borrowed(s),
            Some(mut out) => {
                out.push_str(s.get(scan.last..).unwrap_or(""));
                Cow::Owned(out)
            }
        }
    }

    /// Scrubs every string value and object key in `props`, at every depth, except the
    /// top-level properties named in `trusted` and the library's own [`LIBRARY_KEYS`].
    pub fn scrub_properties<S: AsRef<str>>(&self, props: &mut Map<String, Value>, trusted: &[S]) {
        let skip = |key: &str| {
            (key.starts_with('$') && LIBRARY_KEYS.contains(&key))
                || trusted.iter().any(|t| t.as_ref() == key)
        };
        self.scrub_map(props, &skip);
    }

    /// Scrubs every string and object key inside `value`.
    pub fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.scrub_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => self.scrub_map(map, &|_| false),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn scrub_map(&self, map: &mut Map<String, Value>, skip: &dyn Fn(&str) -> bool) {
        let mut renamed = Vec::new();
        for (key, value) in map.iter_mut() {
            if skip(key) {
                continue;
            }
            self.scrub_value(value);
            if let Cow::Owned(new_key) = self.scrub_str(key) {
                renamed.push((key.clone(), new_key));
            }
        }
        for (old, new) in renamed {
            if let Some(value) = map.remove(&old) {
                map.insert(new, value);
            }
        }
    }

    fn scrub_string(&self, s: &mut String) {
        let replaced = match self.scrub_str(s) {
            Cow::Owned(new) => Some(new),
            Cow::Borrowed(_) => None,
        };
        if let Some(new) = replaced {
            *s = new;
        }
    }
}

/// The home folder's parts, or `None` for a root or empty path.
fn home_parts(home: &str) -> Option<Vec<String>> {
    let mut parts: Vec<String> = home.split(['/', '\\']).map(str::to_string).collect();
    while parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    let named = parts.iter().filter(|p| !p.is_empty()).count();
    let is_drive_root = parts.len() == 1 && parts[0].len() == 2 && parts[0].ends_with(':');
    (named > 0 && !is_drive_root).then_some(parts)
}

fn is_personal_user_name(name: &str) -> bool {
    name.chars().count() >= 2
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_whitespace)
        && !GENERIC_USER_NAMES
            .iter()
            .any(|g| g.eq_ignore_ascii_case(name))
}

/// A replacement of `start..end` by `text`.
struct Match {
    start: usize,
    end: usize,
    text: &'static str,
}

impl Match {
    fn new(start: usize, end: usize, text: &'static str) -> Option<Match> {
        Some(Match { start, end, text })
    }
}

/// One pass over one string.
struct Scan<'a, 's> {
    scrubber: &'s Scrubber,
    s: &'a str,
    b: &'a [u8],
    /// The output so far, created at the first replacement.
    out: Option<String>,
    /// Everything before this has been copied to `out` or replaced.
    last: usize,
    /// Inside a URL until here: `?` and `#` start a part to remove.
    url_end: usize,
}

impl Scan<'_, '_> {
    fn run(&mut self) {
        let mut i = 0;
        while i < self.b.len() {
            // Fast path: inside a word, no rule can start.
            if i != self.last
                && i > 0
                && self.b[i].is_ascii_alphanumeric()
                && self.b[i - 1].is_ascii_alphanumeric()
            {
                i += 1;
                continue;
            }
            if self.s.is_char_boundary(i)
                && let Some(m) = self.detect(i)
                && m.start >= self.last
                && m.end > m.start
                && self.s.is_char_boundary(m.start)
                && self.s.is_char_boundary(m.end)
            {
                let out = self
                    .out
                    .get_or_insert_with(|| String::with_capacity(self.s.len()));
                out.push_str(self.s.get(self.last..m.start).unwrap_or(""));
                out.push_str(m.text);
                self.last = m.end;
                i = m.end;
                continue;
            }
            i += 1;
        }
    }

    /// The byte before `i`, unless `i` starts the string or follows a replacement.
    fn prev(&self, i: usize) -> Option<u8> {
        if i == 0 || i == self.last {
            None
        } else {
            self.b.get(i - 1).copied()
        }
    }

    /// Whether a match may start at `i`: the byte before cannot continue a word or a
    /// run of `run` bytes.
    fn starts_run(&self, i: usize, run: impl Fn(u8) -> bool) -> bool {
        self.prev(i).is_none_or(|p| !is_word(p) && !run(p))
    }

    /// The replacement starting at (or, for e-mail, around) `i`, if any. The first
    /// detector that matches wins; see the module doc for the order.
    fn detect(&mut self, i: usize) -> Option<Match> {
        let c = self.b[i];
        if c == b':'
            && i >= self.url_end
            && has_prefix(&self.b[i..], b"://")
            && let Some(m) = self.url(i)
        {
            return Some(m);
        }
        if i < self.url_end && (c == b'?' || c == b'#') {
            return Match::new(i, self.url_end, "");
        }
        if c == b'@' {
            return self.email(i);
        }
        let word_start = self.prev(i).is_none_or(|p| !is_word(p));
        let alnum_start = self.prev(i).is_none_or(|p| !p.is_ascii_alphanumeric());
        let ip_start = (c.is_ascii_hexdigit() || c == b':') && self.starts_run(i, is_ip_byte);
        self.home(i)
            .or_else(|| self.user(i))
            .or_else(|| {
                (c.is_ascii_alphabetic() && word_start)
                    .then(|| {
                        self.authorization(i)
                            .or_else(|| self.bearer(i))
                            .or_else(|| self.jwt(i))
                            .or_else(|| self.prefixed_token(i))
                    })
                    .flatten()
            })
            .or_else(|| {
                ip_start
                    .then(|| {
                        self.mac(i)
                            .or_else(|| self.ipv6(i))
                            .or_else(|| self.ipv4(i))
                    })
                    .flatten()
            })
            .or_else(|| {
                (c.is_ascii_alphanumeric() && alnum_start)
                    .then(|| self.hex(i))
                    .flatten()
            })
            .or_else(|| {
                (is_base64(c) && self.starts_run(i, is_base64))
                    .then(|| self.base64(i))
                    .flatten()
            })
    }

    /// At `://`: removes credentials, and remembers where the URL ends.
    fn url(&mut self, i: usize) -> Option<Match> {
        // A scheme before it: a letter, then letters, digits, `+`, `-`, `.`.
        let scheme_start = self.b[..i]
            .iter()
            .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'))
            .map_or(0, |p| p + 1);
        if scheme_start == i || !self.b[scheme_start].is_ascii_alphabetic() {
            return None;
        }
        let rest = i + 3;
        self.url_end = rest
            + self.b[rest..]
                .iter()
                .position(|&b| ends_url(b))
                .unwrap_or(self.b.len() - rest);
        let authority_end = rest
            + self.b[rest..self.url_end]
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(self.url_end - rest);
        let at = self.b[rest..authority_end]
            .iter()
            .rposition(|&b| b == b'@')?;
        Match::new(i, rest + at + 1, "://")
    }

    fn home(&self, i: usize) -> Option<Match> {
        let parts = self.scrubber.home.as_ref()?;
        let is_path_byte = |b: u8| is_component_byte(b) || b == b'~';
        if !self.starts_run(i, is_path_byte) {
            return None;
        }
        let mut p = i;
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                p = self.separator(p)?;
            }
            p = self.literal(p, part)?;
        }
        self.component_ends(p).then_some(Match {
            start: i,
            end: p,
            text: HOME,
        })
    }

    fn user(&self, i: usize) -> Option<Match> {
        let name = self.scrubber.user_name.as_ref()?;
        if i == 0 || !matches!(self.b[i - 1], b'/' | b'\\') {
            return None;
        }
        let end = self.literal(i, name)?;
        self.component_ends(end).then_some(Match {
            start: i,
            end,
            text: USER,
        })
    }

    /// After `/`, `\` or an escaped `\\` at `p`.
    fn separator(&self, p: usize) -> Option<usize> {
        match self.b.get(p)? {
            b'/' => Some(p + 1),
            b'\\' if self.b.get(p + 1) == Some(&b'\\') => Some(p + 2),
            b'\\' => Some(p + 1),
            _ => None,
        }
    }

    /// After `text` at `p`, compared ASCII case-insensitively.
    fn literal(&self, p: usize, text: &str) -> Option<usize> {
        let end = p + text.len();
        let here = self.b.get(p..end)?;
        here.eq_ignore_ascii_case(text.as_bytes()).then_some(end)
    }

    /// Whether a path component ends at `p`.
    fn component_ends(&self, p: usize) -> bool {
        self.b.get(p).is_none_or(|&b| !is_component_byte(b))
    }

    fn email(&self, at: usize) -> Option<Match> {
        let local_start = self.b[self.last..at]
            .iter()
            .rposition(|&b| !is_email_local(b))
            .map_or(self.last, |p| self.last + p + 1);
        if local_start == at || self.b[local_start] == b'.' {
            return None;
        }
        // Domain: labels of letters, digits and `-`, joined by single dots; the last
        // label (the TLD) is at least two letters.
        let mut p = at + 1;
        let mut labels = 0;
        let mut end = None;
        loop {
            let label = self.b[p..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
                .count();
            if label == 0 {
                break;
            }
            labels += 1;
            let label_bytes = &self.b[p..p + label];
            p += label;
            if labels >= 2
                && label_bytes.len() >= 2
                && label_bytes.iter().all(u8::is_ascii_alphabetic)
            {
                end = Some(p);
            }
            if self.b.get(p) == Some(&b'.') {
                p += 1;
            } else {
                break;
            }
        }
        let end = end?;
        if self.b.get(end).is_some_and(|&b| is_word(b)) {
            return None;
        }
        Match::new(local_start, end, EMAIL)
    }

    /// `Authorization: <scheme> <credential>`, in header, JSON or `key=value` spelling.
    fn authorization(&self, i: usize) -> Option<Match> {
        if !matches!(self.b[i], b'a' | b'A') {
            return None;
        }
        let mut p = self.literal(i, "authorization")?;
        p = self.skip(p, |b| b == b'"' || b == b'\'' || b == b' ');
        if !matches!(self.b.get(p), Some(b':' | b'=')) {
            return None;
        }
        p = self.skip(p + 1, |b| {
            b == b'"' || b == b'\'' || b == b' ' || b == b'\t'
        });
        let word = self.b[p..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if word > 0 && self.b.get(p + word) == Some(&b' ') {
            let after = self.skip(p + word, |b| b == b' ');
            if self.b.get(after).is_some_and(|&b| !ends_credential(b)) {
                p = after;
            }
        }
        let end = p + self.b[p..]
            .iter()
            .take_while(|&&b| !ends_credential(b))
            .count();
        Match::new(p, end, TOKEN)
    }

    /// `Bearer <token>` outside a header, when the token is not a plain word.
    fn bearer(&self, i: usize) -> Option<Match> {
        if !matches!(self.b[i], b'b' | b'B') {
            return None;
        }
        let p = self.literal(i, "bearer")?;
        let start = self.skip(p, |b| b == b' ');
        if start == p {
            return None;
        }
        let len = self.b[start..]
            .iter()
            .take_while(|&&b| is_bearer_byte(b))
            .count();
        let token = &self.b[start..start + len];
        let plain_word = token.iter().skip(1).all(u8::is_ascii_lowercase)
            && token.first().is_some_and(u8::is_ascii_alphabetic);
        (len >= MIN_BEARER && !plain_word).then_some(Match {
            start,
            end: start + len,
            text: TOKEN,
        })
    }

    /// `eyJ<header>.eyJ<payload>.<signature>`.
    fn jwt(&self, i: usize) -> Option<Match> {
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        let segment = |p: usize| p + self.b[p..].iter().take_while(|&&b| url_safe(b)).count();
        if !has_prefix(&self.b[i..], b"eyJ") {
            return None;
        }
        let header_end = segment(i);
        if self.b.get(header_end) != Some(&b'.') || !has_prefix(&self.b[header_end + 1..], b"eyJ") {
            return None;
        }
        let payload_end = segment(header_end + 1);
        if self.b.get(payload_end) != Some(&b'.') {
            return None;
        }
        Match::new(i, segment(payload_end + 1), TOKEN)
    }

    fn prefixed_token(&self, i: usize) -> Option<Match> {
        if !TOKEN_FIRST_BYTES[usize::from(self.b[i] & 0x7f)] {
            return None;
        }
        let rest = &self.b[i..];
        TOKEN_PREFIXES.iter().find_map(|&(prefix, body, min)| {
            if !has_prefix(rest, prefix.as_bytes()) {
                return None;
            }
            let start = i + prefix.len();
            let len = self.b[start..]
                .iter()
                .take_while(|&&b| body.allows(b))
                .count();
            let end = start + len;
            let continues = self.b.get(end).is_some_and(|&b| is_word(b));
            (len >= min && !continues).then_some(Match {
                start: i,
                end,
                text: TOKEN,
            })
        })
    }

    /// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`.
    fn mac(&self, i: usize) -> Option<Match> {
        let candidate = self.b.get(i..i + 17)?;
        let sep = candidate[2];
        if sep != b':' && sep != b'-' {
            return None;
        }
        let shaped = candidate.iter().enumerate().all(|(n, &b)| {
            if n % 3 == 2 {
                b == sep
            } else {
                b.is_ascii_hexdigit()
            }
        });
        let end = i + 17;
        let continues = self.b.get(end).is_some_and(|&b| is_word(b) || b == sep);
        (shaped && !continues).then_some(Match {
            start: i,
            end,
            text: MAC,
        })
    }

    fn ipv6(&self, i: usize) -> Option<Match> {
        let len = self.b[i..].iter().take_while(|&&b| is_ip_byte(b)).count();
        if self.b.get(i + len).is_some_and(|&b| is_word(b)) {
            return None;
        }
        let text = self.s.get(i..i + len)?;
        // A sentence or a port may follow: also try without one trailing `.` or `:`.
        [Some(text), text.strip_suffix(['.', ':'])]
            .into_iter()
            .flatten()
            .find(|candidate| {
                candidate.bytes().filter(|&b| b == b':').count() >= 2
                    && candidate.bytes().any(|b| b.is_ascii_digit())
                    && candidate.parse::<Ipv6Addr>().is_ok()
            })
            .map(|candidate| Match {
                start: i,
                end: i + candidate.len(),
                text: IP,
            })
    }

    fn ipv4(&self, i: usize) -> Option<Match> {
        let len = self.b[i..]
            .iter()
            .take_while(|&&b| b.is_ascii_digit() || b == b'.')
            .count();
        let text = self.s.get(i..i + len)?;
        let text = text.strip_suffix('.').unwrap_or(text);
        let end = i + text.len();
        if text.bytes().filter(|&b| b == b'.').count() != 3 {
            return None;
        }
        text.parse::<Ipv4Addr>().ok()?;
        // `1.2.3.4-beta`, `1.2.3.4+build`: a version, not an address.
        let next = self.b.get(end).copied();
        let after = self.b.get(end + 1).copied();
        let version_suffix = matches!(next, Some(b'-') if after.is_some_and(|b| b.is_ascii_alphabetic()))
            || next == Some(b'+');
        let continues = next.is_some_and(is_word)
            || (next == Some(b'.') && after.is_some_and(|b| b.is_ascii_digit()));
        (!version_suffix && !continues).then_some(Match {
            start: i,
            end,
            text: IP,
        })
    }

    /// 32 or more hex digits (optionally `0x`-prefixed), not all decimal.
    fn hex(&self, i: usize) -> Option<Match> {
        let len = self.b[i..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let run = &self.b[i..i + len];
        let digits = match run {
            [b'0', b'x' | b'X', rest @ ..] => rest,
            _ => run,
        };
        let secret = digits.len() >= MIN_HEX
            && digits.iter().all(u8::is_ascii_hexdigit)
            && !digits.iter().all(u8::is_ascii_digit);
        secret.then_some(Match {
            start: i,
            end: i + len,
            text: SECRET,
        })
    }

    /// A long random-looking base64 or base64url run (or one `/`-separated segment of
    /// it).
    fn base64(&self, i: usize) -> Option<Match> {
        let len = self.b[i..].iter().take_while(|&&b| is_base64(b)).count();
        let pad = self.b[i + len..]
            .iter()
            .take_while(|&&b| b == b'=')
            .count()
            .min(2);
        let end = i + len + pad;
        if len < MIN_BASE64 {
            return None;
        }
        let run = &self.b[i..i + len];
        if looks_random(run) {
            return Match::new(i, end, SECRET);
        }
        let mut start = i;
        for segment in run.split(|&b| b == b'/') {
            let seg_end = start + segment.len();
            if segment.len() >= MIN_BASE64 && looks_random(segment) {
                let seg_end = if seg_end == i + len { end } else { seg_end };
                return Match::new(start, seg_end, SECRET);
            }
            start = seg_end + 1;
        }
        None
    }

    fn skip(&self, p: usize, what: impl Fn(u8) -> bool) -> usize {
        p + self.b[p..].iter().take_while(|&&b| what(b)).count()
    }
}

/// `starts_with` for the short prefixes here, without a call to `memcmp`.
fn has_prefix(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack.iter().zip(prefix).all(|(a, b)| a == b)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Bytes that continue a path component (anything but separators, spaces, quotes and
/// punctuation that ends a path in prose or code).
fn is_component_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+' | b'%') || b >= 0x80
}

fn is_ip_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

fn is_email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

fn is_bearer_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'+' | b'/' | b'-' | b'=')
}

/// Where a URL ends in prose, JSON, Markdown or a log line.
fn ends_url(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'"' | b'\'' | b'`' | b'<' | b'>' | b')' | b']' | b'}' | b'|' | b'\\'
        )
}

/// Where a header credential ends.
fn ends_credential(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b',' | b';' | b'}' | b'\\')
}

/// Changes between upper case, lower case and digits per byte, plus the Shannon
/// entropy over log₂ of the length: ≥ [`BASE64_SCORE`] for random data.
fn looks_random(run: &[u8]) -> bool {
    let class = |b: u8| match b {
        b'A'..=b'Z' => Some(0),
        b'a'..=b'z' => Some(1),
        b'0'..=b'9' => Some(2),
        _ => None,
    };
    let mut changes = 0usize;
    let mut previous = None;
    let mut counts = [0u32; 128];
    for &b in run {
        counts[usize::from(b & 0x7f)] += 1;
        if let Some(c) = class(b) {
            if previous.is_some_and(|p| p != c) {
                changes += 1;
            }
            previous = Some(c);
        }
    }
    let n = run.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum();
    changes as f64 / n + entropy / n.log2() >= BASE64_SCORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_homes_and_generic_names_are_ignored() {
        assert_eq!(home_parts("/"), None);
        assert_eq!(home_parts("C:\\"), None);
        assert_eq!(home_parts(""), None);
        assert!(home_parts("/root").is_some());
        assert!(!is_personal_user_name("root"));
        assert!(!is_personal_user_name("a"));
        assert!(is_personal_user_name("ada"));
    }

    #[test]
    fn debug_hides_home_and_user() {
        let s = Scrubber::new(Some("/home/ada".into()), Some("ada".into()));
        assert!(!format!("{s:?}").contains("ada"));
    }
}
