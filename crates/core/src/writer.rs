//! Group commit for reports: sessions hand validated reports to one writer task, which stores
//! whatever has queued up in a single transaction and then tells each waiter. Under load a batch
//! holds hundreds of reports for one fsync; when idle a report is written alone, at once.
//!
//! A QoS 1/2 report is acknowledged only after its batch committed; a QoS 0 report does not wait.

use rampart_store::{ReportRow, Store};
use tokio::sync::{mpsc, oneshot};

/// Most reports in one transaction.
const MAX_BATCH: usize = 1024;
/// Reports waiting for the writer before senders are made to wait (back-pressure).
const QUEUE: usize = 16 * 1024;

struct Job {
    row: ReportRow,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

pub(crate) struct ReportWriter {
    tx: mpsc::Sender<Job>,
}

impl ReportWriter {
    /// Start the writer task on the current runtime.
    pub(crate) fn start(store: Store) -> ReportWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        ReportWriter { tx }
    }

    /// Queue a report; with `durable`, wait until it is committed.
    pub(crate) async fn write(&self, row: ReportRow, durable: bool) -> Result<(), String> {
        let (done, wait) = if durable {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.tx
            .send(Job { row, done })
            .await
            .map_err(|_| "report writer stopped".to_owned())?;
        match wait {
            Some(rx) => rx.await.map_err(|_| "report writer stopped".to_owned())?,
            None => Ok(()),
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut rows = Vec::with_capacity(64);
    let mut waiters = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            rows.push(job.row);
            waiters.extend(job.done);
            if rows.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let n = rows.len();
        let res = store.record_reports(&rows).await.map_err(|e| {
            tracing::error!(error = %e, reports = n, "report batch failed");
            "storage error".to_owned()
        });
        metrics::histogram!("rampart_report_batch_size").record(n as f64);
        for w in waiters.drain(..) {
            let _ = w.send(res.clone());
        }
        rows.clear();
        if rows.capacity() > 4 * MAX_BATCH {
            rows.shrink_to(64);
        }
    }
}
