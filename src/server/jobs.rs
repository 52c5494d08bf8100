//! The bounded job pool: CPU work (decode, upscale, encode) never runs on the async workers.
//!
//! - **Admission.** A request takes a [`Ticket`] before its body is read. At most `max_concurrent_jobs +
//!   max_queue` tickets exist; past that, [`JobPool::try_admit`] fails at once and the caller answers 503. The
//!   ticket bounds the bodies held in memory as well as the jobs.
//! - **Slots.** [`Ticket::run`] waits for one of `max_concurrent_jobs` semaphore permits, then runs the job with
//!   `tokio::task::spawn_blocking`. The permit and the ticket move into the blocking closure, so a slot stays taken
//!   for exactly as long as the CPU work lasts, even if the request is gone.
//! - **Cancellation.** Dropping the `run` future while it waits for a permit means the job never starts. Dropping
//!   it while the job runs sets the job's [`CancelFlag`], which the job polls between bands and stops on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::metrics::Metrics;

/// Shared between the pool and its tickets.
#[derive(Debug)]
struct Inner {
    /// Job slots: a permit is held while a job runs on the blocking pool.
    slots: Arc<Semaphore>,
    /// Tickets out (queued + running); never above `capacity`.
    admitted: AtomicUsize,
    /// `max_concurrent_jobs + max_queue`.
    capacity: usize,
    metrics: Metrics,
}

/// The job pool of one app instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobPool {
    inner: Arc<Inner>,
}

/// The pool is full: the request must be shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a job gave no result.
#[derive(Debug)]
pub enum JobError {
    /// The job panicked (a bug); the payload is logged by the caller.
    Panicked(String),
}

impl JobPool {
    pub fn new(max_concurrent_jobs: usize, max_queue: usize, metrics: Metrics) -> JobPool {
        let slots = max_concurrent_jobs.max(1);
        JobPool {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(slots)),
                admitted: AtomicUsize::new(0),
                capacity: slots.saturating_add(max_queue),
                metrics,
            }),
        }
    }

    /// Takes a place in the pool, or fails at once when running + queued jobs are at capacity.
    pub fn try_admit(&self) -> Result<Ticket, Full> {
        let inner = &self.inner;
        inner
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.capacity).then_some(n + 1))
            .map_err(|_| {
                inner.metrics.requests_shed.increment(1);
                Full
            })?;
        inner.metrics.jobs_queued.increment(1.0);
        Ok(Ticket { inner: self.inner.clone(), running: false })
    }
}

/// A place in the pool (queued until [`Ticket::run`] gets a slot). Dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    running: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.running {
            self.inner.metrics.jobs_running.decrement(1.0);
        } else {
            self.inner.metrics.jobs_queued.decrement(1.0);
        }
        self.inner.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a running job to stop; set when the request that waits for the job is dropped.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Armed while a future waits or a job runs; on drop (the request went away) it counts the cancellation and, for
/// a running job, raises the flag.
struct DropGuard<'a> {
    metrics: &'a Metrics,
    cancel: Option<CancelFlag>,
    armed: bool,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.cancel {
            Some(flag) => {
                flag.cancel();
                self.metrics.cancelled_running.increment(1);
            }
            None => self.metrics.cancelled_queued.increment(1),
        }
    }
}

impl Ticket {
    /// Waits for a job slot, then runs `job` on the blocking pool and returns its result.
    ///
    /// Drop this future to abandon the job: while queued, nothing runs; while running, `job`'s [`CancelFlag`]
    /// is raised and the slot is freed when `job` returns.
    pub async fn run<T, F>(mut self, job: F) -> Result<T, JobError>
    where
        F: FnOnce(&CancelFlag) -> T + Send + 'static,
        T: Send + 'static,
    {
        let metrics = self.inner.metrics.clone();
        let mut waiting = DropGuard { metrics: &metrics, cancel: None, armed: true };
        let permit = self.inner.slots.clone().acquire_owned().await.expect("the job semaphore is never closed");
        waiting.armed = false;
        drop(waiting);

        metrics.jobs_queued.decrement(1.0);
        metrics.jobs_running.increment(1.0);
        self.running = true;
        let cancel = CancelFlag::default();
        let mut running = DropGuard { metrics: &metrics, cancel: Some(cancel.clone()), armed: true };
        let handle = tokio::task::spawn_blocking(move || {
            // Both are released only when the CPU work is over, whether or not anyone still waits for it.
            let _permit = permit;
            let _ticket = self;
            job(&cancel)
        });
        let result = handle.await;
        running.armed = false;
        result.map_err(|e| match e.try_into_panic() {
            Ok(payload) => JobError::Panicked(panic_message(payload.as_ref())),
            Err(e) => JobError::Panicked(e.to_string()),
        })
    }
}

/// The message of a panic payload, if it is a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admission_is_bounded_by_slots_plus_queue() {
        let pool = JobPool::new(1, 1, Metrics::new());
        let a = pool.try_admit().unwrap();
        let b = pool.try_admit().unwrap();
        assert_eq!(pool.try_admit().unwrap_err(), Full);
        drop(a);
        let _c = pool.try_admit().unwrap();
        drop(b);
    }

    #[tokio::test]
    async fn a_job_runs_and_returns_its_result() {
        let pool = JobPool::new(1, 0, Metrics::new());
        let t = pool.try_admit().unwrap();
        assert_eq!(t.run(|_| 6 * 7).await.unwrap(), 42);
        // The place is free again once the job is done.
        drop(pool.try_admit().unwrap());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_crash() {
        let pool = JobPool::new(1, 0, Metrics::new());
        let err = pool.try_admit().unwrap().run(|_| -> u32 { panic!("boom") }).await.unwrap_err();
        let JobError::Panicked(msg) = err;
        assert_eq!(msg, "boom");
    }

    #[tokio::test]
    async fn a_queued_job_that_is_dropped_never_runs() {
        let pool = JobPool::new(1, 1, Metrics::new());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let first = pool.try_admit().unwrap();
        let running = tokio::spawn(first.run(move |_| {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        }));
        started_rx.await.unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let queued = tokio::spawn(pool.try_admit().unwrap().run(move |_| ran2.store(true, Ordering::SeqCst)));
        tokio::task::yield_now().await;
        queued.abort();
        let _ = queued.await;
        release_tx.send(()).unwrap();
        running.await.unwrap().unwrap();
        // Both places are free, and the queued job never ran.
        let _a = pool.try_admit().unwrap();
        let _b = pool.try_admit().unwrap();
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn dropping_a_running_job_raises_its_cancel_flag() {
        let pool = JobPool::new(1, 0, Metrics::new());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<bool>();
        let fut = pool.try_admit().unwrap().run(move |cancel| {
            let _ = started_tx.send(());
            while !cancel.is_cancelled() {
                std::thread::yield_now();
            }
            let _ = done_tx.send(true);
        });
        let task = tokio::spawn(fut);
        started_rx.await.unwrap();
        task.abort();
        assert!(done_rx.await.unwrap());
    }
}
