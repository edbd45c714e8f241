//! The durable spool: undelivered events on disk, shared safely by every process of
//! an app, so that nothing captured is lost to a crash, an offline run or an early exit.
//!
//! # Layout
//!
//! `<cache home>/<app>/spool/` holds:
//! - `<instance>.lock` — one per live process, locked (`flock`) for the process's life;
//! - `<uuid v7>-<instance>.seg` — one segment of up to 100 encoded events, written to a
//!   temporary name then renamed (atomic), named so that names sort in time order;
//! - `next_attempt` — when the endpoint may next be tried (backoff that outlives a run).
//!
//! # Segment format
//!
//! A 20-byte header — magic `PTSP`, version 1, three zero bytes, payload length (u32
//! LE), CRC32 of the payload (u32 LE), event count (u32 LE) — then per event its uuid
//! (16 bytes), its length (u32 LE) and its JSON. A torn or corrupt file fails the
//! checks, is deleted and counted, and never stops the others.
//!
//! # Sharing
//!
//! A process sends only segments it owns. Segments of a process that is gone (its lock
//! is free) are claimed by renaming them into the claimer's name: rename is atomic, so
//! exactly one claimer wins and no event is sent twice by two processes.
//!
//! # Bounds
//!
//! Total bytes and age are bounded; past them the oldest segments are deleted and
//! their events counted as evicted. Temporary files of dead writers are removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::batch::EncodedEvent;

const MAGIC: &[u8; 4] = b"PTSP";
const VERSION: u8 = 1;
const HEADER: usize = 20;
const SEGMENT_EXT: &str = "seg";
const LOCK_EXT: &str = "lock";
const TEMP_EXT: &str = "tmp";
const NEXT_ATTEMPT: &str = "next_attempt";
const DROPPED: &str = "dropped";
/// No segment is larger than this; a bigger length in a header means corruption.
const MAX_SEGMENT_BYTES: u32 = 64 * 1024 * 1024;

/// Default bound on the spool's size.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Default bound on the age of spooled events.
pub const DEFAULT_SPOOL_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

/// A segment read back from disk.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) path: PathBuf,
    pub(crate) events: Vec<EncodedEvent>,
}

/// What a scan of the spool found and did.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub(crate) segments: Vec<Loaded>,
    pub(crate) corrupt: u64,
}

/// A summary for status displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolSummary {
    /// Segment files waiting.
    pub segments: u64,
    /// Events in them.
    pub events: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// When the oldest waiting segment was written.
    pub oldest: Option<SystemTime>,
    /// When the endpoint may next be tried, if a backoff is in force.
    pub next_attempt: Option<SystemTime>,
    /// Events evicted so far by the size and age bounds (all runs).
    pub evicted: u64,
    /// Corrupt segment files removed so far (all runs).
    pub corrupt: u64,
}

/// This process's handle on the spool folder.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    instance: String,
    /// Held (locked) for the life of the process; proves this instance is alive.
    _lock: File,
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Duration,
}

impl Spool {
    /// Opens (creating) the spool folder and registers this process in it.
    pub(crate) fn open(dir: &Path, max_bytes: u64, max_age: Duration) -> io::Result<Spool> {
        private_dir(dir)?;
        let instance = Uuid::new_v4().simple().to_string();
        let lock_path = dir.join(format!("{instance}.{LOCK_EXT}"));
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::Error(e) => e,
            fs::TryLockError::WouldBlock => io::Error::other("spool lock is held"),
        })?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            instance,
            _lock: lock,
            max_bytes,
            max_age,
        })
    }

    /// Writes events as a new segment owned by this process.
    pub(crate) fn write(&self, events: &[EncodedEvent]) -> io::Result<PathBuf> {
        let name = format!("{}-{}", Uuid::now_v7().simple(), self.instance);
        let path = self.dir.join(format!("{name}.{SEGMENT_EXT}"));
        let temp = self.dir.join(format!("{name}.{TEMP_EXT}"));
        let bytes = encode_segment(events);
        let written = private_file(&temp).and_then(|mut f| f.write_all(&bytes));
        if let Err(e) = written.and_then(|()| fs::rename(&temp, &path)) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(path)
    }

    /// Deletes a segment (delivered, or given up on).
    pub(crate) fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::debug!("telemetry: cannot remove {}: {e}", path.display());
        }
    }

    /// Reads one of our segments back (after its events were dropped from memory).
    pub(crate) fn read(&self, path: &Path) -> io::Result<Vec<EncodedEvent>> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        decode_segment(&bytes)
    }

    /// Claims the segments of processes that are gone, oldest first, and removes
    /// their leftovers (temporary files, lock files). Corrupt segments are deleted
    /// and counted.
    pub(crate) fn claim_orphans(&self) -> Claimed {
        let mut claimed = Claimed::default();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return claimed;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut dead: Vec<String> = Vec::new();
        let mut alive: Vec<String> = vec![self.instance.clone()];
        for name in names {
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let owner = match ext {
                SEGMENT_EXT | TEMP_EXT => stem.rsplit_once('-').map(|(_, owner)| owner),
                _ => None,
            };
            let Some(owner) = owner else { continue };
            if alive.iter().any(|a| a == owner) {
                continue;
            }
            if !dead.iter().any(|d| d == owner) {
                if self.owner_is_alive(owner) {
                    alive.push(owner.to_string());
                    continue;
                }
                dead.push(owner.to_string());
            }
            let path = self.dir.join(&name);
            if ext == TEMP_EXT {
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some((id, _)) = stem.rsplit_once('-') else {
                continue;
            };
            let mine = self
                .dir
                .join(format!("{id}-{}.{SEGMENT_EXT}", self.instance));
            if fs::rename(&path, &mine).is_err() {
                continue; // another process claimed it first
            }
            match self.read(&mine) {
                Ok(events) => claimed.segments.push(Loaded { path: mine, events }),
                Err(e) => {
                    log::debug!("telemetry: removing corrupt spool file {name}: {e}");
                    claimed.corrupt += 1;
                    let _ = fs::remove_file(&mine);
                }
            }
        }
        for owner in dead {
            let _ = fs::remove_file(self.dir.join(format!("{owner}.{LOCK_EXT}")));
        }
        claimed
    }

    /// Whether the process that owns `instance` is still running (holds its lock).
    fn owner_is_alive(&self, instance: &str) -> bool {
        let lock_path = self.dir.join(format!("{instance}.{LOCK_EXT}"));
        let Ok(file) = OpenOptions::new().write(true).open(&lock_path) else {
            return false; // no lock file: its owner exited or crashed
        };
        match file.try_lock() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(_)) => false,
        }
    }

    /// Deletes the oldest segments past the size and age bounds. Returns the deleted
    /// paths and how many events they held.
    pub(crate) fn enforce_bounds(&self) -> (Vec<PathBuf>, u64) {
        let mut files = segment_files(&self.dir);
        let now = SystemTime::now();
        let mut total: u64 = files.iter().map(|f| f.bytes).sum();
        let mut removed = Vec::new();
        let mut events = 0;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        for file in files {
            let too_old = file
                .written
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() > self.max_age);
            if total <= self.max_bytes && !too_old {
                continue;
            }
            if fs::remove_file(&file.path).is_ok() {
                total = total.saturating_sub(file.bytes);
                events += u64::from(file.events);
                removed.push(file.path);
            }
        }
        (removed, events)
    }

    /// Remembers when the endpoint may next be tried, across runs.
    pub(crate) fn set_next_attempt(&self, at: Option<SystemTime>) {
        let path = self.dir.join(NEXT_ATTEMPT);
        match at {
            None => {
                let _ = fs::remove_file(&path);
            }
            Some(at) => {
                let millis = at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let temp = self.dir.join(format!("{NEXT_ATTEMPT}.{}", self.instance));
                if fs::write(&temp, millis.to_string()).is_ok() && fs::rename(&temp, &path).is_err()
                {
                    let _ = fs::remove_file(&temp);
                }
            }
        }
    }

    /// Adds to the spool's running totals of evicted events and corrupt files.
    pub(crate) fn record_dropped(&self, evicted: u64, corrupt: u64) {
        if evicted == 0 && corrupt == 0 {
            return;
        }
        let (e, c) = read_dropped(&self.dir);
        let path = self.dir.join(DROPPED);
        let temp = self.dir.join(format!("{DROPPED}.{}", self.instance));
        let text = format!("{} {}", e + evicted, c + corrupt);
        if fs::write(&temp, text).is_ok() && fs::rename(&temp, &path).is_err() {
            let _ = fs::remove_file(&temp);
        }
    }

    /// When the endpoint may next be tried, if a backoff from an earlier run is in force.
    pub(crate) fn next_attempt(&self) -> Option<SystemTime> {
        read_next_attempt(&self.dir)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Unlocked by closing; the file goes so that claimers need not clean it up.
        let _ = fs::remove_file(self.dir.join(format!("{}.{LOCK_EXT}", self.instance)));
    }
}

/// Creates `dir` (and its parents) readable by its owner only.
fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates (or truncates) a file readable and writable by its owner only.
pub(crate) fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn read_dropped(dir: &Path) -> (u64, u64) {
    let text = fs::read_to_string(dir.join(DROPPED)).unwrap_or_default();
    let mut numbers = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn read_next_attempt(dir: &Path) -> Option<SystemTime> {
    let text = fs::read_to_string(dir.join(NEXT_ATTEMPT)).ok()?;
    let millis: u64 = text.trim().parse().ok()?;
    let at = UNIX_EPOCH + Duration::from_millis(millis);
    (at > SystemTime::now()).then_some(at)
}

struct SegmentFile {
    name: String,
    path: PathBuf,
    bytes: u64,
    events: u32,
    written: Option<SystemTime>,
}

fn segment_files(dir: &Path) -> Vec<SegmentFile> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let stem = name.strip_suffix(&format!(".{SEGMENT_EXT}"))?;
            let bytes = entry.metadata().ok()?.len();
            let id = stem
                .split('-')
                .next()
                .and_then(|id| Uuid::try_parse(id).ok());
            let written = id.and_then(|id| id.get_timestamp()).map(|ts| {
                let (secs, nanos) = ts.to_unix();
                UNIX_EPOCH + Duration::new(secs, nanos)
            });
            let events = read_header(&entry.path()).map(|h| h.count).unwrap_or(0);
            Some(SegmentFile {
                name: name.clone(),
                path: entry.path(),
                bytes,
                events,
                written,
            })
        })
        .collect()
}

/// What is waiting in the spool folder `dir` (for status displays; changes nothing).
pub fn summarize(dir: &Path) -> SpoolSummary {
    let files = segment_files(dir);
    let (evicted, corrupt) = read_dropped(dir);
    SpoolSummary {
        evicted,
        corrupt,
        segments: files.len() as u64,
        events: files.iter().map(|f| u64::from(f.events)).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        oldest: files.iter().filter_map(|f| f.written).min(),
        next_attempt: read_next_attempt(dir),
    }
}

/// What waits in every project's spool under `root` (`<cache>/<app>/spool`), added up.
pub fn summarize_all(root: &Path) -> SpoolSummary {
    let mut total = SpoolSummary::default();
    let Ok(entries) = fs::read_dir(root) else {
        return total;
    };
    for entry in entries.flatten().filter(|e| e.path().is_dir()) {
        let one = summarize(&entry.path());
        total.segments += one.segments;
        total.events += one.events;
        total.bytes += one.bytes;
        total.evicted += one.evicted;
        total.corrupt += one.corrupt;
        total.oldest = [total.oldest, one.oldest].into_iter().flatten().min();
        total.next_attempt = [total.next_attempt, one.next_attempt]
            .into_iter()
            .flatten()
            .max();
    }
    total
}

struct Header {
    len: u32,
    crc: u32,
    count: u32,
}

fn parse_header(bytes: &[u8]) -> io::Result<Header> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if bytes.len() < HEADER {
        return Err(invalid("truncated header"));
    }
    if &bytes[..4] != MAGIC {
        return Err(invalid("not a spool segment"));
    }
    if bytes[4] != VERSION || bytes[5..8] != [0, 0, 0] {
        return Err(invalid("unknown spool version"));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let header = Header {
        len: word(8),
        crc: word(12),
        count: word(16),
    };
    if header.len > MAX_SEGMENT_BYTES {
        return Err(invalid("implausible length"));
    }
    Ok(header)
}

fn read_header(path: &Path) -> Option<Header> {
    let mut buf = [0u8; HEADER];
    File::open(path).ok()?.read_exact(&mut buf).ok()?;
    parse_header(&buf).ok()
}

pub(crate) fn encode_segment(events: &[EncodedEvent]) -> Vec<u8> {
    let payload_len: usize = events.iter().map(|e| 20 + e.json.len()).sum();
    let mut payload = Vec::with_capacity(payload_len);
    for event in events {
        payload.extend_from_slice(event.uuid.as_bytes());
        payload.extend_from_slice(&(event.json.len() as u32).to_le_bytes());
        payload.extend_from_slice(&event.json);
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub(crate) fn decode_segment(bytes: &[u8]) -> io::Result<Vec<EncodedEvent>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let header = parse_header(bytes)?;
    let payload = &bytes[HEADER..];
    if payload.len() != header.len as usize {
        return Err(invalid("length mismatch (torn write)"));
    }
    if crc32fast::hash(payload) != header.crc {
        return Err(invalid("checksum mismatch"));
    }
    let mut events = Vec::with_capacity(header.count.min(10_000) as usize);
    let mut rest = payload;
    while !rest.is_empty() {
        if rest.len() < 20 {
            return Err(invalid("truncated event"));
        }
        let uuid = Uuid::from_slice(&rest[..16]).map_err(|_| invalid("bad uuid"))?;
        let len = u32::from_le_bytes([rest[16], rest[17], rest[18], rest[19]]) as usize;
        rest = &rest[20..];
        if rest.len() < len {
            return Err(invalid("truncated event"));
        }
        events.push(EncodedEvent {
            uuid,
            json: rest[..len].to_vec(),
        });
        rest = &rest[len..];
    }
    if events.len() != header.count as usize {
        return Err(invalid("event count mismatch"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: u8) -> Vec<EncodedEvent> {
        (0..n)
            .map(|i| EncodedEvent {
                uuid: Uuid::now_v7(),
                json: format!("{{\"event\":\"e{i}\"}}").into_bytes(),
            })
            .collect()
    }

    #[test]
    fn segments_round_trip() {
        let original = events(5);
        let decoded = decode_segment(&encode_segment(&original)).unwrap();
        assert_eq!(decoded.len(), 5);
        for (a, b) in original.iter().zip(&decoded) {
            assert_eq!(a.uuid, b.uuid);
            assert_eq!(a.json, b.json);
        }
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_detected() {
        let bytes = encode_segment(&events(3));
        for cut in 0..bytes.len() {
            assert!(decode_segment(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x40;
            assert!(decode_segment(&corrupt).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_segment_is_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Spool::open(dir.path(), DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let path = spool.write(&events(2)).unwrap();
        assert_eq!(spool.read(&path).unwrap().len(), 2);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        let summary = summarize(dir.path());
        assert_eq!((summary.segments, summary.events), (1, 2));
        assert!(summary.oldest.is_some());
    }

    #[test]
    fn orphans_are_claimed_once_and_live_owners_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || Spool::open(dir.path(), DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let alive = open();
        alive.write(&events(1)).unwrap();
        let gone = open();
        gone.write(&events(2)).unwrap();
        gone.write(&events(3)).unwrap();
        drop(gone);
        let a = open();
        let b = open();
        let first = a.claim_orphans();
        let second = b.claim_orphans();
        assert_eq!(first.segments.len(), 2, "the dead owner's two segments");
        assert_eq!(second.segments.len(), 0, "already claimed");
        let counts: Vec<usize> = first.segments.iter().map(|s| s.events.len()).collect();
        assert_eq!(counts, [2, 3], "oldest first");
    }

    #[test]
    fn corrupt_orphans_are_removed_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Spool::open(dir.path(), DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let name = format!("{}-deadbeef.seg", Uuid::now_v7().simple());
        fs::write(dir.path().join(&name), b"PTSP\x01garbage").unwrap();
        fs::write(dir.path().join("0-deadbeef.tmp"), b"half").unwrap();
        let claimed = spool.claim_orphans();
        assert_eq!(claimed.corrupt, 1);
        assert!(claimed.segments.is_empty());
        let left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 1, "only our lock file remains: {left:?}");
    }

    #[test]
    fn size_bound_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 300, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let first = spool.write(&events(3)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let second = spool.write(&events(3)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let third = spool.write(&events(3)).unwrap();
        let (removed, evicted) = spool.enforce_bounds();
        assert!(removed.contains(&first));
        assert!(!removed.contains(&third));
        assert!(evicted >= 3);
        let _ = second;
        assert!(summarize(dir.path()).bytes <= 300);
    }

    #[test]
    fn age_bound_evicts_segments_older_than_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            DEFAULT_SPOOL_MAX_BYTES,
            Duration::from_secs(3600),
        )
        .unwrap();
        let fresh = spool.write(&events(1)).unwrap();
        // A segment written two hours ago (its name carries its time, as uuid v7).
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let since = two_hours_ago.duration_since(UNIX_EPOCH).unwrap();
        let old_id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            since.as_secs(),
            since.subsec_nanos(),
        ));
        let old = dir.path().join(format!("{}-deadbeef.seg", old_id.simple()));
        fs::write(&old, encode_segment(&events(4))).unwrap();
        let (removed, evicted) = spool.enforce_bounds();
        assert_eq!(removed, vec![old.clone()]);
        assert_eq!(evicted, 4);
        assert!(fresh.exists() && !old.exists());
    }

    #[test]
    fn backoff_is_remembered_across_handles() {
        let dir = tempfile::tempdir().unwrap();
        let spool =
            Spool::open(dir.path(), DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let at = SystemTime::now() + Duration::from_secs(60);
        spool.set_next_attempt(Some(at));
        let other =
            Spool::open(dir.path(), DEFAULT_SPOOL_MAX_BYTES, DEFAULT_SPOOL_MAX_AGE).unwrap();
        let seen = other.next_attempt().unwrap();
        assert!(
            seen.duration_since(at).unwrap_or_else(|e| e.duration()) < Duration::from_millis(2)
        );
        spool.set_next_attempt(None);
        assert!(other.next_attempt().is_none());
    }
}
