//! Device credential lookups at CONNECT, batched.
//!
//! Each lookup used to be its own query, and a query is a hand-off to a database worker thread
//! and back: in a connect storm (6,000 authenticated connects a second on two cores) the database
//! threads spent more time being switched in than reading. Here CONNECTs that arrive together
//! share one query: a lookup joins a queue, and each of at most [`IN_FLIGHT`] queries takes
//! everything queued (up to [`MAX_BATCH`] ids) when it starts. A lone CONNECT still costs one
//! query and waits for nothing else; there is no cache, so a device deleted or re-keyed is seen
//! at its next CONNECT as before.

use rampart_store::{DeviceCredentials, Store};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most ids in one query.
pub(crate) const MAX_BATCH: usize = 256;
/// Most queries at once (the rest of the queue waits and joins the next one).
pub(crate) const IN_FLIGHT: usize = 2;

type Reply = Result<Option<DeviceCredentials>, String>;

struct Lookup {
    did: String,
    reply: oneshot::Sender<Reply>,
}

/// Handle to the lookup task (started on first use, inside the runtime).
pub(crate) struct CredentialLookups {
    tx: mpsc::UnboundedSender<Lookup>,
}

impl CredentialLookups {
    pub(crate) fn start(store: Store) -> CredentialLookups {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        CredentialLookups { tx }
    }

    /// The device's product and sealed secret, `None` when there is no such device.
    pub(crate) async fn get(&self, did: &str) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Lookup {
                did: did.to_owned(),
                reply,
            })
            .map_err(|_| "credential lookups have stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "credential lookup dropped".to_owned())?
    }
}

/// Take what is queued, up to [`MAX_BATCH`], whenever a query slot is free; ends when every
/// handle is gone.
async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            answer(&store, batch).await;
            drop(permit);
        });
    }
}

/// One query for the whole batch; every lookup gets its answer (or the query's error).
async fn answer(store: &Store, batch: Vec<Lookup>) {
    let mut dids: Vec<&str> = batch.iter().map(|l| l.did.as_str()).collect();
    dids.sort_unstable();
    dids.dedup();
    match store.device_credentials_many(&dids).await {
        Ok(rows) => {
            // A device that reconnects twice in one batch is looked up once and answered twice.
            let found: HashMap<String, DeviceCredentials> = rows.into_iter().collect();
            for l in batch {
                let creds = found.get(&l.did).cloned();
                let _ = l.reply.send(Ok(creds));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for l in batch {
                let _ = l.reply.send(Err(msg.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with(dir: &std::path::Path, n: usize) -> Store {
        let dids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
        crate::test_support::store_with_devices(dir, "{}", &dids, |i| format!("s{i}").into_bytes())
            .await
    }

    #[tokio::test]
    async fn lookups_made_together_get_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 600).await;
        let lookups = Arc::new(CredentialLookups::start(store));
        // More than two batches' worth at once, with repeats and unknown ids among them.
        let mut tasks = Vec::new();
        for i in 0..700usize {
            let l = lookups.clone();
            tasks.push(tokio::spawn(async move {
                let did = match i {
                    600..=649 => format!("d{}", i - 600),
                    650.. => format!("nobody{i}"),
                    _ => format!("d{i}"),
                };
                (i, l.get(&did).await.unwrap())
            }));
        }
        for t in tasks {
            let (i, got) = t.await.unwrap();
            match i {
                650.. => assert_eq!(got, None, "lookup {i}"),
                _ => {
                    let n = if i >= 600 { i - 600 } else { i };
                    let c = got.unwrap_or_else(|| panic!("lookup {i} found nothing"));
                    assert_eq!(c.product_key, "pk");
                    assert_eq!(c.secret_enc, format!("s{n}").into_bytes(), "lookup {i}");
                }
            }
        }
        // A lone lookup after the storm.
        assert_eq!(
            lookups.get("d5").await.unwrap().unwrap().secret_enc,
            b"s5".to_vec()
        );
    }
}
