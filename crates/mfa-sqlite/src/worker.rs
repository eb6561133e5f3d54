//! The connection and the thread that serves it: closures run on the connection one at a time, and
//! no SQLite call (and no busy-wait on a file lock held by another process) ever runs where it
//! would hold up an async runtime's other tasks.
//!
//! A call takes one of two paths:
//!
//! - **Inline**, when the caller runs on a worker of a multi-thread tokio runtime, the connection
//!   is free and no call is queued for it: the call runs right there inside
//!   [`tokio::task::block_in_place`], which hands the worker's other tasks to another thread first.
//!   That hand-over happens beside the call, not in its way: the call itself never waits for a
//!   parked thread to wake up and answer, which is most of what a small call would otherwise cost.
//! - **Queued**, otherwise (another call holds the connection, a current-thread runtime, another
//!   executor): the closure goes over a channel to the thread that serves the connection, and the
//!   answer comes back on a oneshot channel. Under load every call but the running one queues here,
//!   so waiting callers hold no thread, and while any call is queued no newcomer goes inline ahead
//!   of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::Connection;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};

use crate::SqliteError;

/// How many calls may wait for the thread before callers wait to send (backpressure, not blocking:
/// sending is an `await`).
const QUEUE: usize = 256;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    Close(oneshot::Sender<Result<(), rusqlite::Error>>),
}

/// The connection (`None` once closed), shared by the thread and inline callers.
type Shared = Arc<Mutex<Option<Connection>>>;

/// The sending half and the connection; the thread exits when every sender is gone and the queue
/// is drained, or on [`Worker::close`].
pub(crate) struct Worker {
    sender: mpsc::Sender<Message>,
    connection: Shared,
    /// Calls sent to the thread and not yet run: inline calls wait their turn behind them.
    queued: Arc<AtomicUsize>,
}

impl Worker {
    /// Starts the thread, which opens the connection with `open` and reports how that went before
    /// taking calls.
    pub(crate) async fn start(
        open: impl FnOnce() -> Result<Connection, SqliteError> + Send + 'static,
    ) -> Result<Self, SqliteError> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (ready, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("mfa-sqlite".into())
            .spawn(move || match open() {
                Ok(connection) => {
                    let connection: Shared = Arc::new(Mutex::new(Some(connection)));
                    // The opener stopped waiting (its future was dropped): nobody can send calls.
                    if ready.send(Ok(Arc::clone(&connection))).is_ok() {
                        serve(&connection, receiver);
                    }
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            })
            .map_err(SqliteError::Io)?;
        let connection = opened.await.map_err(|_| SqliteError::WorkerGone)??;
        Ok(Self {
            sender,
            connection,
            queued: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `job` on the connection and returns its answer.
    ///
    /// If the caller's future is dropped after the job was queued, the job still runs to its end (a
    /// write may commit); that is why a write's `Err` or cancellation means "unknown".
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, SqliteError> {
        let inline = self.queued.load(Ordering::Acquire) == 0
            && Handle::try_current()
                .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
        if inline {
            match self.connection.try_lock() {
                Ok(guard) => return tokio::task::block_in_place(|| run_on(guard, job)),
                // A call panicked while it held the connection; `run_on` ends what it left open.
                Err(TryLockError::Poisoned(poisoned)) => {
                    return tokio::task::block_in_place(|| run_on(poisoned.into_inner(), job));
                }
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let (answer, answered) = oneshot::channel();
        // Counted from now until the job has run, or is dropped unrun (never sent, or the thread
        // gone): whichever way, the count comes down.
        let waiting = Waiting::new(&self.queued);
        let job: Job = Box::new(move |connection| {
            let answered = job(connection);
            drop(waiting);
            // The caller stopped waiting; the work is done either way.
            let _ = answer.send(answered);
        });
        self.sender
            .send(Message::Run(job))
            .await
            .map_err(|_| SqliteError::WorkerGone)?;
        answered.await.map_err(|_| SqliteError::WorkerGone)?
    }

    /// Runs every call queued before this one, then closes the connection (which checkpoints the
    /// write-ahead log into the database file) and stops the thread. Later calls fail with
    /// [`SqliteError::WorkerGone`].
    pub(crate) async fn close(self) -> Result<(), SqliteError> {
        let (answer, answered) = oneshot::channel();
        self.sender
            .send(Message::Close(answer))
            .await
            .map_err(|_| SqliteError::WorkerGone)?;
        Ok(answered.await.map_err(|_| SqliteError::WorkerGone)??)
    }
}

/// One call waiting in the queue, counted while this lives.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(queued: &Arc<AtomicUsize>) -> Self {
        queued.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(queued))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `job` on the connection `guard` holds, or fails if it was closed.
fn run_on<T>(
    mut guard: MutexGuard<'_, Option<Connection>>,
    job: impl FnOnce(&mut Connection) -> Result<T, SqliteError>,
) -> Result<T, SqliteError> {
    let connection = guard.as_mut().ok_or(SqliteError::WorkerGone)?;
    // A job that panicked (its rollback included) may have left its transaction open.
    if !connection.is_autocommit() {
        connection.execute_batch("ROLLBACK")?;
    }
    let answer = job(connection);
    // Every job commits or rolls back its own transaction (a rusqlite `Transaction` rolls back when
    // dropped, a panic included). Should a rollback itself have failed, end the transaction here so
    // the next job does not start inside it.
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    answer
}

fn lock(connection: &Shared) -> MutexGuard<'_, Option<Connection>> {
    connection.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve(connection: &Shared, mut receiver: mpsc::Receiver<Message>) {
    // `blocking_recv` is right here: this is a plain thread, outside any runtime.
    while let Some(message) = receiver.blocking_recv() {
        match message {
            Message::Run(job) => {
                // A job that panics (a bug) fails its own caller, whose answer channel it drops,
                // and not every call after it: the thread goes on, and `run_on` ends whatever
                // transaction the job left open before the next one starts.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // Closed already: the job (and its answer channel) is dropped unrun, and its
                    // caller learns that the thread is gone.
                    run_on(lock(connection), |connection| {
                        job(connection);
                        Ok(())
                    })
                }));
            }
            Message::Close(answer) => {
                let closed = lock(connection)
                    .take()
                    .map_or(Ok(()), |c| c.close().map_err(|(_, error)| error));
                let _ = answer.send(closed);
                return;
            }
        }
    }
    // Every `SqliteStore` is gone: dropping the connection closes it.
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn worker() -> Worker {
        Worker::start(|| crate::schema::open(None, &crate::SqliteOptions::default()))
            .await
            .unwrap()
    }

    fn count(connection: &mut Connection) -> Result<i64, SqliteError> {
        Ok(connection.query_row("SELECT count(*) FROM orgs", [], |row| row.get(0))?)
    }

    /// A job that panics (a bug) in the middle of a transaction fails its own caller only: the
    /// connection's thread goes on, the transaction is rolled back, and the next call works.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_fails_only_its_own_call() {
        let worker = worker().await;
        let panicked = worker
            .call(|connection| -> Result<(), SqliteError> {
                connection.execute_batch(
                    "BEGIN IMMEDIATE; INSERT INTO orgs (org, version, policy) VALUES ('a', 1, x'00');",
                )?;
                panic!("a bug in a job");
            })
            .await;
        assert!(
            matches!(panicked, Err(SqliteError::WorkerGone)),
            "{panicked:?}"
        );
        // Queued again (a current-thread runtime never runs calls inline): served, and the
        // panicked job's insert is gone.
        assert_eq!(worker.call(count).await.unwrap(), 0);
        assert_eq!(worker.queued.load(Ordering::Acquire), 0);
        worker.close().await.unwrap();
    }

    /// On a multi-thread runtime, a call finding the connection free runs inline; one finding
    /// calls queued waits its turn behind them. Either way the answers are the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inline_and_queued_calls_share_one_connection() {
        let worker = Arc::new(worker().await);
        let writers: Vec<_> = (0..50)
            .map(|i| {
                let worker = Arc::clone(&worker);
                tokio::spawn(async move {
                    worker
                        .call(move |connection| {
                            connection.execute(
                                "INSERT INTO orgs (org, version, policy) VALUES (?1, 1, x'00')",
                                [format!("org{i}")],
                            )?;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(worker.call(count).await.unwrap(), 50);
        assert_eq!(worker.queued.load(Ordering::Acquire), 0);
    }
}
