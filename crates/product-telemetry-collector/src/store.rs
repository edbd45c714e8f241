//! SQLite storage: the schema, the write path (one transaction per request, deduplicated by
//! uuid) and the read path ([`Store`]: filtered event lists and counts).
//!
//! The database runs in WAL mode with `synchronous=NORMAL`: a commit survives the process
//! being killed (Ctrl-C, SIGTERM, a crash) — only a power cut may lose the last commits.
//! Readers never block the writer. The only index is the uuid's (for deduplication), so
//! inserts stay cheap. Timestamps are stored as fixed-width RFC 3339 text in UTC
//! (`2024-05-01T12:00:00.000000Z`), so text order is time order and `substr(ts, 1, 10)` is
//! the UTC day.
//!
//! This is the only module that speaks SQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::clock;
use crate::payload::CaptureBatch;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id              INTEGER PRIMARY KEY,
    uuid            TEXT NOT NULL UNIQUE,
    event           TEXT NOT NULL,
    distinct_id     TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    project_key     TEXT NOT NULL,
    library         TEXT,
    library_version TEXT,
    properties      TEXT NOT NULL
);
";

/// Page size of new databases: fewer, larger writes per commit.
const PAGE_SIZE: i64 = 16_384;
/// WAL size (in frames, i.e. pages) past which the checkpointer forces a restart of the WAL.
const WAL_RESTART_FRAMES: u64 = 8_192; // 128 MiB
/// Size the WAL file is trimmed back to when it restarts. As large as the WAL is allowed to
/// grow, so that a restarting WAL overwrites pages already in the page cache instead of
/// truncating the file and allocating it again (measurably slower).
const WAL_SIZE_LIMIT: i64 = 160 * 1024 * 1024;

const INSERT_INTO: &str = "INSERT OR IGNORE INTO events
    (uuid, event, distinct_id, timestamp, received_at, project_key, library, library_version,
     properties)";
const COLUMNS_PER_ROW: usize = 9;
/// Rows per multi-row insert statement: fewer statement executions per event.
const ROWS_PER_INSERT: usize = 25;

const SELECT_COLUMNS: &str = "uuid, event, distinct_id, timestamp, received_at, project_key,
    library, library_version, properties";

/// Why the database could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// There is no database at that path (readers never create one).
    #[error("no event database at {0}")]
    NotFound(PathBuf),
    /// SQLite refused.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored row could not be read back (a value written by something else).
    #[error("unreadable row in {path}: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The writer thread is gone (the collector is shutting down).
    #[error("the event writer has stopped")]
    WriterStopped,
}

/// One stored event, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// The event's uuid (the deduplication key).
    pub uuid: Uuid,
    /// The event name.
    pub event: String,
    /// The distinct id.
    pub distinct_id: String,
    /// The event time, corrected for client clock skew.
    pub timestamp: Timestamp,
    /// When the collector received the request.
    pub received_at: Timestamp,
    /// The project key (token) the request carried.
    pub project_key: String,
    /// `properties.$lib`.
    pub library: Option<String>,
    /// `properties.$lib_version`.
    pub library_version: Option<String>,
    /// The event's properties.
    pub properties: Map<String, Value>,
}

/// Which events [`Store::events`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Only events with this exact name.
    pub event: Option<String>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// At most this many: the most recently received ones.
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        EventFilter::default()
    }

    /// Only events named `name`.
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(name.into());
        self
    }

    /// Only events at or after `since`.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// At most `limit` events (the most recently received).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Event counts, as shown by `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// All stored events.
    pub total: u64,
    /// Per event name, most frequent first (ties by name).
    pub by_event: Vec<(String, u64)>,
    /// Per UTC day of the event time (`YYYY-MM-DD`), oldest first.
    pub by_day: Vec<(String, u64)>,
}

/// Read access to an event database.
///
/// ```no_run
/// use product_telemetry_collector::{EventFilter, Store};
///
/// let store = Store::open("events.sqlite")?;
/// for event in store.events(&EventFilter::all().event("app_started").limit(10))? {
///     println!("{} {}", event.timestamp, event.distinct_id);
/// }
/// # Ok::<(), product_telemetry_collector::StoreError>(())
/// ```
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens an existing database for reading (never creates one). Works while a collector
    /// is writing to it.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::NotFound(path));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(sqlite(&path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite(&path))?;
        Ok(Store { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events matching `filter`, in event-time order (ties in arrival order). With a limit,
    /// the `limit` most recently received ones.
    ///
    /// There is deliberately no index on the event time or name: it would cost about a fifth
    /// of the writer's time per event. The limit is served from arrival order (the rowid), so
    /// a limited listing stops as soon as it has enough events; filters without a limit, and
    /// [`Store::stats`], scan the table (on the order of a second per million events here).
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let since = filter.since.map(clock::format_stored);
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events
             WHERE (?1 IS NULL OR event = ?1) AND (?2 IS NULL OR timestamp >= ?2)
             ORDER BY id DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map(params![filter.event, since, limit], RawRow::read)
            .map_err(sqlite(&self.path))?;
        let mut events = rows
            .map(|row| {
                row.map_err(sqlite(&self.path))
                    .and_then(|r| r.into_event(&self.path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        events.reverse();
        // Stable: events with the same time stay in arrival order.
        events.sort_by_key(|e| e.timestamp);
        Ok(events)
    }

    /// The event with this uuid, if stored.
    pub fn event_by_uuid(&self, uuid: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("SELECT {SELECT_COLUMNS} FROM events WHERE uuid = ?1");
        let row = self
            .conn
            .query_row(&sql, [uuid.hyphenated().to_string()], RawRow::read)
            .optional()
            .map_err(sqlite(&self.path))?;
        row.map(|r| r.into_event(&self.path)).transpose()
    }

    /// How many events are stored.
    pub fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(sqlite(&self.path))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Counts by event name and by UTC day.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let by_event = self.counts(
            "SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY n DESC, event",
        )?;
        let by_day = self.counts(
            "SELECT substr(timestamp, 1, 10) AS day, count(*) FROM events GROUP BY day
             ORDER BY day",
        )?;
        Ok(Stats {
            total: by_event.iter().map(|(_, n)| n).sum(),
            by_event,
            by_day,
        })
    }

    fn counts(&self, sql: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(sqlite(&self.path))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                ))
            })
            .map_err(sqlite(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(sqlite(&self.path))
    }
}

/// A row as SQLite hands it over, before its text is parsed.
struct RawRow {
    uuid: String,
    event: String,
    distinct_id: String,
    timestamp: String,
    received_at: String,
    project_key: String,
    library: Option<String>,
    library_version: Option<String>,
    properties: String,
}

impl RawRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            uuid: row.get(0)?,
            event: row.get(1)?,
            distinct_id: row.get(2)?,
            timestamp: row.get(3)?,
            received_at: row.get(4)?,
            project_key: row.get(5)?,
            library: row.get(6)?,
            library_version: row.get(7)?,
            properties: row.get(8)?,
        })
    }

    fn into_event(self, path: &Path) -> Result<StoredEvent, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let uuid =
            Uuid::parse_str(&self.uuid).map_err(|_| corrupt(format!("uuid {}", self.uuid)))?;
        let timestamp = clock::parse_stored(&self.timestamp)
            .ok_or_else(|| corrupt(format!("timestamp {}", self.timestamp)))?;
        let received_at = clock::parse_stored(&self.received_at)
            .ok_or_else(|| corrupt(format!("received_at {}", self.received_at)))?;
        let properties = serde_json::from_str(&self.properties)
            .map_err(|e| corrupt(format!("properties of {uuid}: {e}")))?;
        Ok(StoredEvent {
            uuid,
            event: self.event,
            distinct_id: self.distinct_id,
            timestamp,
            received_at,
            project_key: self.project_key,
            library: self.library,
            library_version: self.library_version,
            properties,
        })
    }
}

/// The single connection that writes events. Used by the writer thread only.
#[derive(Debug)]
pub(crate) struct WriteConnection {
    conn: Connection,
    path: PathBuf,
}

/// One request's events, rendered into the text the table stores. Built on the request's
/// thread, so the writer thread only binds and inserts.
#[derive(Debug)]
pub(crate) struct IngestBatch {
    project_key: String,
    received_at: String,
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    uuid: String,
    event: String,
    distinct_id: String,
    timestamp: String,
    library: Option<String>,
    library_version: Option<String>,
    properties: String,
}

impl IngestBatch {
    /// Renders a validated request received at `received_at`.
    pub(crate) fn new(batch: CaptureBatch, received_at: Timestamp) -> IngestBatch {
        let rows = batch
            .events
            .into_iter()
            .map(|e| Row {
                uuid: e.uuid.hyphenated().to_string(),
                event: e.event,
                distinct_id: e.distinct_id,
                timestamp: clock::format_stored(e.timestamp),
                library: e.library,
                library_version: e.library_version,
                properties: e.properties,
            })
            .collect();
        IngestBatch {
            project_key: batch.token,
            received_at: clock::format_stored(received_at),
            rows,
        }
    }

    /// How many events it holds.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

impl WriteConnection {
    /// Opens (creating if needed) the database, switches it to WAL, and sets up the schema.
    pub(crate) fn open(path: &Path) -> Result<WriteConnection, StoreError> {
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite(path))?;
        // Larger pages: fewer, larger writes per commit (only takes effect on a new file).
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(sqlite(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite(path))?;
        conn.pragma_update(None, "cache_size", -16_384) // KiB: 16 MiB of page cache
            .map_err(sqlite(path))?;
        // Checkpoints (and their fsyncs) run on their own connection and thread, not here.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sqlite(path))?;
        // When the WAL restarts, trim its file only if it grew past this size.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(sqlite(path))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite(path))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("schema version {version} is newer than this collector's"),
            });
        }
        conn.execute_batch(SCHEMA).map_err(sqlite(path))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sqlite(path))?;
        Ok(WriteConnection {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Writes several requests, each stored whole or not at all, and returns per request how
    /// many of its events were new (duplicates by uuid are ignored).
    ///
    /// The group is first written in one transaction (one commit for many requests). Should
    /// that fail, it is rolled back and each request is retried in its own transaction, so
    /// one failing request cannot take the others down with it.
    pub(crate) fn write_all(&mut self, batches: &[&IngestBatch]) -> Vec<Result<usize, StoreError>> {
        if batches.len() > 1 {
            match self.write_group(batches) {
                Ok(counts) => return counts.into_iter().map(Ok).collect(),
                Err(e) => tracing::warn!(error = %e, "group write failed; retrying one by one"),
            }
        }
        batches
            .iter()
            .map(|batch| {
                self.write_group(std::slice::from_ref(batch))
                    .map(|counts| counts.iter().sum())
            })
            .collect()
    }

    /// Writes `batches` in one transaction: all of them or none.
    fn write_group(&mut self, batches: &[&IngestBatch]) -> Result<Vec<usize>, StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().map_err(sqlite(path))?;
        let counts = batches
            .iter()
            .map(|batch| insert_batch(&tx, batch))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite(path))?;
        tx.commit().map_err(sqlite(path))?;
        Ok(counts)
    }
}

/// A second connection that only checkpoints the WAL into the database file.
///
/// The writer never checkpoints (`wal_autocheckpoint=0`): on this kind of disk a checkpoint's
/// fsyncs cost more than the inserts themselves, so they run beside the writer instead of
/// inside its commits.
#[derive(Debug)]
pub(crate) struct CheckpointConnection {
    conn: Connection,
    path: PathBuf,
}

impl CheckpointConnection {
    /// Opens the (already created) database for checkpointing.
    pub(crate) fn open(path: &Path) -> Result<CheckpointConnection, StoreError> {
        let conn = Connection::open(path).map_err(sqlite(path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite(path))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(sqlite(path))?;
        Ok(CheckpointConnection {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Copies what it can of the WAL into the database without waiting for the writer
    /// (`PASSIVE`); when the WAL has grown past its bound, waits for the writer to pause and
    /// makes the next transaction start the WAL afresh (`RESTART`). Returns the WAL's size in
    /// frames before the checkpoint.
    pub(crate) fn checkpoint(&self) -> Result<u64, StoreError> {
        let frames = self.run("PRAGMA wal_checkpoint(PASSIVE)")?;
        if frames > WAL_RESTART_FRAMES {
            self.run("PRAGMA wal_checkpoint(RESTART)")?;
        }
        Ok(frames)
    }

    fn run(&self, pragma: &str) -> Result<u64, StoreError> {
        let (_busy, frames): (i64, i64) = self
            .conn
            .query_row(pragma, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sqlite(&self.path))?;
        Ok(u64::try_from(frames).unwrap_or(0))
    }
}

fn insert_batch(conn: &Connection, batch: &IngestBatch) -> rusqlite::Result<usize> {
    let mut inserted = 0;
    let mut chunks = batch.rows.chunks_exact(ROWS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = conn.prepare_cached(&insert_sql(ROWS_PER_INSERT))?;
        for chunk in &mut chunks {
            bind_rows(&mut stmt, batch, chunk)?;
            inserted += stmt.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(&insert_sql(1))?;
        for row in rest {
            bind_rows(&mut stmt, batch, std::slice::from_ref(row))?;
            inserted += stmt.raw_execute()?;
        }
    }
    Ok(inserted)
}

/// Binds `rows` to the positional parameters of an insert of that many rows.
fn bind_rows(
    stmt: &mut rusqlite::Statement<'_>,
    batch: &IngestBatch,
    rows: &[Row],
) -> rusqlite::Result<()> {
    let mut index = 1;
    for row in rows {
        stmt.raw_bind_parameter(index, &row.uuid)?;
        stmt.raw_bind_parameter(index + 1, &row.event)?;
        stmt.raw_bind_parameter(index + 2, &row.distinct_id)?;
        stmt.raw_bind_parameter(index + 3, &row.timestamp)?;
        stmt.raw_bind_parameter(index + 4, &batch.received_at)?;
        stmt.raw_bind_parameter(index + 5, &batch.project_key)?;
        stmt.raw_bind_parameter(index + 6, &row.library)?;
        stmt.raw_bind_parameter(index + 7, &row.library_version)?;
        stmt.raw_bind_parameter(index + 8, &row.properties)?;
        index += COLUMNS_PER_ROW;
    }
    Ok(())
}

/// `INSERT OR IGNORE … VALUES (?, …), …` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let one = format!("({})", ["?"; COLUMNS_PER_ROW].join(","));
    format!("{INSERT_INTO} VALUES {}", vec![one; rows].join(","))
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::NewEvent;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid")
    }

    fn new_event(name: &str, at: &str) -> NewEvent {
        NewEvent {
            uuid: Uuid::now_v7(),
            event: name.into(),
            distinct_id: "d".into(),
            timestamp: ts(at),
            library: Some("lib".into()),
            library_version: Some("1.0".into()),
            properties: r#"{"k":"v"}"#.into(),
        }
    }

    fn ingest(events: Vec<NewEvent>) -> IngestBatch {
        IngestBatch::new(
            CaptureBatch {
                token: "phc_k".into(),
                historical_migration: false,
                events,
            },
            ts("2024-05-02T00:00:00Z"),
        )
    }

    #[test]
    fn write_then_read_back_with_filters_and_stats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite");
        let mut writer = WriteConnection::open(&path).expect("open writer");
        let a = new_event("opened", "2024-05-01T10:00:00Z");
        let b = new_event("closed", "2024-05-01T11:00:00Z");
        let c = new_event("opened", "2024-05-02T09:00:00Z");
        let batch = ingest(vec![a.clone(), b, c.clone()]);
        let results = writer.write_all(&[&batch]);
        assert!(matches!(results[..], [Ok(3)]));
        // The same uuids again: nothing new.
        let results = writer.write_all(&[&batch]);
        assert!(matches!(results[..], [Ok(0)]));

        let store = Store::open(&path).expect("open reader");
        assert_eq!(store.count().expect("count"), 3);
        let opened = store
            .events(&EventFilter::all().event("opened"))
            .expect("query");
        assert_eq!(
            opened.iter().map(|e| e.uuid).collect::<Vec<_>>(),
            [a.uuid, c.uuid]
        );
        let latest = store.events(&EventFilter::all().limit(1)).expect("query");
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0].uuid, c.uuid);
        let since = store
            .events(&EventFilter::all().since(ts("2024-05-01T10:30:00Z")))
            .expect("query");
        assert_eq!(since.len(), 2);
        let got = store.event_by_uuid(a.uuid).expect("query").expect("stored");
        assert_eq!(got.properties["k"], "v");
        assert_eq!(got.project_key, "phc_k");
        assert_eq!(got.received_at, ts("2024-05-02T00:00:00Z"));

        let stats = store.stats().expect("stats");
        assert_eq!(stats.total, 3);
        assert_eq!(stats.by_event, [("opened".into(), 2), ("closed".into(), 1)]);
        assert_eq!(
            stats.by_day,
            [("2024-05-01".into(), 2), ("2024-05-02".into(), 1)]
        );
    }

    #[test]
    fn multi_row_inserts_keep_every_row_and_skip_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite");
        let mut writer = WriteConnection::open(&path).expect("open writer");
        // 2 full multi-row statements and a remainder, with one uuid repeated inside.
        let mut events: Vec<NewEvent> = (0..2 * ROWS_PER_INSERT + 7)
            .map(|i| new_event(&format!("e{i}"), "2024-05-01T10:00:00Z"))
            .collect();
        events[40].uuid = events[3].uuid;
        let batch = ingest(events);
        let results = writer.write_all(&[&batch]);
        assert!(matches!(results[..], [Ok(n)] if n == 2 * ROWS_PER_INSERT + 6));
        let store = Store::open(&path).expect("open reader");
        assert_eq!(
            store.count().expect("count"),
            (2 * ROWS_PER_INSERT + 6) as u64
        );
        let names: Vec<String> = store
            .events(&EventFilter::all())
            .expect("query")
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(names.first().map(String::as_str), Some("e0"));
        assert_eq!(names.last().map(String::as_str), Some("e56"));
        assert!(!names.contains(&"e40".to_string()));
    }

    #[test]
    fn database_is_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sqlite");
        let writer = WriteConnection::open(&path).expect("open writer");
        let mode: String = writer
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn reader_never_creates_a_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing.sqlite");
        assert!(matches!(Store::open(&path), Err(StoreError::NotFound(_))));
        assert!(!path.exists());
    }
}
