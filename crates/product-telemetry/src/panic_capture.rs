//! Opt-in panic capture: a chained panic hook that records an `$exception` event and
//! makes sure it survives the dying process.
//!
//! The message goes through the scrubber on the worker like any property; the location
//! is reduced to a crate-relative `file:line` (`src/main.rs:12`, or
//! `serde-1.0.200/src/de.rs:40` for a dependency), never an absolute path. The hook
//! writes the event to the spool (or delivers it) within a short bound, then calls the
//! previous hook. It is installed at most once per process and never panics itself.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::{Arc, Once};
use std::time::Duration;

use crate::client::{Client, Message};
use crate::event::DynamicEvent;

/// How long the hook may hold up a panicking thread.
const HOOK_BUDGET: Duration = Duration::from_millis(500);

static INSTALL: Once = Once::new();

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hook (once per process), chained before the existing one.
pub(crate) fn install(client: Client, distinct_id: Arc<str>) {
    INSTALL.call_once(move || {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HOOK.with(|flag| flag.replace(true)) {
                record(&client, &distinct_id, info);
                IN_HOOK.with(|flag| flag.set(false));
            }
            previous(info);
        }));
    });
}

fn record(client: &Client, distinct_id: &Arc<str>, info: &PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string());
    let mut event = DynamicEvent::new("$exception")
        .property("$exception_type", "panic")
        .property("$exception_message", message)
        .property("$exception_handled", false);
    if let Some(location) = info.location() {
        event.insert(
            "$exception_location",
            format!("{}:{}", crate_relative(location.file()), location.line()),
        );
    }
    client.enqueue(Message::new(Arc::clone(distinct_id), event));
    // Deliver if the endpoint answers at once; otherwise it is in the spool.
    if client.flush(HOOK_BUDGET).is_err() {
        let _ = client.persist(HOOK_BUDGET);
    }
}

/// `src/main.rs` stays as it is; an absolute path keeps only the crate folder and what
/// follows (`serde-1.0.200/src/de.rs`), or the file name when there is no `src`.
pub(crate) fn crate_relative(file: &str) -> String {
    let unified = file.replace('\\', "/");
    let absolute = unified.starts_with('/') || unified.get(1..3) == Some(":/");
    if !absolute {
        return unified;
    }
    match unified.rfind("/src/") {
        Some(at) => {
            let crate_dir = unified[..at].rsplit('/').next().unwrap_or_default();
            format!("{crate_dir}{}", &unified[at..])
        }
        None => unified.rsplit('/').next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::crate_relative;

    #[test]
    fn locations_are_reduced_to_crate_relative_paths() {
        assert_eq!(crate_relative("src/main.rs"), "src/main.rs");
        assert_eq!(
            crate_relative("/home/ada/.cargo/registry/src/index/serde-1.0.200/src/de.rs"),
            "serde-1.0.200/src/de.rs"
        );
        assert_eq!(
            crate_relative("/home/ada/secret-project/src/lib.rs"),
            "secret-project/src/lib.rs"
        );
        assert_eq!(
            crate_relative("C:\\Users\\Ada\\app\\src\\main.rs"),
            "app/src/main.rs"
        );
        assert_eq!(crate_relative("/tmp/build/generated.rs"), "generated.rs");
    }
}
