//! The local record of what left the machine: the last events the server acknowledged,
//! one JSON object per line, so a user can see exactly what was shared
//! (`product-telemetry telemetry log`).
//!
//! Bounded: past [`MAX_SENT_LOG_BYTES`] the file is rewritten with its newer half,
//! atomically. Failures are logged at debug level and otherwise ignored.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The file's name, in the app's cache folder.
pub const SENT_LOG_FILE_NAME: &str = "sent.log";
/// The most the log keeps.
pub const MAX_SENT_LOG_BYTES: u64 = 256 * 1024;

/// Appends events (JSON, one per line) and keeps the file within its bound.
pub(crate) fn append<'a>(path: &Path, events: impl Iterator<Item = &'a [u8]>) {
    if let Err(e) = try_append(path, events) {
        log::debug!("telemetry: cannot update {}: {e}", path.display());
    }
}

fn try_append<'a>(path: &Path, events: impl Iterator<Item = &'a [u8]>) -> io::Result<()> {
    let mut buffer = Vec::new();
    for event in events {
        buffer.extend_from_slice(event);
        buffer.push(b'\n');
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(&buffer)?;
    if file.metadata()?.len() > MAX_SENT_LOG_BYTES {
        let content = fs::read(path)?;
        let half = content.len() / 2;
        let start = content[half..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(content.len(), |i| half + i + 1);
        let temp = path.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&temp, &content[start..])?;
        fs::rename(&temp, path)?;
    }
    Ok(())
}

/// The last `limit` events of the log, oldest first (empty when there is none).
pub fn read_last(path: &Path, limit: usize) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(limit)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_events_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SENT_LOG_FILE_NAME);
        let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
        for _ in 0..600 {
            append(&path, std::iter::once(line.as_bytes()));
        }
        append(&path, std::iter::once(&b"{\"last\":true}"[..]));
        assert!(fs::metadata(&path).unwrap().len() <= MAX_SENT_LOG_BYTES);
        let last = read_last(&path, 2);
        assert_eq!(last.len(), 2);
        assert_eq!(last[1], "{\"last\":true}");
        assert!(
            read_last(&path, 10_000)
                .iter()
                .all(|l| l.starts_with('{') && l.ends_with('}'))
        );
    }
}
