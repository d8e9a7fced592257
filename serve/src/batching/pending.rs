//! One admitted request while its sequences are spread over batches: collects each sequence's vector into
//! its slot and answers the caller once all are in, or at the first failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::BatchError;

/// What a request gets back: its vectors in input order, and where its time went.
#[derive(Debug)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// From admission until the last of its batches started.
    pub queue_time: Duration,
    /// From the start of its first batch to the end of its last.
    pub compute_time: Duration,
}

pub(super) type Reply = oneshot::Sender<Result<Embedded, BatchError>>;

pub(super) struct Pending {
    pub deadline: Option<Instant>,
    pub admitted: Instant,
    /// The span of the request that submitted it; the `batch` spans that carry its sequences link to it.
    pub span: tracing::Span,
    inner: Mutex<Inner>,
}

struct Inner {
    vectors: Vec<Vec<f32>>,
    remaining: usize,
    reply: Option<Reply>,
    last_start: Option<Instant>,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
    /// Open until a lane takes its first sequence.
    queue_span: Option<tracing::Span>,
}

impl Pending {
    pub fn new(sequences: usize, deadline: Option<Instant>, reply: Reply) -> Self {
        Pending {
            deadline,
            admitted: Instant::now(),
            span: tracing::Span::current(),
            inner: Mutex::new(Inner {
                queue_span: Some(tracing::info_span!("queue", sequences = sequences as i64)),
                vectors: vec![Vec::new(); sequences],
                remaining: sequences,
                reply: Some(reply),
                last_start: None,
                first_start: None,
                last_end: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A lane took one of its sequences: its wait in the queue is over.
    pub fn dequeued(&self) {
        self.lock().queue_span.take();
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// The caller went away, or the request already failed: its remaining work is wasted.
    pub fn abandoned(&self) -> bool {
        self.lock().reply.as_ref().is_none_or(|r| r.is_closed())
    }

    /// Stores one sequence's vector; answers the caller when it was the last.
    pub fn complete(&self, slot: usize, vector: Vec<f32>, started: Instant, ended: Instant) {
        let mut inner = self.lock();
        if inner.reply.is_none() {
            return;
        }
        if let Some(v) = inner.vectors.get_mut(slot) {
            *v = vector;
        }
        inner.first_start = Some(inner.first_start.map_or(started, |s| s.min(started)));
        inner.last_start = Some(inner.last_start.map_or(started, |s| s.max(started)));
        inner.last_end = Some(inner.last_end.map_or(ended, |e| e.max(ended)));
        inner.remaining = inner.remaining.saturating_sub(1);
        if inner.remaining == 0
            && let (Some(reply), Some(first), Some(last), Some(end)) =
                (inner.reply.take(), inner.first_start, inner.last_start, inner.last_end)
        {
            let vectors = std::mem::take(&mut inner.vectors);
            let _ = reply.send(Ok(Embedded {
                vectors,
                queue_time: last.saturating_duration_since(self.admitted),
                compute_time: end.saturating_duration_since(first),
            }));
        }
    }

    /// Answers the caller with `error` (once); later results for this request are ignored.
    pub fn fail(&self, error: BatchError) {
        if let Some(reply) = self.lock().reply.take() {
            let _ = reply.send(Err(error));
        }
    }
}
