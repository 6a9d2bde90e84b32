//! The caller's side of a multiplexed stream (`KV.Session` from a client,
//! `Replica.Pipe` from a coordinator): requests sent and awaiting their
//! replies, by id. The task reading the stream hands each reply to
//! [`Outstanding::complete`]; when the stream ends, [`Outstanding::close`]
//! fails every waiting request at once with why, and no new one may wait.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{oneshot, watch};

/// What a waiting request receives: its reply or the error that ended it.
pub type Answer<A, E> = Result<A, E>;

/// Requests awaiting replies on one stream.
#[derive(Debug)]
pub struct Outstanding<A, E> {
    /// `None` once the stream has ended.
    table: Mutex<Option<Table<A, E>>>,
    /// Why the stream ended, once it has.
    ended: watch::Sender<Option<E>>,
}

#[derive(Debug)]
struct Table<A, E> {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Answer<A, E>>>,
}

impl<A, E: Clone> Default for Outstanding<A, E> {
    fn default() -> Self {
        Self {
            table: Mutex::new(Some(Table {
                next_id: 0,
                waiting: HashMap::new(),
            })),
            ended: watch::Sender::new(None),
        }
    }
}

impl<A, E: Clone> Outstanding<A, E> {
    fn lock(&self) -> MutexGuard<'_, Option<Table<A, E>>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the stream is still open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.lock().is_some()
    }

    /// Requests waiting now (0 once the stream has ended).
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.lock().as_ref().map_or(0, |t| t.waiting.len())
    }

    /// Ids handed out so far, `None` once the stream has ended.
    #[must_use]
    pub fn issued(&self) -> Option<u64> {
        self.lock().as_ref().map(|t| t.next_id)
    }

    /// A fresh id for a request and where its answer will arrive; `None`
    /// once the stream has ended. The caller should hold a [`Forget`] for
    /// the id while it waits.
    #[must_use]
    pub fn register(&self) -> Option<(u64, oneshot::Receiver<Answer<A, E>>)> {
        let mut guard = self.lock();
        let table = guard.as_mut()?;
        let id = table.next_id;
        table.next_id += 1;
        let (done, answer) = oneshot::channel();
        table.waiting.insert(id, done);
        Some((id, answer))
    }

    /// Delivers the answer to request `id`, if it still waits (a caller
    /// that gave up has forgotten it; a peer's unknown id is ignored).
    pub fn complete(&self, id: u64, answer: Answer<A, E>) {
        let waiter = self.lock().as_mut().and_then(|t| t.waiting.remove(&id));
        if let Some(done) = waiter {
            let _ = done.send(answer);
        }
    }

    /// Stops waiting for request `id`.
    pub fn forget(&self, id: u64) {
        if let Some(table) = self.lock().as_mut() {
            table.waiting.remove(&id);
        }
    }

    /// Why the stream ended, if it has and said why.
    #[must_use]
    pub fn why(&self) -> Option<E> {
        self.ended.borrow().clone()
    }

    /// Why the stream ended, waiting for [`Outstanding::close`] (the
    /// stream's request queue can close a moment before the task driving
    /// it records why). `None`: it can no longer say.
    pub async fn ended(&self) -> Option<E> {
        let mut ended = self.ended.subscribe();
        match ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        }
    }

    /// Ends the stream: every waiting request fails with `why`.
    pub fn close(&self, why: &E) {
        self.ended.send_replace(Some(why.clone()));
        let table = self.lock().take();
        for (_, done) in table.into_iter().flat_map(|t| t.waiting) {
            let _ = done.send(Err(why.clone()));
        }
    }
}

/// Forgets a request when its caller stops waiting, however that happens
/// (answered, timed out, or the caller's future dropped), so the table
/// never keeps what nobody awaits.
#[derive(Debug)]
pub struct Forget<'a, A, E: Clone> {
    outstanding: &'a Outstanding<A, E>,
    id: u64,
}

impl<'a, A, E: Clone> Forget<'a, A, E> {
    /// Forgets request `id` of `outstanding` on drop.
    #[must_use]
    pub fn new(outstanding: &'a Outstanding<A, E>, id: u64) -> Self {
        Self { outstanding, id }
    }
}

impl<A, E: Clone> Drop for Forget<'_, A, E> {
    fn drop(&mut self) {
        self.outstanding.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_their_request_and_closing_fails_the_rest() {
        let calls: Outstanding<&str, String> = Outstanding::default();
        let (a, mut answer_a) = calls.register().expect("open");
        let (b, mut answer_b) = calls.register().expect("open");
        let (c, _answer_c) = calls.register().expect("open");
        assert_ne!(a, b);
        calls.complete(b, Ok("for b"));
        calls.complete(999, Ok("nobody asked"));
        assert_eq!(answer_b.try_recv().expect("answered"), Ok("for b"));
        drop(Forget::new(&calls, c));
        assert_eq!(calls.waiting(), 1, "c forgotten, a still waits");
        assert_eq!(calls.issued(), Some(3));

        calls.close(&"gone".to_owned());
        assert_eq!(answer_a.try_recv().expect("failed"), Err("gone".to_owned()));
        assert!(!calls.is_open());
        assert!(
            calls.register().is_none(),
            "no request waits on an ended stream"
        );
        assert_eq!(calls.why().as_deref(), Some("gone"));
    }
}
