//! The webhook inbox on disk: an append-only log of accepted deliveries in
//! segment files, made durable with one `fdatasync` per group of
//! deliveries.
//!
//! Webhook ingress answers `2xx` only once a delivery is durable, and under
//! load thousands arrive per second: a key-value store pays for each one an
//! insert, a removal once processed and its log and tree maintenance. Here a
//! delivery costs one framed write into a buffer, its share of one write and
//! one `fdatasync`, and a few bytes of a "done" frame once processed (not
//! synced: a done frame lost in a crash only means the delivery is processed
//! again, which versions make harmless).
//!
//! Layout: `{dir}/{n:020}.seg`, `n` increasing. A frame is `len: u32 BE`,
//! `crc32(payload): u32 BE`, `payload`; the payload starts with its kind:
//! `1` an entry (`seq: u64 BE` then [`InboxEntry`]'s compact form), `2` done
//! (`seq: u64 BE` each). Reading stops at the first frame that is cut short
//! or fails its checksum (a write torn by a crash, never acknowledged).
//! Segments are written in order and removed oldest first once every entry
//! in them is done, so a done frame is never lost while its entry lives.
//!
//! In memory: the segment being written, the buffer not yet written, and per
//! live segment its number of pending entries (a few integers).

use super::InboxEntry;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed once it holds this many bytes.
const SEGMENT_BYTES: u64 = 16 << 20;

const ENTRY: u8 = 1;
const DONE: u8 = 2;

/// The inbox log of one state directory.
pub struct InboxLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Held while buffered frames are written and synced, so that writes
    /// reach the files in the order they were appended.
    io: Mutex<Io>,
}

struct Inner {
    /// The next sequence number.
    next_seq: u64,
    /// The segment appends go to, and the bytes appended to it so far.
    segment: u64,
    segment_bytes: u64,
    /// Frames appended but not yet written, by segment.
    buf: Vec<(u64, Vec<u8>)>,
    /// Live segments: first sequence number → (segment, pending entries).
    live: BTreeMap<u64, (u64, usize)>,
}

struct Io {
    /// The open segment file and its number.
    file: Option<(u64, File)>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The valid frames' payloads of a segment, up to the first damaged one.
fn read_frames(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
        let Some(payload) = rest.get(8..8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc || payload.is_empty() {
            break;
        }
        out.push(payload);
        rest = &rest[8 + len..];
    }
    out
}

/// What the segments in a directory hold.
struct Scan {
    /// The segments, oldest first.
    segments: Vec<u64>,
    /// The entries not marked done, by sequence number with their segment.
    entries: BTreeMap<u64, (u64, InboxEntry)>,
    /// The highest sequence number seen.
    last_seq: u64,
    /// Every entry's (tenant, flow, webhook ID, accepted at), done or not.
    ids: Vec<AcceptedId>,
}

/// A delivery's identity as the ID memory keeps it: (tenant, flow,
/// `webhook-id`, accepted at in ms).
pub type AcceptedId = (String, String, String, u64);

fn scan(dir: &Path) -> anyhow::Result<Scan> {
    let mut segments: Vec<u64> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the inbox {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    segments.sort_unstable();
    let mut entries: BTreeMap<u64, (u64, InboxEntry)> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut last_seq = 0;
    for &n in &segments {
        let path = segment_path(dir, n);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for payload in read_frames(&bytes) {
            let (kind, body) = payload.split_first().expect("not empty");
            match *kind {
                ENTRY if body.len() >= 8 => {
                    let seq = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
                    let entry = InboxEntry::decode(seq, &body[8..])
                        .with_context(|| format!("{}: entry {seq}", path.display()))?;
                    last_seq = last_seq.max(seq);
                    ids.push((
                        entry.tenant.clone(),
                        entry.flow.clone(),
                        entry.webhook_id.clone(),
                        entry.received_ms,
                    ));
                    entries.insert(seq, (n, entry));
                }
                DONE => {
                    for s in body.chunks_exact(8) {
                        entries.remove(&u64::from_be_bytes(s.try_into().expect("8 bytes")));
                    }
                }
                _ => break,
            }
        }
    }
    Ok(Scan {
        segments,
        entries,
        last_seq,
        ids,
    })
}

impl InboxLog {
    /// Opens (creating) the log in `dir` and returns it with the pending
    /// deliveries, in order of arrival, and the identity of every delivery
    /// its segments still hold, processed or not (to rebuild the memory of
    /// webhook IDs from). `first_seq` is the lowest sequence number a new
    /// delivery may get (numbers keep increasing across restarts, and
    /// across the store the log replaced).
    pub fn open(
        dir: &Path,
        first_seq: u64,
    ) -> anyhow::Result<(Self, Vec<InboxEntry>, Vec<AcceptedId>)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the inbox {}", dir.display()))?;
        let Scan {
            segments,
            entries,
            last_seq,
            ids,
        } = scan(dir)?;
        let next_seq = first_seq.max(last_seq + 1);
        // New appends go to a new segment: a torn tail of the last one is
        // never written after.
        let segment = segments.last().map_or(0, |n| n + 1);
        let mut live: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        let mut per_segment: BTreeMap<u64, (u64, usize)> = BTreeMap::new();
        for (&seq, (n, _)) in &entries {
            let e = per_segment.entry(*n).or_insert((seq, 0));
            e.1 += 1;
        }
        for (n, (first, count)) in per_segment {
            live.insert(first, (n, count));
        }
        // Segments before the oldest one with something pending are done
        // with (later ones may hold done frames of live entries: kept).
        let oldest_live = live.values().map(|(n, _)| *n).min().unwrap_or(u64::MAX);
        for &n in segments.iter().filter(|&&n| n < oldest_live) {
            let _ = std::fs::remove_file(segment_path(dir, n));
        }
        let log = InboxLog {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                next_seq,
                segment,
                segment_bytes: 0,
                buf: Vec::new(),
                live,
            }),
            io: Mutex::new(Io { file: None }),
        };
        Ok((log, entries.into_values().map(|(_, e)| e).collect(), ids))
    }

    /// Appends deliveries (in memory until [`InboxLog::sync`]); returns
    /// their sequence numbers.
    pub fn append(&self, deliveries: &[&InboxEntry]) -> Vec<u64> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut seqs = Vec::with_capacity(deliveries.len());
        let mut bytes = Vec::new();
        let mut payload = Vec::new();
        for d in deliveries {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            payload.clear();
            payload.push(ENTRY);
            payload.extend_from_slice(&seq.to_be_bytes());
            payload.extend_from_slice(&d.encode());
            frame(&mut bytes, &payload);
            seqs.push(seq);
        }
        if let Some(&first) = seqs.first() {
            let segment = inner.segment;
            match inner.live.iter_mut().next_back() {
                Some((_, (n, count))) if *n == segment => *count += seqs.len(),
                _ => {
                    inner.live.insert(first, (segment, seqs.len()));
                }
            }
            self.push_bytes(&mut inner, bytes);
        }
        seqs
    }

    fn push_bytes(&self, inner: &mut Inner, bytes: Vec<u8>) {
        inner.segment_bytes += bytes.len() as u64;
        let segment = inner.segment;
        match inner.buf.last_mut() {
            Some((n, b)) if *n == segment => b.extend_from_slice(&bytes),
            _ => inner.buf.push((segment, bytes)),
        }
        if inner.segment_bytes >= SEGMENT_BYTES {
            inner.segment += 1;
            inner.segment_bytes = 0;
        }
    }

    /// Writes everything appended so far and syncs it to disk.
    pub fn sync(&self) -> anyhow::Result<()> {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let buf = std::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).buf);
        self.write(&mut io, buf, true)
    }

    fn write(&self, io: &mut Io, buf: Vec<(u64, Vec<u8>)>, sync: bool) -> anyhow::Result<()> {
        for (n, bytes) in buf {
            if io.file.as_ref().is_none_or(|(m, _)| *m != n) {
                if let Some((_, f)) = io.file.take() {
                    f.sync_data().context("syncing an inbox segment")?;
                }
                let path = segment_path(&self.dir, n);
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                // The new file's name must be durable too.
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .with_context(|| format!("syncing {}", self.dir.display()))?;
                io.file = Some((n, f));
            }
            let (_, f) = io.file.as_mut().expect("opened above");
            f.write_all(&bytes).context("writing the inbox")?;
        }
        if sync && let Some((_, f)) = &io.file {
            f.sync_data().context("syncing the inbox")?;
        }
        Ok(())
    }

    /// Marks deliveries processed and removes the oldest segments that
    /// hold nothing pending. Not synced: see the module documentation.
    /// `before_removing` runs before any segment is removed (and none is if
    /// it fails): the IDs of the deliveries in them must be durable
    /// elsewhere first.
    pub fn done(
        &self,
        seqs: &[u64],
        before_removing: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut payload = Vec::with_capacity(1 + seqs.len() * 8);
        payload.push(DONE);
        for &s in seqs {
            payload.extend_from_slice(&s.to_be_bytes());
            if let Some((_, (_, count))) = inner.live.range_mut(..=s).next_back() {
                *count = count.saturating_sub(1);
            }
        }
        let mut bytes = Vec::new();
        frame(&mut bytes, &payload);
        self.push_bytes(&mut inner, bytes);
        let current = inner.segment;
        let mut removable = Vec::new();
        while let Some((&first, &(n, count))) = inner.live.iter().next() {
            if count > 0 || n >= current {
                break;
            }
            inner.live.remove(&first);
            removable.push(n);
        }
        let buf = std::mem::take(&mut inner.buf);
        drop(inner);
        self.write(&mut io, buf, false)?;
        if !removable.is_empty() {
            before_removing()?;
        }
        for n in removable {
            if io.file.as_ref().is_some_and(|(m, _)| *m == n) {
                io.file = None;
            }
            let _ = std::fs::remove_file(segment_path(&self.dir, n));
        }
        Ok(())
    }

    /// The deliveries appended and not yet done, in order of arrival,
    /// read back from the segments (what was appended but not yet synced is
    /// written first).
    pub fn pending(&self) -> anyhow::Result<Vec<InboxEntry>> {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        let buf = std::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).buf);
        self.write(&mut io, buf, false)?;
        Ok(scan(&self.dir)?
            .entries
            .into_values()
            .map(|(_, e)| e)
            .collect())
    }

    /// Deliveries appended and not yet done.
    #[cfg(test)]
    pub fn pending_count(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .values()
            .map(|(_, c)| c)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> InboxEntry {
        InboxEntry {
            seq: 0,
            tenant: "t".into(),
            flow: "f".into(),
            webhook_id: id.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            received_ms: 7,
        }
    }

    #[test]
    fn synced_entries_survive_a_reopen_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pending, _) = InboxLog::open(dir.path(), 1).unwrap();
        assert!(pending.is_empty());
        let (a, b, c) = (entry("a"), entry("b"), entry("c"));
        let seqs = log.append(&[&a, &b, &c]);
        assert_eq!(seqs, [1, 2, 3]);
        log.sync().unwrap();
        log.done(&[2], || Ok(())).unwrap();
        drop(log);
        let (log, pending, _) = InboxLog::open(dir.path(), 1).unwrap();
        let ids: Vec<(&str, u64)> = pending
            .iter()
            .map(|e| (e.webhook_id.as_str(), e.seq))
            .collect();
        assert_eq!(ids, [("a", 1), ("c", 3)]);
        assert_eq!(pending[0].body, a.body);
        assert_eq!(log.append(&[&entry("d")]), [4], "numbers keep increasing");
    }

    #[test]
    fn a_torn_tail_is_ignored_and_never_written_after() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _, _) = InboxLog::open(dir.path(), 1).unwrap();
        log.append(&[&entry("a"), &entry("b")]);
        log.sync().unwrap();
        drop(log);
        // A crash in the middle of writing the next frame.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        let whole = bytes.len();
        bytes.truncate(whole - 5);
        std::fs::write(&seg, &bytes).unwrap();
        let (log, pending, _) = InboxLog::open(dir.path(), 1).unwrap();
        assert_eq!(pending.len(), 1, "the torn entry was never acknowledged");
        log.append(&[&entry("c")]);
        log.sync().unwrap();
        drop(log);
        let (_, pending, _) = InboxLog::open(dir.path(), 1).unwrap();
        let ids: Vec<&str> = pending.iter().map(|e| e.webhook_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
    }

    #[test]
    fn segments_with_nothing_pending_are_removed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _, _) = InboxLog::open(dir.path(), 1).unwrap();
        let big = InboxEntry {
            body: vec![b'x'; 1 << 20],
            ..entry("big")
        };
        let mut seqs = Vec::new();
        for _ in 0..40 {
            seqs.extend(log.append(&[&big]));
            log.sync().unwrap();
        }
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files() >= 3, "40 MiB span several segments");
        // Done out of order: the first segment stays while it holds one.
        log.done(&seqs[1..20], || Ok(())).unwrap();
        assert!(segment_path(dir.path(), 0).exists());
        log.done(&seqs[..1], || Ok(())).unwrap();
        assert!(!segment_path(dir.path(), 0).exists());
        log.done(&seqs[20..], || Ok(())).unwrap();
        assert_eq!(log.pending_count(), 0);
        assert_eq!(files(), 1, "only the segment being written is left");
        drop(log);
        let (_, pending, _) = InboxLog::open(dir.path(), 1).unwrap();
        assert!(pending.is_empty());
    }
}
