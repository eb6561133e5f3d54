//! The thread that owns the connection: it runs closures sent over a channel, one at a time, and
//! answers each through a oneshot channel, so no SQLite call (and no busy-wait on a file lock held by
//! another process) ever runs on an async runtime's thread.

use rusqlite::Connection;
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

/// The sending half; the thread exits when every sender is gone and the queue is drained, or on
/// [`Worker::close`].
pub(crate) struct Worker {
    sender: mpsc::Sender<Message>,
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
                    // The opener stopped waiting (its future was dropped): nobody can send calls.
                    if ready.send(Ok(())).is_ok() {
                        serve(connection, receiver);
                    }
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            })
            .map_err(SqliteError::Io)?;
        opened.await.map_err(|_| SqliteError::WorkerGone)??;
        Ok(Self { sender })
    }

    /// Runs `job` on the connection's thread and returns its answer.
    ///
    /// If the caller's future is dropped after the job was queued, the job still runs to its end (a
    /// write may commit); that is why a write's `Err` or cancellation means "unknown".
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, SqliteError> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            // The caller stopped waiting; the work is done either way.
            let _ = answer.send(job(connection));
        });
        self.sender
            .send(Message::Run(job))
            .await
            .map_err(|_| SqliteError::WorkerGone)?;
        answered.await.map_err(|_| SqliteError::WorkerGone)?
    }

    /// Runs every call queued before this one, then closes the connection (which checkpoints the
    /// write-ahead log into the database file) and stops the thread.
    pub(crate) async fn close(self) -> Result<(), SqliteError> {
        let (answer, answered) = oneshot::channel();
        self.sender
            .send(Message::Close(answer))
            .await
            .map_err(|_| SqliteError::WorkerGone)?;
        Ok(answered.await.map_err(|_| SqliteError::WorkerGone)??)
    }
}

fn serve(mut connection: Connection, mut receiver: mpsc::Receiver<Message>) {
    // `blocking_recv` is right here: this is a plain thread, outside any runtime.
    while let Some(message) = receiver.blocking_recv() {
        match message {
            Message::Run(job) => {
                job(&mut connection);
                // Every job commits or rolls back its own transaction (a rusqlite `Transaction` rolls
                // back when dropped). Should a rollback itself have failed, end the transaction here
                // so the next job does not start inside it.
                if !connection.is_autocommit() {
                    let _ = connection.execute_batch("ROLLBACK");
                }
            }
            Message::Close(answer) => {
                let closed = connection.close().map_err(|(_, error)| error);
                let _ = answer.send(closed);
                return;
            }
        }
    }
    // Every `SqliteStore` is gone: dropping the connection closes it.
}
