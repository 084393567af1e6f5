//! Several nodes serving one fleet over NATS: which node holds which device (presence), commands
//! and their acks between nodes, session takeover across nodes, and the CONNECT replay guard
//! shared by every node.
//!
//! What lives here is soft state that a node can lose without losing anything a device or a
//! caller was told had happened: everything acknowledged is in the store (PostgreSQL in a
//! cluster). JetStream key-value buckets hold presence (`{prefix}_presence`), node liveness
//! (`{prefix}_nodes`, entries that expire unless renewed) and the last accepted CONNECT timestamp
//! per device (`{prefix}_connects`); plain NATS request/reply carries commands, acks and kicks on
//! `{prefix}.node.{node_id}.{cmd,ack,kick,revoke}`.
//!
//! Nothing here is reached on a single node: the bus stays in process unless the server joins a
//! cluster (`Core::join_cluster`).

use crate::device::bus::{Delivery, Message};
use crate::{Core, Error, Result};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt as _;
use rampart_proto::command::Ack;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `nats://host:port` of a NATS server with JetStream.
    pub nats_url: String,
    /// This node's name in the cluster: `[A-Za-z0-9_-]`, unique among running nodes.
    pub node_id: String,
    /// The region this node serves (reported, not yet acted on).
    pub region: String,
    /// Prefix of every subject and bucket name of this cluster (`[A-Za-z0-9_-]`): clusters (or
    /// tests) sharing one NATS server stay apart by it.
    pub subject_prefix: String,
    /// How long a node counts as alive after its last heartbeat; its devices count as offline
    /// once it has passed. Heartbeats go out every third of it.
    pub liveness: Duration,
    /// Replicas of the cluster's JetStream buckets (1 on a single NATS server).
    pub replicas: usize,
    /// How long a forwarded command's origin is remembered for its ack.
    pub command_timeout: Duration,
}

/// Whether a name may be a subject token or a bucket name part.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A node name unique to this process: `node-` and 8 random hex digits.
pub fn generated_node_id() -> String {
    format!("node-{}", crate::secret::random_hex(4))
}

/// A node's link to its cluster.
pub struct Cluster {
    node: String,
    /// Changes at every start: a node restarted under the same name does not inherit the
    /// presence entries of its previous life.
    incarnation: String,
    region: String,
    prefix: String,
    client: async_nats::Client,
    presence: kv::Store,
    nodes: kv::Store,
    connects: kv::Store,
    liveness: Duration,
    command_timeout: Duration,
    /// Commands forwarded to this node's devices by other nodes: (did, command id) → the node
    /// waiting for the ack, and when it was forwarded.
    forwarded: Mutex<HashMap<(String, String), (String, Instant)>>,
}

/// A command forwarded to the node holding the device.
#[derive(Serialize, Deserialize)]
struct Forward {
    did: String,
    id: String,
    origin: String,
    topic: String,
    payload: String,
    expires_at: Option<i64>,
}

/// An ack on its way back to the node that sent the command.
#[derive(Serialize, Deserialize)]
struct AckBack {
    did: String,
    ack: Ack,
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("cluster: {what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Connect to NATS and open (creating when absent) the cluster's buckets.
    /// `connect_ttl`: how long a device's last CONNECT timestamp is kept in the shared replay
    /// guard (longer than the clock window, so a signed password stays refused while fresh).
    pub async fn connect(cfg: &ClusterConfig, connect_ttl: Duration) -> Result<Cluster> {
        for (what, v) in [
            ("cluster.node_id", &cfg.node_id),
            ("cluster.subject_prefix", &cfg.subject_prefix),
        ] {
            if !valid_name(v) {
                return Err(Error::Invalid(format!(
                    "{what} `{v}`: must be 1-64 characters of [A-Za-z0-9_-]"
                )));
            }
        }
        let client = async_nats::ConnectOptions::new()
            .name(format!("rampart {}", cfg.node_id))
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(cfg.nats_url.as_str())
            .await
            .map_err(|e| nats_err("connecting to NATS", e))?;
        // The first connect is retried in the background; a start waits for it a while, then
        // gives up with the reason.
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.connection_state() != async_nats::connection::State::Connected {
            if Instant::now() > deadline {
                return Err(Error::Internal(format!(
                    "cluster: NATS at {} did not answer within 10 s",
                    cfg.nats_url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let js = async_nats::jetstream::new(client.clone());
        // The bucket's stream is made here, in the key-value layout (`KV_{bucket}` on
        // `$KV.{bucket}.>`): the client's own bucket creation first reads account fields that
        // NATS servers before 2.10 do not send, and fails there.
        let open = |name: &str, max_age: Duration| {
            let js = js.clone();
            let bucket = format!("{}_{name}", cfg.subject_prefix);
            let stream = async_nats::jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: cfg.replicas.max(1),
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            };
            async move {
                if let Ok(s) = js.get_key_value(&bucket).await {
                    return Ok(s);
                }
                // Another node may create it at the same moment: either way it exists after.
                let created = js.get_or_create_stream(stream).await;
                js.get_key_value(&bucket).await.map_err(|e| match created {
                    Err(c) => nats_err(&format!("creating bucket {bucket}"), c),
                    Ok(_) => nats_err(&format!("opening bucket {bucket}"), e),
                })
            }
        };
        let presence = open("presence", Duration::ZERO).await?;
        let nodes = open("nodes", cfg.liveness).await?;
        let connects = open("connects", connect_ttl).await?;
        Ok(Cluster {
            node: cfg.node_id.clone(),
            incarnation: crate::secret::random_hex(8),
            region: cfg.region.clone(),
            prefix: cfg.subject_prefix.clone(),
            client,
            presence,
            nodes,
            connects,
            liveness: cfg.liveness,
            command_timeout: cfg.command_timeout,
            forwarded: Mutex::new(HashMap::new()),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// A round trip to the NATS server (the readiness check).
    pub async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.client.flush())
            .await
            .map_err(|_| Error::Internal("cluster: NATS did not answer within 2 s".into()))?
            .map_err(|e| nats_err("flush", e))
    }

    fn subject(&self, node: &str, what: &str) -> String {
        format!("{}.node.{node}.{what}", self.prefix)
    }

    fn holder_value(&self) -> Bytes {
        Bytes::from(format!("{} {}", self.node, self.incarnation))
    }

    /// Renew this node's liveness entry. True when it had lapsed (expired, or never written):
    /// the other nodes may have counted this node as dead and swept its devices meanwhile.
    async fn heartbeat(&self) -> Result<bool> {
        let before = self
            .nodes
            .get(&self.node)
            .await
            .map_err(|e| nats_err("heartbeat", e))?;
        self.nodes
            .put(&self.node, Bytes::from(self.incarnation.clone()))
            .await
            .map_err(|e| nats_err("heartbeat", e))?;
        Ok(before.is_none_or(|b| b.as_ref() != self.incarnation.as_bytes()))
    }

    /// Record that this node holds `did` only if nobody does: for sessions whose entries were
    /// swept while this node was counted as dead. False when the device has an entry (its
    /// own, or a newer session's on another node, which must not be taken back).
    async fn reclaim(&self, did: &str) -> Result<bool> {
        if !valid_name(did) {
            return Ok(false);
        }
        let entry = self
            .presence
            .entry(did)
            .await
            .map_err(|e| nats_err("reading presence", e))?;
        let written = match entry {
            None => self.presence.create(did, self.holder_value()).await.is_ok(),
            // A delete marker left by the sweep or a release.
            Some(e) if e.operation != kv::Operation::Put => self
                .presence
                .update(did, self.holder_value(), e.revision)
                .await
                .is_ok(),
            Some(_) => false,
        };
        Ok(written)
    }

    /// Whether `node` in its life `incarnation` is alive (its heartbeat has not expired).
    async fn alive(&self, node: &str, incarnation: &str) -> Result<bool> {
        if node == self.node {
            return Ok(incarnation == self.incarnation);
        }
        if !valid_name(node) {
            return Ok(false);
        }
        let v = self
            .nodes
            .get(node)
            .await
            .map_err(|e| nats_err("reading node liveness", e))?;
        Ok(v.is_some_and(|v| v.as_ref() == incarnation.as_bytes()))
    }

    /// The node holding `did`'s session now, if that node is alive.
    pub async fn holder(&self, did: &str) -> Result<Option<String>> {
        if !valid_name(did) {
            return Ok(None);
        }
        let Some(entry) = self
            .presence
            .entry(did)
            .await
            .map_err(|e| nats_err("reading presence", e))?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let value = String::from_utf8_lossy(&entry.value).into_owned();
        let Some((node, incarnation)) = value.split_once(' ') else {
            return Ok(None);
        };
        Ok(self
            .alive(node, incarnation)
            .await?
            .then(|| node.to_owned()))
    }

    /// Record that this node holds `did`; a live session on another node is told to close.
    pub async fn claim(&self, did: &str) -> Result<()> {
        if !valid_name(did) {
            return Ok(());
        }
        let mine = self.holder_value();
        for _ in 0..5 {
            let entry = self
                .presence
                .entry(did)
                .await
                .map_err(|e| nats_err("reading presence", e))?;
            let (written, before) = match &entry {
                Some(e) => {
                    let before = (e.operation == kv::Operation::Put)
                        .then(|| String::from_utf8_lossy(&e.value).into_owned());
                    (
                        self.presence
                            .update(did, mine.clone(), e.revision)
                            .await
                            .is_ok(),
                        before,
                    )
                }
                None => (self.presence.create(did, mine.clone()).await.is_ok(), None),
            };
            if !written {
                continue;
            }
            if let Some((node, _)) = before.as_deref().and_then(|b| b.split_once(' ')) {
                if node != self.node && valid_name(node) {
                    self.client
                        .publish(self.subject(node, "kick"), Bytes::from(did.to_owned()))
                        .await
                        .map_err(|e| nats_err("sending a takeover", e))?;
                }
            }
            return Ok(());
        }
        Err(Error::Internal(format!(
            "cluster: presence of {did} kept changing"
        )))
    }

    /// Forget that this node holds `did`, unless another node has taken it over since. True
    /// when the device has no session elsewhere (so it is offline).
    pub async fn release(&self, did: &str) -> Result<bool> {
        if !valid_name(did) {
            return Ok(true);
        }
        let mine = self.holder_value();
        let Some(entry) = self
            .presence
            .entry(did)
            .await
            .map_err(|e| nats_err("reading presence", e))?
        else {
            return Ok(true);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(true);
        }
        if entry.value != mine {
            // Another node's now, unless that node is dead.
            return Ok(self.holder(did).await?.is_none());
        }
        match self
            .presence
            .delete_expect_revision(did, Some(entry.revision))
            .await
        {
            Ok(()) => Ok(true),
            // Claimed by another node in between.
            Err(_) => Ok(self.holder(did).await?.is_none()),
        }
    }

    /// Accept a signed CONNECT's `ts` for `did` on every node: true when it is newer than any
    /// accepted anywhere (compare-and-set on the device's entry).
    pub async fn accept_connect(&self, did: &str, ts: i64) -> Result<bool> {
        if !valid_name(did) {
            return Ok(false);
        }
        let value = Bytes::from(ts.to_string());
        for _ in 0..5 {
            let entry = self
                .connects
                .entry(did)
                .await
                .map_err(|e| nats_err("reading the replay guard", e))?;
            let written = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    let last: i64 = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(i64::MAX);
                    if ts <= last {
                        return Ok(false);
                    }
                    self.connects
                        .update(did, value.clone(), e.revision)
                        .await
                        .is_ok()
                }
                Some(e) => self
                    .connects
                    .update(did, value.clone(), e.revision)
                    .await
                    .is_ok(),
                None => self.connects.create(did, value.clone()).await.is_ok(),
            };
            if written {
                return Ok(true);
            }
        }
        // Racing CONNECTs of one device: refusing is the safe answer (the device retries).
        Ok(false)
    }

    /// Hand a command to the node holding `did`. `NotDelivered` when no live node holds it.
    pub async fn forward(&self, did: &str, id: &str, msg: &Message) -> Result<Delivery> {
        use base64::Engine as _;
        let Some(node) = self.holder(did).await? else {
            return Ok(Delivery::NotDelivered);
        };
        if node == self.node {
            return Ok(Delivery::NotDelivered);
        }
        let body = Forward {
            did: did.to_owned(),
            id: id.to_owned(),
            origin: self.node.clone(),
            topic: msg.topic.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&msg.payload),
            expires_at: msg.expires_at,
        };
        let body = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?;
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            self.client
                .request(self.subject(&node, "cmd"), Bytes::from(body)),
        )
        .await
        .map_err(|_| Error::Internal(format!("cluster: node {node} did not answer")))?
        .map_err(|e| nats_err("forwarding a command", e))?;
        Ok(match answer.payload.as_ref() {
            b"sent" => Delivery::Sent,
            b"queued" => Delivery::Queued,
            _ => Delivery::NotDelivered,
        })
    }

    /// Send `ack` to the node that forwarded its command here; false when none did.
    pub async fn ack_back(&self, did: &str, ack: &Ack) -> bool {
        let origin = lock(&self.forwarded).remove(&(did.to_owned(), ack.id.clone()));
        let Some((origin, _)) = origin else {
            return false;
        };
        let body = AckBack {
            did: did.to_owned(),
            ack: ack.clone(),
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return false;
        };
        match self
            .client
            .publish(self.subject(&origin, "ack"), Bytes::from(body))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, did, origin, "cluster: ack not sent back");
                false
            }
        }
    }

    /// Tell the node holding `did`'s session, if another, to close it: its credentials were
    /// revoked or the device disabled.
    pub async fn revoke_elsewhere(&self, did: &str) {
        match self.holder(did).await {
            Ok(Some(node)) if node != self.node => {
                if let Err(e) = self
                    .client
                    .publish(self.subject(&node, "revoke"), Bytes::from(did.to_owned()))
                    .await
                {
                    tracing::warn!(error = %e, did, node, "cluster: revocation not sent");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, did, "cluster: revocation not sent"),
        }
    }

    /// The nodes whose liveness entry has not expired.
    async fn live_nodes(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut keys = self
            .nodes
            .keys()
            .await
            .map_err(|e| nats_err("listing nodes", e))?;
        let mut out = std::collections::BTreeSet::new();
        while let Some(k) = keys.next().await {
            out.insert(k.map_err(|e| nats_err("listing nodes", e))?);
        }
        Ok(out)
    }

    /// The devices whose presence entry names a node that is not alive, each with the entry's
    /// revision.
    async fn orphans(&self) -> Result<Vec<(String, u64)>> {
        let mut keys = self
            .presence
            .keys()
            .await
            .map_err(|e| nats_err("listing presence", e))?;
        let mut dids = Vec::new();
        while let Some(k) = keys.next().await {
            dids.push(k.map_err(|e| nats_err("listing presence", e))?);
        }
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut out = Vec::new();
        for did in dids {
            let Some(entry) = self
                .presence
                .entry(did.as_str())
                .await
                .map_err(|e| nats_err("reading presence", e))?
            else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let value = String::from_utf8_lossy(&entry.value).into_owned();
            let live = match alive.get(&value) {
                Some(l) => *l,
                None => {
                    let l = match value.split_once(' ') {
                        Some((node, inc)) => self.alive(node, inc).await?,
                        None => false,
                    };
                    alive.insert(value, l);
                    l
                }
            };
            if !live {
                out.push((did, entry.revision));
            }
        }
        Ok(out)
    }

    /// Leave the cluster: this node's devices count as offline at once.
    pub async fn leave(&self) {
        if let Err(e) = self.nodes.delete(&self.node).await {
            tracing::warn!(error = %e, "cluster: liveness entry not removed");
        }
        let _ = self.client.flush().await;
    }
}

impl Core {
    /// Join the cluster described by `cfg`: connect to NATS, announce this node, and serve the
    /// other nodes' commands, acks and takeovers for the devices held here. Every later
    /// presence change, command and CONNECT goes through the cluster.
    pub async fn join_cluster(&self, cfg: &ClusterConfig) -> Result<()> {
        // Four clock windows: a timestamp is refused long after it stopped being fresh.
        let window = u64::try_from(self.config().clock_window_ms.max(1000)).unwrap_or(600_000);
        let connect_ttl = Duration::from_millis(window.saturating_mul(4));
        let cluster = Arc::new(Cluster::connect(cfg, connect_ttl).await?);
        cluster.heartbeat().await?;
        let cmds = cluster
            .client
            .subscribe(cluster.subject(&cluster.node, "cmd"))
            .await
            .map_err(|e| nats_err("subscribing", e))?;
        let acks = cluster
            .client
            .subscribe(cluster.subject(&cluster.node, "ack"))
            .await
            .map_err(|e| nats_err("subscribing", e))?;
        let kicks = cluster
            .client
            .subscribe(cluster.subject(&cluster.node, "kick"))
            .await
            .map_err(|e| nats_err("subscribing", e))?;
        let revokes = cluster
            .client
            .subscribe(cluster.subject(&cluster.node, "revoke"))
            .await
            .map_err(|e| nats_err("subscribing", e))?;
        if !self.bus().join(cluster.clone()) {
            return Err(Error::Conflict("this node is in a cluster already".into()));
        }
        let weak = Arc::downgrade(&self.inner);
        // Devices left online by nodes that died before this one started (a whole cluster
        // restarted, say).
        self.sweep_dead_nodes(&cluster).await;
        tokio::spawn(heartbeats(Arc::downgrade(&cluster), weak.clone()));
        tokio::spawn(serve_commands(weak.clone(), cmds));
        tokio::spawn(serve_acks(weak.clone(), acks));
        tokio::spawn(serve_kicks(weak.clone(), kicks, false));
        tokio::spawn(serve_kicks(weak, revokes, true));
        tracing::info!(
            node = cluster.node_id(),
            region = cluster.region(),
            prefix = cluster.prefix,
            "joined the cluster"
        );
        Ok(())
    }

    /// Claim again the sessions of this node whose presence entries were swept while its
    /// heartbeats had lapsed, storing them online again. Returns how many.
    async fn reclaim_sessions(&self, cluster: &Cluster) -> usize {
        let mut n = 0;
        for did in self.bus().live_dids() {
            match cluster.reclaim(&did).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, did, "cluster: session not claimed again");
                    continue;
                }
            }
            let ts = self.now_ms();
            let row = rampart_store::PresenceRow {
                did: did.clone(),
                online: true,
                ts,
            };
            let event = crate::device::bus::DeviceEvent::Online {
                did: did.clone(),
                ts,
            };
            let res = match self.writer().presence(row, event).await {
                Ok(receipt) => receipt.committed().await,
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => n += 1,
                Err(e) => tracing::error!(error = %e, did, "presence write failed"),
            }
        }
        if n > 0 {
            tracing::warn!(
                devices = n,
                "cluster: this node's heartbeats had lapsed; its sessions were claimed again"
            );
        }
        n
    }

    /// Mark offline (stored, with a `device_offline` event) the devices whose node died without
    /// a word, and drop their presence entries. Returns how many.
    async fn sweep_dead_nodes(&self, cluster: &Cluster) -> usize {
        let orphans = match cluster.orphans().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: presence not swept");
                return 0;
            }
        };
        let mut n = 0;
        for (did, revision) in orphans {
            // Whoever deletes the entry writes the offline state, once.
            if cluster
                .presence
                .delete_expect_revision(did.as_str(), Some(revision))
                .await
                .is_err()
            {
                continue;
            }
            let ts = self.now_ms();
            let row = rampart_store::PresenceRow {
                did: did.clone(),
                online: false,
                ts,
            };
            let event = crate::device::bus::DeviceEvent::Offline {
                did: did.clone(),
                ts,
                reason: "node_lost".into(),
            };
            let res = match self.writer().presence(row, event).await {
                Ok(receipt) => receipt.committed().await,
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => n += 1,
                Err(e) => tracing::error!(error = %e, did, "presence write failed"),
            }
        }
        if n > 0 {
            tracing::info!(devices = n, "cluster: devices of dead nodes marked offline");
        }
        n
    }

    /// The cluster this node is in, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.bus().cluster()
    }

    /// This node's name: its cluster name, or the one it was given alone.
    pub fn node_id(&self) -> &str {
        self.bus().node_id()
    }

    /// Leave the cluster at shutdown (no-op alone).
    pub async fn leave_cluster(&self) {
        if let Some(c) = self.cluster() {
            c.leave().await;
        }
    }
}

/// Renew this node's liveness (claiming its sessions again when it had lapsed); when a node has
/// gone since the last look, the first live node by name sweeps the dead node's devices (one
/// sweeper, not every node at once).
async fn heartbeats(cluster: Weak<Cluster>, core: Weak<crate::Inner>) {
    let every = match cluster.upgrade() {
        Some(c) => (c.liveness / 3).max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        match c.heartbeat().await {
            Ok(true) => {
                let Some(inner) = core.upgrade() else { return };
                Core { inner }.reclaim_sessions(&c).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cluster: heartbeat not written"),
        }
        // Forwarded commands whose ack never came.
        let stale = c.command_timeout + Duration::from_secs(5);
        lock(&c.forwarded).retain(|_, (_, at)| at.elapsed() < stale);
        let live = match c.live_nodes().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: nodes not listed");
                continue;
            }
        };
        let lost = seen.difference(&live).next().is_some();
        if lost && live.iter().next().map(String::as_str) == Some(c.node_id()) {
            let Some(inner) = core.upgrade() else { return };
            Core { inner }.sweep_dead_nodes(&c).await;
        }
        seen = live;
    }
}

async fn serve_commands(core: Weak<crate::Inner>, mut sub: async_nats::Subscriber) {
    use base64::Engine as _;
    while let Some(m) = sub.next().await {
        let Some(inner) = core.upgrade() else { return };
        let core = Core { inner };
        let Some(cluster) = core.cluster().cloned() else {
            return;
        };
        let Some(reply) = m.reply else { continue };
        let answer: &'static [u8] = match serde_json::from_slice::<Forward>(&m.payload) {
            Ok(f) => match base64::engine::general_purpose::STANDARD.decode(&f.payload) {
                Ok(payload) => {
                    let msg = Message {
                        topic: f.topic,
                        payload: Bytes::from(payload),
                        expires_at: f.expires_at,
                    };
                    // Remembered before delivery: a quick device may ack at once.
                    lock(&cluster.forwarded).insert(
                        (f.did.clone(), f.id.clone()),
                        (f.origin.clone(), Instant::now()),
                    );
                    match core.bus().deliver(&f.did, msg, core.now_ms()) {
                        Delivery::Sent => b"sent",
                        Delivery::Queued => {
                            lock(&cluster.forwarded).remove(&(f.did, f.id));
                            b"queued"
                        }
                        Delivery::NotDelivered => {
                            lock(&cluster.forwarded).remove(&(f.did, f.id));
                            b"offline"
                        }
                    }
                }
                Err(_) => b"invalid",
            },
            Err(_) => b"invalid",
        };
        if let Err(e) = cluster.client.publish(reply, Bytes::from(answer)).await {
            tracing::warn!(error = %e, "cluster: command answer not sent");
        }
    }
}

async fn serve_acks(core: Weak<crate::Inner>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let Some(inner) = core.upgrade() else { return };
        let core = Core { inner };
        match serde_json::from_slice::<AckBack>(&m.payload) {
            Ok(a) => {
                core.bus().resolve_local_ack(&a.did, a.ack);
            }
            Err(e) => tracing::warn!(error = %e, "cluster: unreadable ack"),
        }
    }
}

/// Sessions closed at another node's word: taken over (`revoke` false) or revoked.
async fn serve_kicks(core: Weak<crate::Inner>, mut sub: async_nats::Subscriber, revoke: bool) {
    while let Some(m) = sub.next().await {
        let Some(inner) = core.upgrade() else { return };
        let core = Core { inner };
        if let Ok(did) = std::str::from_utf8(&m.payload) {
            if revoke {
                core.bus().kick_here(did);
            } else {
                core.bus().take_over(did);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_subject_tokens() {
        assert!(valid_name("node-1a2b"));
        assert!(valid_name("t_0001"));
        assert!(!valid_name(""));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a*"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(valid_name(&generated_node_id()));
        assert_ne!(generated_node_id(), generated_node_id());
    }

    /// Two nodes of one cluster on the NATS of `RAMPART_TEST_NATS_URL` (skipped when unset),
    /// under a prefix of the test's own.
    async fn two_nodes(liveness: Duration) -> Option<(Cluster, Cluster, String)> {
        let Ok(url) = std::env::var("RAMPART_TEST_NATS_URL") else {
            eprintln!("skipping: RAMPART_TEST_NATS_URL is not set");
            return None;
        };
        let prefix = format!("u{}", crate::secret::random_hex(6));
        let cfg = |node: &str| ClusterConfig {
            nats_url: url.clone(),
            node_id: node.into(),
            region: String::new(),
            subject_prefix: prefix.clone(),
            liveness,
            replicas: 1,
            command_timeout: Duration::from_secs(10),
        };
        let ttl = Duration::from_secs(60);
        let a = Cluster::connect(&cfg("a"), ttl).await.unwrap();
        let b = Cluster::connect(&cfg("b"), ttl).await.unwrap();
        a.heartbeat().await.unwrap();
        b.heartbeat().await.unwrap();
        Some((a, b, prefix))
    }

    async fn drop_buckets(c: &Cluster, prefix: &str) {
        let js = async_nats::jetstream::new(c.client.clone());
        for b in ["presence", "nodes", "connects"] {
            let _ = js.delete_key_value(format!("{prefix}_{b}")).await;
        }
    }

    #[tokio::test]
    async fn presence_is_shared_taken_over_and_released_by_its_holder_only() {
        let Some((a, b, prefix)) = two_nodes(Duration::from_secs(10)).await else {
            return;
        };
        let kicks = b.client.subscribe(b.subject("b", "kick")).await.unwrap();
        let mut kicks = kicks;
        assert_eq!(a.holder("d1").await.unwrap(), None);
        b.claim("d1").await.unwrap();
        assert_eq!(a.holder("d1").await.unwrap().as_deref(), Some("b"));
        // a takes it over: b hears of it, and b's release leaves a's claim alone
        a.claim("d1").await.unwrap();
        let kick = tokio::time::timeout(Duration::from_secs(5), kicks.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kick.payload.as_ref(), b"d1");
        assert!(!b.release("d1").await.unwrap(), "held by a");
        assert_eq!(b.holder("d1").await.unwrap().as_deref(), Some("a"));
        assert!(a.release("d1").await.unwrap());
        assert_eq!(b.holder("d1").await.unwrap(), None);
        // an id that is no key is nobody's
        assert_eq!(a.holder("a.b").await.unwrap(), None);
        drop_buckets(&a, &prefix).await;
    }

    #[tokio::test]
    async fn a_node_that_stops_beating_loses_its_devices() {
        let Some((a, b, prefix)) = two_nodes(Duration::from_secs(2)).await else {
            return;
        };
        b.claim("d2").await.unwrap();
        assert_eq!(a.holder("d2").await.unwrap().as_deref(), Some("b"));
        // b stops renewing (as if killed): within its liveness (and the server's expiry sweep)
        let start = Instant::now();
        while a.holder("d2").await.unwrap().is_some() {
            assert!(start.elapsed() < Duration::from_secs(6), "still held");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // a clean leave is seen at once
        a.heartbeat().await.unwrap();
        a.claim("d3").await.unwrap();
        assert_eq!(b.holder("d3").await.unwrap().as_deref(), Some("a"));
        a.leave().await;
        assert_eq!(b.holder("d3").await.unwrap(), None);
        drop_buckets(&a, &prefix).await;
    }

    /// A node counted as dead while it lived (its liveness entry gone, its devices swept by
    /// another node) claims its live sessions again at its next heartbeat.
    #[tokio::test]
    async fn a_node_whose_heartbeats_lapsed_claims_its_sessions_again() {
        let Ok(url) = std::env::var("RAMPART_TEST_NATS_URL") else {
            eprintln!("skipping: RAMPART_TEST_NATS_URL is not set");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let core = crate::test_support::core_with_device(dir.path(), "[]").await;
        let prefix = format!("u{}", crate::secret::random_hex(6));
        let cfg = |node: &str| ClusterConfig {
            nats_url: url.clone(),
            node_id: node.into(),
            region: String::new(),
            subject_prefix: prefix.clone(),
            liveness: Duration::from_secs(2),
            replicas: 1,
            command_timeout: Duration::from_secs(10),
        };
        core.join_cluster(&cfg("a")).await.unwrap();
        core.bus().attach(
            "d1",
            Arc::new(crate::device::bus::Inbox::default()),
            false,
            0,
        );
        core.set_presence("d1", true, "connect").await;
        let other = Cluster::connect(&cfg("b"), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(other.holder("d1").await.unwrap().as_deref(), Some("a"));
        other.nodes.delete("a").await.unwrap();
        other.presence.delete("d1").await.unwrap();
        assert_eq!(other.holder("d1").await.unwrap(), None);
        let start = Instant::now();
        while other.holder("d1").await.unwrap().as_deref() != Some("a") {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "not claimed again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(core.device_view("d1").await.unwrap().online);
        drop_buckets(&other, &prefix).await;
    }

    #[tokio::test]
    async fn a_connect_timestamp_is_accepted_once_in_the_cluster() {
        let Some((a, b, prefix)) = two_nodes(Duration::from_secs(10)).await else {
            return;
        };
        assert!(a.accept_connect("d1", 100).await.unwrap());
        assert!(!b.accept_connect("d1", 100).await.unwrap(), "replayed on b");
        assert!(!b.accept_connect("d1", 99).await.unwrap(), "older, on b");
        assert!(b.accept_connect("d1", 101).await.unwrap());
        assert!(!a.accept_connect("d1", 101).await.unwrap(), "replayed on a");
        assert!(a.accept_connect("d2", 5).await.unwrap(), "another device");
        // racing nodes: exactly one wins each timestamp
        let (x, y) = tokio::join!(a.accept_connect("d3", 7), b.accept_connect("d3", 7));
        assert!(x.unwrap() ^ y.unwrap());
        drop_buckets(&a, &prefix).await;
    }
}
