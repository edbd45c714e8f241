//! The scrubber's corpus: exact outputs for personal data in many spellings and
//! positions, near-misses that must come out byte-identical, and the property walk.

use std::borrow::Cow;

use product_telemetry::Environment;
use product_telemetry::scrub::{LIBRARY_KEYS, Scrubber};
use serde_json::{Map, Value, json};

const TOKEN_GHP: &str = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn posix() -> Scrubber {
    Scrubber::new(Some("/home/ada".into()), Some("ada".into()))
}

fn windows() -> Scrubber {
    Scrubber::new(Some(r"C:\Users\Ada".into()), Some("Ada".into()))
}

fn check(scrubber: &Scrubber, cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for &(input, expected) in cases {
        let got = scrubber.scrub_str(input);
        if got != expected {
            failures.push(format!("{input:?}\n   got {got:?}\n  want {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn home_folder_becomes_tilde() {
    check(
        &posix(),
        &[
            ("/home/ada/projects/x", "~/projects/x"),
            ("/home/ada", "~"),
            ("/home/ada/", "~/"),
            ("open /home/ada failed", "open ~ failed"),
            ("file:///home/ada/x", "file://~/x"),
            (
                r#"{"path":"/home/ada/.config/app.toml"}"#,
                r#"{"path":"~/.config/app.toml"}"#,
            ),
            (
                "error at /home/ada/src/main.rs:12:5",
                "error at ~/src/main.rs:12:5",
            ),
            (
                "thread 'main' panicked at /home/ada/.cargo/registry/src/foo-1.0.0/src/lib.rs:10:5:",
                "thread 'main' panicked at ~/.cargo/registry/src/foo-1.0.0/src/lib.rs:10:5:",
            ),
            ("cp /home/ada/a /home/ada/b", "cp ~/a ~/b"),
            ("(/home/ada/x)", "(~/x)"),
            ("'/HOME/ADA/x'", "'~/x'"),
        ],
    );
}

#[test]
fn windows_home_folder_becomes_tilde() {
    check(
        &windows(),
        &[
            (r"C:\Users\Ada\x", r"~\x"),
            (r"c:\users\ada\x", r"~\x"),
            ("C:/Users/Ada/x", "~/x"),
            (
                r#"{"path":"C:\\Users\\Ada\\AppData\\x"}"#,
                r#"{"path":"~\\AppData\\x"}"#,
            ),
            ("file:///C:/Users/Ada/x", "file:///~/x"),
            (r"at C:\Users\Ada\src\main.rs:3", r"at ~\src\main.rs:3"),
            (r"D:\Users\Ada\x", r"D:\Users\<user>\x"),
        ],
    );
}

#[test]
fn user_name_as_path_component_becomes_user() {
    check(
        &posix(),
        &[
            ("/var/folders/ada/T/x", "/var/folders/<user>/T/x"),
            ("/Users/ada", "/Users/<user>"),
            ("/Users/Ada/Library", "/Users/<user>/Library"),
            ("/mnt/home/ada/x", "/mnt/home/<user>/x"),
            (r"\\server\ada\share", r"\\server\<user>\share"),
            (
                "/srv/ada: permission denied",
                "/srv/<user>: permission denied",
            ),
        ],
    );
}

#[test]
fn emails_become_placeholders() {
    check(
        &posix(),
        &[
            ("ada@example.com", "<email>"),
            ("mail ada@example.com now", "mail <email> now"),
            (
                "contact: ada.lovelace+tag@mail.example.co.uk.",
                "contact: <email>.",
            ),
            (r#"{"to":"a_b-c@sub.example.org"}"#, r#"{"to":"<email>"}"#),
            ("<ADA@EXAMPLE.COM>", "<<email>>"),
            ("a@b.io,c@d.io", "<email>,<email>"),
            ("git@github.com:org/repo.git", "<email>:org/repo.git"),
        ],
    );
}

#[test]
fn ip_and_mac_addresses_become_placeholders() {
    check(
        &posix(),
        &[
            ("10.0.0.1", "<ip>"),
            (
                "connect 192.168.1.20:8080 refused",
                "connect <ip>:8080 refused",
            ),
            ("from 127.0.0.1.", "from <ip>."),
            ("1.2.3.4", "<ip>"),
            ("10.0.0.0/8", "<ip>/8"),
            ("10.0.0.1-10.0.0.9", "<ip>-<ip>"),
            ("::1", "<ip>"),
            ("[::1]:8080", "[<ip>]:8080"),
            ("fe80::1%eth0", "<ip>%eth0"),
            ("2001:db8::8a2e:370:7334", "<ip>"),
            ("addr 2001:db8::1: refused", "addr <ip>: refused"),
            ("::ffff:192.0.2.1", "<ip>"),
            ("http://10.1.2.3:9000/health", "http://<ip>:9000/health"),
            ("00:1a:2b:3c:4d:5e", "<mac>"),
            ("hw 00-1A-2B-3C-4D-5E up", "hw <mac> up"),
        ],
    );
}

#[test]
fn url_credentials_query_and_fragment_are_removed() {
    check(
        &posix(),
        &[
            (
                "https://user:pass@host.example.com/path?q=1#f",
                "https://host.example.com/path",
            ),
            (
                "see https://example.com/a?token=abc, then",
                "see https://example.com/a then",
            ),
            (
                r#"{"url":"https://example.com/x?y=z"}"#,
                r#"{"url":"https://example.com/x"}"#,
            ),
            ("ssh://git@github.com/org/repo", "ssh://github.com/org/repo"),
            ("http://localhost:8080/x?y", "http://localhost:8080/x"),
            (
                "postgres://app:s3cret@db:5432/prod",
                "postgres://db:5432/prod",
            ),
            (
                "https://example.com/#access_token=abc",
                "https://example.com/",
            ),
            (
                "[docs](https://example.com/a?b=c)",
                "[docs](https://example.com/a)",
            ),
            (
                "a https://x.io?q=1 b https://y.io?r=2",
                "a https://x.io b https://y.io",
            ),
        ],
    );
}

#[test]
fn bearer_and_authorization_credentials_become_token() {
    check(
        &posix(),
        &[
            ("Authorization: Bearer xyz", "Authorization: Bearer <token>"),
            (
                r#""authorization": "Basic dXNlcjpwYXNz""#,
                r#""authorization": "Basic <token>""#,
            ),
            (
                "{'Authorization': 'token abc123'}",
                "{'Authorization': 'token <token>'}",
            ),
            ("Authorization: abc123 next", "Authorization: <token> next"),
            (
                "authorization=abc123; path=/",
                "authorization=<token>; path=/",
            ),
            ("Bearer abc.def-ghi_jkl", "Bearer <token>"),
            ("bearer 0123456789", "bearer <token>"),
            ("BEARER AbCdEfGhIj", "BEARER <token>"),
        ],
    );
}

#[test]
fn prefixed_tokens_and_jwts_become_token() {
    let cases: Vec<(String, String)> = [
        (TOKEN_GHP.to_string(), "<token>"),
        (format!("token={TOKEN_GHP} ok"), "token=<token> ok"),
        (
            format!("GITHUB_TOKEN=\"{TOKEN_GHP}\""),
            "GITHUB_TOKEN=\"<token>\"",
        ),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a".into(), "<token>"),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop".into(),
            "<token>",
        ),
        ("glpat-xYz12-AbC34_dEf56gHi78".into(), "<token>"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz012345".into(), "<token>"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(), "<token>"),
        (
            "OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz".into(),
            "OPENAI_API_KEY=<token>",
        ),
        ("sk_live_51HabcdefGHIJKLmnop".into(), "<token>"),
        ("pk_live_51HabcdefGHIJKLmnop".into(), "<token>"),
        ("xoxb-123456789012-abcdefABCDEF".into(), "<token>"),
        ("xoxp-123456789012-abcdefABCDEF".into(), "<token>"),
        ("AKIAIOSFODNN7EXAMPLE".into(), "<token>"),
        ("key ASIAY34FZKBOKMUTVV7A used".into(), "key <token> used"),
        ("phx_abcdefghijklmnopqrstuvwxyz012345".into(), "<token>"),
        ("phc_abcdefghijklmnopqrstuvwxyz012345".into(), "<token>"),
        ("npm_abcdefghijklmnopqrstuvwxyz0123456789".into(), "<token>"),
        ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH".into(), "<token>"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz01234".into(), "<token>"),
        (JWT.into(), "<token>"),
        (
            format!("Cookie: session={JWT}; Path=/"),
            "Cookie: session=<token>; Path=/",
        ),
        (
            format!(r#"{{"id_token":"{JWT}"}}"#),
            r#"{"id_token":"<token>"}"#,
        ),
    ]
    .into_iter()
    .map(|(input, expected)| (input, expected.to_string()))
    .collect();
    let borrowed: Vec<(&str, &str)> = cases
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    check(&posix(), &borrowed);
}

#[test]
fn long_hex_and_base64_become_secret() {
    check(
        &posix(),
        &[
            (
                "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "sha256:<secret>",
            ),
            (
                "commit 3b18e512dba79e4c8300dd08aeb37f8e728b8dad",
                "commit <secret>",
            ),
            ("0xDEADBEEF0123456789ABCDEF0123456789ABCDEF", "<secret>"),
            ("550e8400e29b41d4a716446655440000", "<secret>"),
            ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "<secret>"),
            (
                "secret=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=",
                "secret=<secret>",
            ),
            (
                "key: q8Zt4LmR2vXw9KpB7nYc3HdF6jGs1TaE5uWo0iNl  # prod",
                "key: <secret>  # prod",
            ),
            // The base64 run is the whole path (`/` is a base64 character), and it looks
            // random as a whole: all of it goes.
            (
                "/tmp/cache/q8Zt4LmR2vXw9KpB7nYc3HdF6jGs1TaE5uWo0iNl/x",
                "<secret>",
            ),
            // Tested segment by segment when the whole run does not look random.
            (
                "/usr/share/applications/documentation/examples/templates/configuration/q8Zt4LmR2vXw9KpB7nYc3HdF6jGs1TaE5uWo0iNl",
                "/usr/share/applications/documentation/examples/templates/configuration/<secret>",
            ),
            ("hash_3b18e512dba79e4c8300dd08aeb37f8e728b8dad", "<secret>"),
            (
                "hash 3b18e512dba79e4c8300dd08aeb37f8e728b8dad.",
                "hash <secret>.",
            ),
        ],
    );
}

#[test]
fn several_kinds_in_one_line() {
    check(
        &posix(),
        &[
            (
                "user ada@example.com at 10.0.0.7 opened /home/ada/x with ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
                "user <email> at <ip> opened ~/x with <token>",
            ),
            (
                r#"{"err":"GET https://u:p@api.example.com/v1?k=1 failed","ip":"::1"}"#,
                r#"{"err":"GET https://api.example.com/v1 failed","ip":"<ip>"}"#,
            ),
        ],
    );
}

/// Inputs that contain nothing personal: they must come out byte-identical, borrowed.
const NEAR_MISSES: &[&str] = &[
    "",
    "build",
    "hello world",
    "1.2.3",
    "v2.10.0-rc.1",
    "v1.2.3.4",
    "1.2.3.4-beta",
    "1.2.3.4+build.5",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "10.0.19045.1234",
    "550e8400-e29b-41d4-a716-446655440000",
    "a1b2c3d",
    "abcdef0123456789abcdef012345678",
    "12345678901234567890123456789012345",
    "task-1 disk-usage sk-learn risk-sk-abc",
    "sk-short",
    "ghp_short",
    "npm @scope/pkg",
    "@types/node@20.1.0",
    "lodash@4.17.21",
    "user@ and user@localhost",
    "file.rs:12",
    "src/main.rs",
    "/usr/bin/env",
    "/home/adam/x",
    "/home/adaline",
    "~/projects/x",
    r"C:\Program Files\x",
    "gpt-4o-mini claude-3-5-sonnet text-embedding-3-large",
    "1.5s 250ms 3m 2h",
    "2024-05-01T12:34:56.789Z",
    "2024-05-01 12:34:56+02:00",
    "12:34:56",
    "3.14159 -42 1e10 0x1f",
    "localhost:8080",
    "https://example.com/a/b",
    "std::fmt::Display add::face Vec::<u8>::new",
    "dead:beef",
    "ab:cd:ef:01",
    "the bearer instruments",
    "bearer xyz",
    "Authorization required",
    "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/Plugins",
    "src/components/UserProfile2Settings/index-v2",
    "com_google_android_gms_measurement_AppMeasurement2",
    "HKEY_LOCAL_MACHINE/SOFTWARE/Microsoft/Windows/CurrentVersion",
    "x86_64-unknown-linux-gnu/release/build/Foo3Bar",
    "eyJ alone",
    "ada",
    "Ada Lovelace",
    "héllo wörld ✓ 日本語",
    "100%",
    "a=b&c=d",
    "ftp:/not-a-url?x",
];

#[test]
fn near_misses_are_byte_identical_and_borrowed() {
    for scrubber in [posix(), windows()] {
        for &input in NEAR_MISSES {
            let out = scrubber.scrub_str(input);
            assert_eq!(out, input, "{input:?} changed");
            assert!(matches!(out, Cow::Borrowed(_)), "{input:?} was copied");
        }
    }
}

#[test]
fn without_home_or_user_other_rules_still_apply() {
    let scrubber = Scrubber::new(None, None);
    assert_eq!(scrubber.scrub_str("/home/ada/x"), "/home/ada/x");
    assert_eq!(scrubber.scrub_str("ada@example.com"), "<email>");
}

#[test]
fn root_home_and_generic_user_names_are_ignored() {
    let scrubber = Scrubber::new(Some("/".into()), Some("root".into()));
    for input in ["/usr/bin/env", "/root/x", "/home/root/x"] {
        assert_eq!(scrubber.scrub_str(input), input);
    }
    let runner = Scrubber::new(Some("/home/runner".into()), Some("runner".into()));
    assert_eq!(runner.scrub_str("/home/runner/work/x"), "~/work/x");
    assert_eq!(runner.scrub_str("/opt/runner/x"), "/opt/runner/x");
}

#[test]
fn from_environment_reads_home_and_user() {
    let env = Environment::from_pairs([
        ("HOME", "/home/ada"),
        ("USERPROFILE", r"C:\Users\ada"),
        ("USER", "ada"),
    ]);
    let scrubber = Scrubber::from_environment(&env);
    let expected = if cfg!(windows) { r"~\x" } else { "~/x" };
    let input = if cfg!(windows) {
        r"C:\Users\ada\x"
    } else {
        "/home/ada/x"
    };
    assert_eq!(scrubber.scrub_str(input), expected);
    assert_eq!(scrubber.scrub_str("/Volumes/ada/x"), "/Volumes/<user>/x");

    // No user variable: the home folder's last component is the user name.
    let env =
        Environment::from_pairs([("HOME", "/home/grace"), ("USERPROFILE", r"C:\Users\grace")]);
    let scrubber = Scrubber::from_environment(&env);
    assert_eq!(scrubber.scrub_str("/Volumes/grace/x"), "/Volumes/<user>/x");
}

fn props(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test properties are objects"),
    }
}

#[test]
fn properties_are_scrubbed_at_every_depth() {
    let mut p = props(json!({
        "path": "/home/ada/x",
        "list": ["ada@example.com", 1, ["10.0.0.1", {"deep": "/home/ada"}]],
        "map": {"inner": {"url": "https://h.io/a?q=1"}, "n": 2},
        "count": 3,
        "ok": true,
        "none": null,
        "ratio": 0.5,
    }));
    posix().scrub_properties(&mut p, &[] as &[&str]);
    assert_eq!(
        Value::Object(p),
        json!({
            "path": "~/x",
            "list": ["<email>", 1, ["<ip>", {"deep": "~"}]],
            "map": {"inner": {"url": "https://h.io/a"}, "n": 2},
            "count": 3,
            "ok": true,
            "none": null,
            "ratio": 0.5,
        })
    );
}

#[test]
fn object_keys_are_scrubbed_too() {
    let mut p = props(json!({
        "files": {"/home/ada/a.rs": 3, "src/b.rs": 1},
        "ada@example.com": "x",
    }));
    posix().scrub_properties(&mut p, &[] as &[&str]);
    assert_eq!(
        Value::Object(p),
        json!({
            "files": {"~/a.rs": 3, "src/b.rs": 1},
            "<email>": "x",
        })
    );
}

#[test]
fn trusted_keys_are_left_alone() {
    let mut p = props(json!({
        "commit": "3b18e512dba79e4c8300dd08aeb37f8e728b8dad",
        "nested": {"path": "/home/ada/x"},
        "other": "/home/ada/x",
    }));
    posix().scrub_properties(&mut p, &["commit".to_string(), "nested".to_string()]);
    assert_eq!(
        Value::Object(p),
        json!({
            "commit": "3b18e512dba79e4c8300dd08aeb37f8e728b8dad",
            "nested": {"path": "/home/ada/x"},
            "other": "~/x",
        })
    );
}

#[test]
fn trust_applies_to_top_level_keys_only() {
    let mut p = props(json!({"outer": {"commit": "/home/ada/x"}}));
    posix().scrub_properties(&mut p, &["commit"]);
    assert_eq!(Value::Object(p), json!({"outer": {"commit": "~/x"}}));
}

#[test]
fn library_keys_are_left_alone_and_other_dollar_keys_are_not() {
    let mut p = props(json!({
        "$lib": "product-telemetry",
        "$lib_version": "1.2.3.4",
        "$ip": "0.0.0.0",
        "$geoip_disable": true,
        "$process_person_profile": false,
        "$current_url": "https://h.io/a?email=ada@example.com",
        "$set": {"email": "ada@example.com"},
    }));
    posix().scrub_properties(&mut p, &[] as &[&str]);
    assert_eq!(
        Value::Object(p),
        json!({
            "$lib": "product-telemetry",
            "$lib_version": "1.2.3.4",
            "$ip": "0.0.0.0",
            "$geoip_disable": true,
            "$process_person_profile": false,
            "$current_url": "https://h.io/a",
            "$set": {"email": "<email>"},
        })
    );
    assert_eq!(
        LIBRARY_KEYS,
        [
            "$lib",
            "$lib_version",
            "$ip",
            "$geoip_disable",
            "$process_person_profile"
        ]
    );
}

#[test]
fn non_string_values_are_untouched() {
    let original =
        json!({"n": 10000000001_u64, "f": 1.5, "b": false, "z": null, "a": [1, 2.5, true]});
    let mut p = props(original.clone());
    posix().scrub_properties(&mut p, &[] as &[&str]);
    assert_eq!(Value::Object(p), original);
}

/// Random strings built from the pieces the rules look for (and multi-byte
/// characters next to them) never make the scrubber panic, and what it leaves
/// unchanged it returns borrowed.
#[test]
fn random_inputs_never_panic() {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        "f",
        ".",
        ":",
        "::",
        "/",
        "\\",
        "\\\\",
        "@",
        "?",
        "#",
        "=",
        "-",
        "_",
        " ",
        "\"",
        "'",
        "é",
        "日",
        "✓",
        "://",
        "https",
        "file:///",
        "/home/ada",
        "C:\\Users\\Ada",
        "ada",
        "eyJ",
        "eyJhbGciOi",
        "ghp_",
        "sk-",
        "AKIA",
        "Authorization",
        ": ",
        "Bearer ",
        "10.0.0.1",
        "255",
        "fe80",
        "0x",
        "deadbeef",
        "q8Zt4LmR2vXw9KpB7nYc",
        "example.com",
    ];
    let scrubbers = [posix(), windows(), Scrubber::new(None, None)];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let input: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        for scrubber in &scrubbers {
            match scrubber.scrub_str(&input) {
                Cow::Borrowed(out) => assert_eq!(out, input),
                Cow::Owned(out) => assert_ne!(out, input, "copied without a change: {input:?}"),
            }
        }
    }
}
