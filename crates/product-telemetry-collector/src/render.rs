//! Text renderings of stored events for people and for scripts: an aligned table, JSON lines,
//! and the stats report.
//!
//! Everything shown comes from the network, so every field is cleaned of control characters
//! (no terminal escape sequences, no line breaks) and cut to a bounded width before it is
//! printed. Pure functions: they return strings and never print.

use std::fmt::Write as _;

use serde_json::Value;

use crate::store::{Stats, StoredEvent};

const EVENT_WIDTH: usize = 28;
const DISTINCT_ID_WIDTH: usize = 36;
const LIBRARY_WIDTH: usize = 28;
const PROPERTIES_WIDTH: usize = 72;
const ELLIPSIS: char = '…';

/// An aligned table, one event per line: time (UTC), event, distinct_id, library and
/// version, and the other properties abbreviated as `key=value` pairs.
///
/// ```
/// use product_telemetry_collector::render::events_table;
///
/// assert_eq!(events_table(&[]), "no events\n");
/// ```
pub fn events_table(events: &[StoredEvent]) -> String {
    if events.is_empty() {
        return "no events\n".to_string();
    }
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                e.timestamp.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                clip(&e.event, EVENT_WIDTH),
                clip(&e.distinct_id, DISTINCT_ID_WIDTH),
                clip(&library(e), LIBRARY_WIDTH),
                clip(&abbreviate_properties(e), PROPERTIES_WIDTH),
            ]
        })
        .collect();
    let header = [
        "TIME (UTC)",
        "EVENT",
        "DISTINCT_ID",
        "LIBRARY",
        "PROPERTIES",
    ]
    .map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        push_row(&mut out, row, &widths);
    }
    out
}

/// One JSON object per line, with every stored column (`properties` as an object).
pub fn events_json_lines(events: &[StoredEvent]) -> String {
    let mut out = String::new();
    for event in events {
        // Serialising plain data into a String cannot fail; skip the row if it ever does.
        if let Ok(line) = serde_json::to_string(event) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The `stats` report: the total, then counts by event name and by UTC day.
///
/// ```
/// use product_telemetry_collector::{render::stats_report, Stats};
///
/// let stats = Stats {
///     total: 3,
///     by_event: vec![("opened".into(), 2), ("closed".into(), 1)],
///     by_day: vec![("2024-05-01".into(), 3)],
/// };
/// let report = stats_report(&stats);
/// assert!(report.starts_with("3 events\n"));
/// assert!(report.contains("opened      2\n"));
/// ```
pub fn stats_report(stats: &Stats) -> String {
    let mut out = format!(
        "{} event{}\n",
        stats.total,
        if stats.total == 1 { "" } else { "s" }
    );
    if stats.total == 0 {
        return out;
    }
    out.push('\n');
    push_counts(&mut out, "EVENT", &stats.by_event);
    out.push('\n');
    push_counts(&mut out, "DAY (UTC)", &stats.by_day);
    out
}

fn push_counts(out: &mut String, title: &str, counts: &[(String, u64)]) {
    let labels: Vec<String> = counts.iter().map(|(l, _)| clip(l, EVENT_WIDTH)).collect();
    let numbers: Vec<String> = counts.iter().map(|(_, n)| n.to_string()).collect();
    let label_width = labels
        .iter()
        .map(|l| l.chars().count())
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0);
    let count_width = numbers
        .iter()
        .map(String::len)
        .chain([5])
        .max()
        .unwrap_or(5);
    let _ = writeln!(out, "{title:<label_width$}  {:>count_width$}", "COUNT");
    for (label, number) in labels.iter().zip(&numbers) {
        let pad = label_width.saturating_sub(label.chars().count());
        let _ = writeln!(out, "{label}{:pad$}  {number:>count_width$}", "");
    }
}

fn push_row(out: &mut String, row: &[String; 5], widths: &[usize; 5]) {
    let mut line = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            let pad = width.saturating_sub(cell.chars().count()) + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn library(event: &StoredEvent) -> String {
    match (&event.library, &event.library_version) {
        (Some(lib), Some(version)) => format!("{lib} {version}"),
        (Some(lib), None) => lib.clone(),
        (None, _) => "-".to_string(),
    }
}

/// `key=value` pairs of the properties other than `$lib` and `$lib_version` (already shown).
/// Properties a telemetry library adds to every event (PostHog's `$…` keys and
/// product-telemetry's common properties): shown after the event's own.
fn is_metadata(key: &str) -> bool {
    key.starts_with('$')
        || matches!(
            key,
            "sdk_version" | "session_id" | "os_arch" | "ci" | "ci_vendor"
        )
}

fn abbreviate_properties(event: &StoredEvent) -> String {
    let mut out = String::new();
    // The event's own properties first; PostHog's `$…` metadata after them.
    let (own, meta): (Vec<_>, Vec<_>) = event
        .properties
        .iter()
        .filter(|(key, _)| *key != "$lib" && *key != "$lib_version")
        .partition(|(key, _)| !is_metadata(key));
    for (key, value) in own.into_iter().chain(meta) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        if out.chars().count() > PROPERTIES_WIDTH {
            break;
        }
    }
    out
}

/// Control characters replaced, then cut to `width` characters (the last one an ellipsis).
fn clip(text: &str, width: usize) -> String {
    let clean = text.chars().map(|c| if c.is_control() { '?' } else { c });
    let mut out: String = clean.clone().take(width).collect();
    if clean.count() > width {
        out.pop();
        out.push(ELLIPSIS);
    }
    out
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn stored(event: &str, distinct_id: &str, properties: Value) -> StoredEvent {
        let ts: Timestamp = "2024-05-01T12:34:56.789Z".parse().expect("valid");
        StoredEvent {
            uuid: Uuid::nil(),
            event: event.into(),
            distinct_id: distinct_id.into(),
            timestamp: ts,
            received_at: ts,
            project_key: "phc_k".into(),
            library: Some("product-telemetry".into()),
            library_version: Some("0.1.0".into()),
            properties: properties.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn table_aligns_columns_and_abbreviates_properties() {
        let events = [
            stored(
                "app_started",
                "install-1",
                json!({"$lib": "product-telemetry", "$lib_version": "0.1.0", "os": "linux", "n": 3}),
            ),
            stored("x", "install-22", json!({})),
        ];
        let table = events_table(&events);
        let expected = "\
TIME (UTC)           EVENT        DISTINCT_ID  LIBRARY                  PROPERTIES
2024-05-01 12:34:56  app_started  install-1    product-telemetry 0.1.0  n=3 os=linux
2024-05-01 12:34:56  x            install-22   product-telemetry 0.1.0
";
        assert_eq!(table, expected);
    }

    #[test]
    fn table_strips_control_characters_and_clips_long_fields() {
        let events = [stored(
            "evil\u{1b}[31mred\nline",
            &"d".repeat(100),
            json!({"long": "v".repeat(500)}),
        )];
        let table = events_table(&events);
        assert!(!table.contains('\u{1b}'));
        assert_eq!(table.lines().count(), 2);
        let row = table.lines().nth(1).expect("a row");
        assert!(row.contains("evil?[31mred?line"));
        assert!(row.contains(&format!("{}…", "d".repeat(DISTINCT_ID_WIDTH - 1))));
        assert!(row.chars().count() < 250);
    }

    #[test]
    fn json_lines_have_one_object_per_event() {
        let events = [
            stored("a", "u", json!({"k": 1})),
            stored("b", "u", json!({})),
        ];
        let text = events_json_lines(&events);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "a");
        assert_eq!(lines[0]["properties"]["k"], 1);
        assert_eq!(lines[0]["timestamp"], "2024-05-01T12:34:56.789Z");
        assert_eq!(lines[0]["uuid"], Uuid::nil().to_string());
        assert_eq!(lines[0]["library"], "product-telemetry");
    }

    #[test]
    fn stats_report_lists_events_and_days() {
        let stats = Stats {
            total: 3,
            by_event: vec![("app_started".into(), 2), ("crash".into(), 1)],
            by_day: vec![("2024-05-01".into(), 1), ("2024-05-02".into(), 2)],
        };
        let expected = "\
3 events

EVENT        COUNT
app_started      2
crash            1

DAY (UTC)   COUNT
2024-05-01      1
2024-05-02      2
";
        assert_eq!(stats_report(&stats), expected);
    }

    #[test]
    fn stats_report_for_an_empty_database() {
        assert_eq!(stats_report(&Stats::default()), "0 events\n");
    }
}
