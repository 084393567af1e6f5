//! The hub's one task: it takes device events from its channel and queues them per
//! subscription group in one statement per batch, keeps each active group's window of queued
//! events, hands them round-robin to consumers with room under their prefetch (a device with
//! unacknowledged events stays on its consumer), deletes acknowledged rows, and runs retention.

use super::*;

// ---- the hub task ----

pub(super) struct Group {
    pub(super) kinds: BTreeSet<String>,
    pub(super) consumers: Vec<u64>,
    /// Where round-robin resumes.
    pub(super) rr: usize,
    /// The last id loaded from the store.
    pub(super) cursor: i64,
    /// The store may hold events after `cursor`.
    pub(super) more: bool,
    /// Loaded, not handed out (including events given back), by id.
    pub(super) pending: BTreeMap<i64, QueuedEventRow>,
    /// Handed out, not acknowledged: id -> (consumer, event).
    pub(super) inflight: HashMap<i64, (u64, QueuedEventRow)>,
    /// Devices with unacknowledged events: did -> (consumer, how many).
    pub(super) owner: HashMap<String, (u64, usize)>,
}

impl Group {
    pub(super) fn new(kinds: BTreeSet<String>) -> Group {
        Group {
            kinds,
            consumers: Vec::new(),
            rr: 0,
            cursor: 0,
            more: true,
            pending: BTreeMap::new(),
            inflight: HashMap::new(),
            owner: HashMap::new(),
        }
    }

    /// Forget what is in memory (the group has no consumer left); the queue stays in the store.
    pub(super) fn reset(&mut self) {
        self.cursor = 0;
        self.more = true;
        self.pending = BTreeMap::new();
        self.inflight = HashMap::new();
        self.owner = HashMap::new();
        self.rr = 0;
    }
}

pub(super) struct ConsumerState {
    pub(super) tx: mpsc::UnboundedSender<Delivery>,
    pub(super) kinds: HashSet<String>,
    pub(super) prefetch: usize,
    pub(super) held: usize,
    pub(super) groups: Vec<GroupKey>,
}

pub(super) struct Hub {
    pub(super) store: Store,
    /// Where the hub says which products' reports to compare with the previous state.
    pub(super) sink: Arc<EventSink>,
    pub(super) cfg: EventsConfig,
    pub(super) clock: crate::clock::Clock,
    pub(super) groups: HashMap<GroupKey, Group>,
    pub(super) consumers: HashMap<u64, ConsumerState>,
    /// Handed-out delivery id -> its group.
    pub(super) inflight: HashMap<i64, GroupKey>,
    /// did -> product key, filled as devices are seen.
    pub(super) product_of: HashMap<String, String>,
    pub(super) acks: Vec<i64>,
    pub(super) new_events: Vec<DeviceEvent>,
    /// Groups whose consumers may have something to receive.
    pub(super) dirty: HashSet<GroupKey>,
}

/// The kind and data of a device event.
pub(super) fn describe(ev: &DeviceEvent) -> (&str, &'static str, i64, serde_json::Value) {
    use serde_json::json;
    let kind = ev.kind().as_str();
    match ev {
        DeviceEvent::Online { did, ts } => (did, kind, *ts, json!({})),
        DeviceEvent::Offline { did, ts, reason } => (did, kind, *ts, json!({ "reason": reason })),
        DeviceEvent::Report { did, ts, values } => (did, kind, *ts, json!({ "values": values })),
        DeviceEvent::Ack {
            did,
            ts,
            id,
            status,
        } => (did, kind, *ts, json!({ "id": id, "status": status })),
        DeviceEvent::Registered {
            did,
            ts,
            hardware_id,
            mode,
            created,
        } => (
            did,
            kind,
            *ts,
            json!({ "hardware_id": hardware_id, "mode": mode, "created": created }),
        ),
        DeviceEvent::Raw { did, ts, payload } => (did, kind, *ts, json!({ "payload": payload })),
        DeviceEvent::Changed {
            did,
            ts,
            values,
            previous,
        } => (
            did,
            kind,
            *ts,
            json!({ "values": values, "previous": previous }),
        ),
        DeviceEvent::Alarm {
            did, ts, values, ..
        } => (did, kind, *ts, json!({ "values": values })),
        // `values`, so hidden points are left out of it as out of a report.
        DeviceEvent::Delta {
            did,
            ts,
            version,
            delta,
        } => (
            did,
            kind,
            *ts,
            json!({ "values": delta, "version": version }),
        ),
        DeviceEvent::OtaStatus {
            did,
            ts,
            campaign_id,
            state,
            reason,
            bytes,
        } => (
            did,
            kind,
            *ts,
            json!({ "campaign_id": campaign_id, "state": state, "reason": reason, "bytes": bytes }),
        ),
    }
}

impl Hub {
    pub(super) async fn run(
        &mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut events: mpsc::Receiver<DeviceEvent>,
    ) {
        match self.store.list_event_groups().await {
            Ok(rows) => {
                for r in rows {
                    let kinds = r.kinds.split_whitespace().map(str::to_owned).collect();
                    self.groups
                        .insert((r.product_key, r.subkey), Group::new(kinds));
                }
            }
            Err(e) => tracing::error!(error = %e, "loading event stream groups failed"),
        }
        self.update_tracked();
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut events_open = true;
        loop {
            tokio::select! {
                biased;
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd).await;
                    for _ in 0..1024 {
                        match cmds.try_recv() {
                            Ok(cmd) => self.handle(cmd).await,
                            Err(_) => break,
                        }
                    }
                }
                ev = events.recv(), if events_open => {
                    match ev {
                        Some(ev) => self.new_events.push(ev),
                        None => events_open = false,
                    }
                    for _ in 0..HUB_QUEUE {
                        match events.try_recv() {
                            Ok(ev) => self.new_events.push(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = sweep.tick() => self.sweep().await,
            }
            self.flush_acks().await;
            self.record().await;
            while !self.dirty.is_empty() {
                let dirty: Vec<GroupKey> = self.dirty.drain().collect();
                for key in dirty {
                    self.fill_and_dispatch(&key).await;
                }
            }
        }
    }

    /// Tell the report path which products' reports to compare with the previous state:
    /// those with a group that asked for changes or alarms.
    pub(super) fn update_tracked(&self) {
        let products = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.kinds
                    .iter()
                    .any(|k| EventKind::parse(k).is_some_and(EventKind::compares_previous))
            })
            .map(|(k, _)| k.0.clone())
            .collect();
        self.sink.set_tracked(products);
    }

    pub(super) async fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join {
                id,
                groups,
                kinds,
                prefetch,
                tx,
                done,
            } => {
                let res = self.join(&groups, &kinds).await;
                self.update_tracked();
                if res.is_ok() {
                    self.consumers.insert(
                        id,
                        ConsumerState {
                            tx,
                            kinds,
                            prefetch,
                            held: 0,
                            groups: groups.clone(),
                        },
                    );
                    for g in groups {
                        if let Some(group) = self.groups.get_mut(&g) {
                            group.consumers.push(id);
                        }
                        self.dirty.insert(g);
                    }
                }
                let _ = done.send(res);
            }
            Cmd::Leave(id) => self.leave(id),
            Cmd::Ack(delivery) => self.ack(delivery),
            Cmd::Poke(groups) => {
                for key in groups {
                    if let Some(g) = self.groups.get_mut(&key) {
                        g.more = true;
                        if !g.consumers.is_empty() {
                            self.dirty.insert(key);
                        }
                    }
                }
            }
            Cmd::Forget(groups, done) => {
                for key in &groups {
                    self.groups.remove(key);
                    self.dirty.remove(key);
                }
                self.inflight.retain(|_, k| !groups.contains(k));
                for c in self.consumers.values_mut() {
                    c.groups.retain(|k| !groups.contains(k));
                }
                self.update_tracked();
                let _ = done.send(());
            }
        }
    }

    /// Create or widen the groups (their kinds become the union of what logins asked for).
    pub(super) async fn join(
        &mut self,
        groups: &[GroupKey],
        kinds: &HashSet<String>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        for key in groups {
            let group = self
                .groups
                .entry(key.clone())
                .or_insert_with(|| Group::new(BTreeSet::new()));
            group.kinds.extend(kinds.iter().cloned());
            let row = EventGroupRow {
                product_key: key.0.clone(),
                subkey: key.1.clone(),
                kinds: group.kinds.iter().cloned().collect::<Vec<_>>().join(" "),
                last_seen: now,
            };
            self.store.upsert_event_group(&row).await?;
        }
        Ok(())
    }

    pub(super) fn leave(&mut self, id: u64) {
        let Some(c) = self.consumers.remove(&id) else {
            return;
        };
        for key in c.groups {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            g.consumers.retain(|&x| x != id);
            let back: Vec<i64> = g
                .inflight
                .iter()
                .filter(|(_, (holder, _))| *holder == id)
                .map(|(d, _)| *d)
                .collect();
            for d in back {
                if let Some((_, row)) = g.inflight.remove(&d) {
                    g.pending.insert(d, row);
                }
                self.inflight.remove(&d);
            }
            g.owner.retain(|_, (holder, _)| *holder != id);
            if g.consumers.is_empty() {
                g.reset();
            } else {
                self.dirty.insert(key);
            }
        }
    }

    pub(super) fn ack(&mut self, delivery: i64) {
        let Some(key) = self.inflight.remove(&delivery) else {
            return;
        };
        self.acks.push(delivery);
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if let Some((holder, row)) = g.inflight.remove(&delivery) {
            if let Some(c) = self.consumers.get_mut(&holder) {
                c.held = c.held.saturating_sub(1);
                // The consumer has room again in all its groups.
                for k in &c.groups {
                    self.dirty.insert(k.clone());
                }
            }
            if let Some((_, n)) = g.owner.get_mut(&row.did) {
                *n -= 1;
                if *n == 0 {
                    g.owner.remove(&row.did);
                }
            }
        }
    }

    pub(super) async fn flush_acks(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        match self.store.delete_events(&acks).await {
            Ok(_) => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_ACKED).increment(acks.len() as u64)
            }
            // The events stay queued and are delivered again after a restart.
            Err(e) => tracing::error!(error = %e, "deleting acknowledged events failed"),
        }
    }

    /// Queue the new events for every group of their product that asked for their kind.
    pub(super) async fn record(&mut self) {
        if self.new_events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.new_events);
        if self.groups.is_empty() {
            return;
        }
        let unknown: Vec<String> = events
            .iter()
            .map(|e| describe(e).0)
            .filter(|d| !self.product_of.contains_key(*d))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !unknown.is_empty() {
            if self.product_of.len() > 1_000_000 {
                self.product_of.clear();
            }
            match self.store.device_products(&unknown).await {
                Ok(pairs) => self.product_of.extend(pairs),
                Err(e) => tracing::error!(error = %e, "looking up devices' products failed"),
            }
        }
        let now = self.clock.now_ms();
        let mut rows = Vec::new();
        for ev in &events {
            let (did, kind, ts, data) = describe(ev);
            let Some(pk) = self.product_of.get(did) else {
                continue;
            };
            let body = data.to_string();
            for (key, g) in &self.groups {
                if &key.0 == pk && g.kinds.contains(kind) {
                    rows.push(QueuedEventRow {
                        id: 0,
                        product_key: key.0.clone(),
                        subkey: key.1.clone(),
                        did: did.to_owned(),
                        kind: kind.to_owned(),
                        ts,
                        body: body.clone(),
                        created_at: now,
                    });
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        match self.store.insert_events(&rows).await {
            Ok(()) => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_QUEUED).increment(n as u64);
                for r in rows {
                    let key = (r.product_key, r.subkey);
                    if let Some(g) = self.groups.get_mut(&key) {
                        g.more = true;
                        if !g.consumers.is_empty() {
                            self.dirty.insert(key);
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, events = n, "queueing events failed"),
        }
    }

    /// Load a group's queue ahead of delivery and hand out what its consumers have room for.
    pub(super) async fn fill_and_dispatch(&mut self, key: &GroupKey) {
        let Some(g) = self.groups.get_mut(key) else {
            return;
        };
        if g.consumers.is_empty() {
            return;
        }
        let mut loaded_full = false;
        if g.more && g.pending.len() < WINDOW {
            match self
                .store
                .load_events(&key.0, &key.1, g.cursor, WINDOW as i64)
                .await
            {
                Ok(rows) => {
                    g.more = rows.len() == WINDOW;
                    loaded_full = g.more;
                    // Acknowledged events wait for the next flush to be deleted: a group
                    // loaded again meanwhile (its last consumer left and another joined) must
                    // not hand them out a second time.
                    let acked: HashSet<i64> = self.acks.iter().copied().collect();
                    for r in rows {
                        g.cursor = g.cursor.max(r.id);
                        if !acked.contains(&r.id) {
                            g.pending.insert(r.id, r);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "loading queued events failed"),
            }
        }
        let mut blocked: HashSet<String> = HashSet::new();
        let mut handed: Vec<(i64, u64)> = Vec::new();
        for (id, row) in &g.pending {
            let room = |c: &u64| {
                self.consumers
                    .get(c)
                    .is_some_and(|s| s.held < s.prefetch && s.kinds.contains(&row.kind))
            };
            if !g
                .consumers
                .iter()
                .any(|c| self.consumers.get(c).is_some_and(|s| s.held < s.prefetch))
            {
                break;
            }
            if blocked.contains(&row.did) {
                continue;
            }
            // A kind no connected consumer asked for stays queued for one that does, without
            // holding up the device's other events.
            if !g.consumers.iter().any(|c| {
                self.consumers
                    .get(c)
                    .is_some_and(|s| s.kinds.contains(&row.kind))
            }) {
                continue;
            }
            let target = match g.owner.get(&row.did) {
                Some((holder, _)) => room(holder).then_some(*holder),
                None => {
                    let n = g.consumers.len();
                    let pick = (0..n)
                        .map(|i| (g.rr + i) % n)
                        .find(|&i| room(&g.consumers[i]));
                    pick.map(|i| {
                        g.rr = (i + 1) % n;
                        g.consumers[i]
                    })
                }
            };
            let Some(c) = target else {
                blocked.insert(row.did.clone());
                continue;
            };
            let Some(state) = self.consumers.get_mut(&c) else {
                blocked.insert(row.did.clone());
                continue;
            };
            if state.tx.send(Delivery::from(row.clone())).is_err() {
                // Gone; its `Leave` is on the way.
                blocked.insert(row.did.clone());
                continue;
            }
            state.held += 1;
            g.owner.entry(row.did.clone()).or_insert((c, 0)).1 += 1;
            handed.push((*id, c));
        }
        for (id, c) in handed {
            if let Some(row) = g.pending.remove(&id) {
                g.inflight.insert(id, (c, row));
                self.inflight.insert(id, key.clone());
            }
        }
        // More to load now that the window has room (after a failed load, the next event or
        // acknowledgement tries again).
        if loaded_full && g.pending.len() < WINDOW {
            self.dirty.insert(key.clone());
        }
    }

    /// Retention, and forgetting groups nobody has used for as long.
    pub(super) async fn sweep(&mut self) {
        let now = self.clock.now_ms();
        let before = now - self.cfg.retention_ms;
        match self
            .store
            .expire_events(before, self.cfg.max_per_group)
            .await
        {
            Ok(n) if n > 0 => {
                metrics::counter!(crate::telemetry::EVENT_STREAM_EXPIRED).increment(n);
                tracing::info!(
                    events = n,
                    "event stream retention dropped unacknowledged events"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "event stream retention failed"),
        }
        let live: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.consumers.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        if let Err(e) = self.store.touch_event_groups(&live, now).await {
            tracing::error!(error = %e, "event stream group refresh failed");
            return;
        }
        match self.store.delete_stale_event_groups(before).await {
            Ok(n) if n > 0 => {
                if let Ok(rows) = self.store.list_event_groups().await {
                    let keep: HashSet<GroupKey> = rows
                        .into_iter()
                        .map(|r| (r.product_key, r.subkey))
                        .collect();
                    self.groups
                        .retain(|k, g| keep.contains(k) || !g.consumers.is_empty());
                    self.update_tracked();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "event stream group expiry failed"),
        }
    }
}
