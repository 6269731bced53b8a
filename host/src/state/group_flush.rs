//! Group commit for the sled backend: the threads that each need their
//! writes durable before they return (a page commit, a run record, a
//! connector's kv writes before its next request leaves) share one
//! `sled::Db::flush` instead of each sealing and syncing a log buffer of
//! its own.
//!
//! One caller at a time flushes, for every caller that asked before it
//! began; those that ask while it runs wait for it and then share the next
//! one. A caller's writes are done before it asks, and the flush that
//! answers it begins after it asked, so the promise is sled's own: what
//! was written before `flush` is durable when it returns. Only sled's
//! database goes through here; the webhook inbox log syncs on its own.
//!
//! Imports nothing of weft's.

use std::sync::{Condvar, Mutex};

/// The flushes of one sled database, grouped.
pub struct GroupFlush {
    flush: Box<dyn Fn() -> sled::Result<()> + Send + Sync>,
    round: Mutex<Round>,
    ended: Condvar,
}

/// Callers count from 1: `asked` is the last caller's number, `durable`
/// the last caller a finished flush answered.
#[derive(Default)]
struct Round {
    asked: u64,
    durable: u64,
    flushing: bool,
}

impl GroupFlush {
    /// Groups the flushes of `db`.
    pub fn new(db: sled::Db) -> Self {
        Self::over(move || db.flush().map(drop))
    }

    /// Groups the calls of `flush` (tests give one they can hold).
    fn over(flush: impl Fn() -> sled::Result<()> + Send + Sync + 'static) -> Self {
        GroupFlush {
            flush: Box::new(flush),
            round: Mutex::default(),
            ended: Condvar::new(),
        }
    }

    /// Returns once everything written to the database before the call is
    /// durable. A failed flush fails the caller that ran it; the callers
    /// it would have answered try again themselves.
    pub fn flush(&self) -> sled::Result<()> {
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        round.asked += 1;
        let mine = round.asked;
        loop {
            if round.durable >= mine {
                return Ok(());
            }
            if round.flushing {
                round = self.ended.wait(round).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            round.flushing = true;
            let upto = round.asked;
            drop(round);
            let flushed = (self.flush)();
            round = self.round.lock().unwrap_or_else(|p| p.into_inner());
            round.flushing = false;
            if flushed.is_ok() {
                round.durable = round.durable.max(upto);
            }
            self.ended.notify_all();
            flushed?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// A flush that reports each start on `started` and ends (with `Ok` or
    /// the error it is given) when `finish` says so.
    fn held() -> (
        Arc<GroupFlush>,
        mpsc::Receiver<usize>,
        mpsc::Sender<sled::Result<()>>,
    ) {
        let (started_tx, started) = mpsc::channel();
        let (finish, finish_rx) = mpsc::channel::<sled::Result<()>>();
        let (started_tx, finish_rx) = (Mutex::new(started_tx), Mutex::new(finish_rx));
        let calls = AtomicUsize::new(0);
        let group = GroupFlush::over(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            started_tx.lock().unwrap().send(n).unwrap();
            finish_rx.lock().unwrap().recv().unwrap()
        });
        (Arc::new(group), started, finish)
    }

    fn call(group: &Arc<GroupFlush>) -> mpsc::Receiver<sled::Result<()>> {
        let (tx, rx) = mpsc::channel();
        let group = group.clone();
        std::thread::spawn(move || tx.send(group.flush()).unwrap());
        rx
    }

    /// Callers that ask while a flush runs are not answered by it (it may
    /// have begun before their writes): they wait, and one flush after it
    /// answers them all.
    #[test]
    fn callers_during_a_flush_share_the_next_one() {
        let (group, started, finish) = held();
        let a = call(&group);
        assert_eq!(started.recv().unwrap(), 1);
        let (b, c) = (call(&group), call(&group));
        // Both have asked once the round counts them.
        while group.round.lock().unwrap().asked < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        finish.send(Ok(())).unwrap();
        assert!(a.recv().unwrap().is_ok());
        assert!(
            b.recv_timeout(Duration::from_millis(50)).is_err(),
            "answered by a flush that began before it asked"
        );
        assert_eq!(started.recv().unwrap(), 2, "one more flush, for both");
        finish.send(Ok(())).unwrap();
        assert!(b.recv().unwrap().is_ok());
        assert!(c.recv().unwrap().is_ok());
        assert!(
            started.recv_timeout(Duration::from_millis(50)).is_err(),
            "two flushes answered three callers"
        );
    }

    /// A failed flush fails the caller that ran it; a caller that waited
    /// for it flushes again itself.
    #[test]
    fn a_failed_flush_fails_its_caller_and_the_waiting_try_again() {
        let (group, started, finish) = held();
        let a = call(&group);
        assert_eq!(started.recv().unwrap(), 1);
        let b = call(&group);
        while group.round.lock().unwrap().asked < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        finish
            .send(Err(sled::Error::ReportableBug("disk gone".into())))
            .unwrap();
        assert!(a.recv().unwrap().is_err());
        assert_eq!(started.recv().unwrap(), 2);
        finish.send(Ok(())).unwrap();
        assert!(b.recv().unwrap().is_ok());
    }

    /// Over a real database: many threads writing and flushing at once each
    /// get their answer (none is left waiting, every caller was counted
    /// durable), and every write is there after a reopen.
    #[test]
    fn concurrent_writers_over_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let group = Arc::new(GroupFlush::new(db.clone()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (db, group) = (db.clone(), group.clone());
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        db.insert(format!("{t}-{i}"), &i.to_be_bytes()).unwrap();
                        group.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let round = group.round.lock().unwrap();
        assert_eq!((round.asked, round.durable), (400, 400));
        drop(round);
        drop((db, group));
        assert_eq!(sled::open(dir.path()).unwrap().len(), 400);
    }
}
