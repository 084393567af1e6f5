//! Delivering a webhook's events: one task per enabled webhook takes batches from the hub, POSTs
//! them signed, acknowledges them on a 2xx, retries with backoff, and moves them to the dead
//! letters after the last attempt; held while the key is disabled or the enterprise suspended.

use super::*;

/// What one attempt came to.
pub(super) struct Failure {
    pub(super) status: Option<u16>,
    pub(super) error: String,
}

/// The error and its causes, on one line.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out.chars().take(500).collect()
}

/// The POST body: `{"webhook_id", "events": [{"delivery_id", "event_type", "product_key", "did",
/// "ts", "data"}]}`.
pub(super) fn batch_body(webhook_id: &str, batch: &[Delivery]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = batch
        .iter()
        .map(|d| {
            serde_json::json!({
                "delivery_id": d.delivery_id,
                "event_type": d.kind,
                "product_key": d.product_key,
                "did": d.did,
                "ts": d.ts,
                "data": serde_json::from_str::<serde_json::Value>(&d.data)
                    .unwrap_or_else(|_| serde_json::json!({})),
            })
        })
        .collect();
    serde_json::json!({"webhook_id": webhook_id, "events": events})
        .to_string()
        .into_bytes()
}

impl Core {
    /// Start the delivery task of `row` unless it runs already. Its groups exist in the hub when
    /// this returns, so every event from then on is queued for it.
    pub(super) async fn start_webhook(&self, row: WebhookRow) -> Result<()> {
        let hooks = self.webhooks()?;
        let running = |id: &str| hooks.running().get(id).is_some_and(|h| !h.is_finished());
        if running(&row.webhook_id) {
            return Ok(());
        }
        let cfg = self.config().webhooks.clone();
        let secret = self.key().open_string(
            Place::new(col::WEBHOOK_SECRET, &row.webhook_id),
            &row.secret_enc,
        )?;
        let products = words(&row.products);
        let allowed = words(&row.sensitive_points);
        let mut hidden = HashMap::new();
        for pk in &products {
            hidden.insert(pk.clone(), self.hidden_points(pk, &allowed).await?);
        }
        let sub = group_subkey(&row.webhook_id);
        let groups = products.iter().map(|p| (p.clone(), sub.clone())).collect();
        let batch_max = cfg.batch_max.clamp(1, 1000);
        let consumer = self
            .join_consumer(
                groups,
                &words(&row.kinds),
                u16::try_from(batch_max).unwrap_or(1000),
                hidden,
            )
            .await?;
        let mut map = hooks.running();
        if map.get(&row.webhook_id).is_some_and(|h| !h.is_finished()) {
            // Started meanwhile; this consumer goes away with its events.
            return Ok(());
        }
        let id = row.webhook_id.clone();
        let core = self.clone();
        let task = tokio::spawn(async move {
            core.deliver_forever(row, secret, cfg, batch_max, consumer)
                .await
        });
        map.insert(id, task.abort_handle());
        Ok(())
    }

    /// One webhook's delivery loop: batch after batch until the hub stops or the task is
    /// aborted (disable, delete).
    async fn deliver_forever(
        self,
        row: WebhookRow,
        secret: Secret,
        cfg: WebhooksConfig,
        batch_max: usize,
        mut consumer: Consumer,
    ) {
        while let Some(first) = consumer.next().await {
            let mut batch = vec![first];
            while batch.len() < batch_max {
                match consumer.try_next() {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
            self.deliver_batch(&row, &secret, &cfg, batch, &mut consumer)
                .await;
        }
        tracing::warn!(webhook = %row.webhook_id, "webhook delivery stopped: the event hub is gone");
    }

    /// Deliver one batch: attempts with back-off, then dead letters; acknowledged either way.
    async fn deliver_batch(
        &self,
        row: &WebhookRow,
        secret: &Secret,
        cfg: &WebhooksConfig,
        mut batch: Vec<Delivery>,
        consumer: &mut Consumer,
    ) {
        self.wait_while_suspended(row).await;
        // Events of a product that left the enterprise are dropped, not sent.
        let mut gone = Vec::new();
        for pk in batch
            .iter()
            .map(|d| d.product_key.clone())
            .collect::<BTreeSet<_>>()
        {
            if !self
                .enterprise_owns(&row.enterprise_id, &pk)
                .await
                .unwrap_or(true)
            {
                gone.push(pk);
            }
        }
        if !gone.is_empty() {
            batch.retain(|d| {
                let keep = !gone.contains(&d.product_key);
                if !keep {
                    let _ = consumer.ack(d.delivery_id);
                    metrics::counter!(crate::telemetry::WEBHOOK_DROPPED).increment(1);
                }
                keep
            });
            tracing::warn!(webhook = %row.webhook_id, products = ?gone,
                "events of products no longer the webhook's enterprise's were dropped");
            if batch.is_empty() {
                return;
            }
        }
        let body = batch_body(&row.webhook_id, &batch);
        let delivery = format!("rwd_{}", random_hex(12));
        let attempts = cfg.max_attempts.max(1);
        let mut last = Failure {
            status: None,
            error: String::new(),
        };
        for attempt in 1..=attempts {
            if attempt > 1 {
                self.wait_while_suspended(row).await;
            }
            match self.post_once(row, secret, &delivery, attempt, &body).await {
                Ok(()) => {
                    for d in &batch {
                        let _ = consumer.ack(d.delivery_id);
                    }
                    metrics::counter!(crate::telemetry::WEBHOOK_DELIVERED)
                        .increment(batch.len() as u64);
                    return;
                }
                Err(f) => {
                    metrics::counter!(crate::telemetry::WEBHOOK_FAILURES).increment(1);
                    tracing::warn!(webhook = %row.webhook_id, delivery = %delivery, attempt,
                        status = ?f.status, error = %f.error, "webhook delivery failed");
                    last = f;
                }
            }
            if attempt < attempts {
                let wait = backoff(
                    attempt,
                    cfg.backoff_base_ms,
                    cfg.backoff_max_ms,
                    rand::random::<f64>(),
                );
                tokio::time::sleep(wait).await;
            }
        }
        let now = self.now_ms();
        let letters: Vec<DeadLetterRow> = batch
            .iter()
            .map(|d| DeadLetterRow {
                id: 0,
                webhook_id: row.webhook_id.clone(),
                event_id: d.delivery_id,
                product_key: d.product_key.clone(),
                did: d.did.clone(),
                kind: d.kind.clone(),
                ts: d.ts,
                body: d.data.clone(),
                attempts: i64::from(attempts),
                last_status: last.status.map(i64::from),
                last_error: last.error.clone(),
                failed_at: now,
            })
            .collect();
        // The events leave the queue only once they are dead letters.
        while let Err(e) = self.store().insert_dead_letters(&letters).await {
            tracing::error!(webhook = %row.webhook_id, error = %e,
                "recording dead letters failed; retrying");
            tokio::time::sleep(Duration::from_millis(cfg.backoff_max_ms.max(1000))).await;
        }
        for d in &batch {
            let _ = consumer.ack(d.delivery_id);
        }
        metrics::counter!(crate::telemetry::WEBHOOK_DEAD_LETTERS).increment(batch.len() as u64);
        tracing::warn!(webhook = %row.webhook_id, events = batch.len(), attempts,
            "webhook events moved to the dead letters");
    }

    /// Disable the webhooks access key `key_id` created, when the key is deleted or its secret
    /// rotated: a webhook planted with a leaked secret must not outlive the secret. Their
    /// events stay queued; a key of the enterprise with the `control` scope may enable them
    /// again. Each is audited (`webhook.disable`, with `why`).
    pub(crate) async fn disable_webhooks_of_key(
        &self,
        actor: &Actor,
        enterprise_id: &str,
        key_id: &str,
        why: &str,
    ) {
        let rows = match self.store().list_webhooks(enterprise_id).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(key_id, error = %e, "listing the key's webhooks failed");
                return;
            }
        };
        for row in rows
            .into_iter()
            .filter(|r| r.created_by == key_id && !r.disabled)
        {
            if let Err(e) = self
                .store()
                .set_webhook_disabled(enterprise_id, &row.webhook_id, true)
                .await
            {
                tracing::error!(webhook = %row.webhook_id, error = %e, "disabling a webhook failed");
                continue;
            }
            if let Ok(hooks) = self.webhooks() {
                hooks.stop(&row.webhook_id);
            }
            let ev = AuditEvent::new(actor, action::WEBHOOK_DISABLE, "ok")
                .tenant(enterprise_id.to_owned())
                .target(format!("webhook:{}", row.webhook_id))
                .detail(why.to_owned());
            self.audit(ev).await;
        }
    }

    /// Whether the webhook may deliver now: its enterprise is not suspended and the access key
    /// that created it is not disabled.
    async fn may_deliver(&self, row: &WebhookRow) -> Result<bool> {
        if self.enterprise_suspended(&row.enterprise_id).await? {
            return Ok(false);
        }
        Ok(self
            .store()
            .get_access_key(&row.created_by)
            .await?
            .is_some_and(|k| !k.disabled))
    }

    /// Hold the webhook's deliveries while its enterprise is suspended or the key that created
    /// it is disabled: its events stay queued (or held, unsent, by this task) and go out once
    /// that ends. A change by this process is noticed at once, one by another node within
    /// [`SUSPENDED_RECHECK`]; a batch's attempts made before it are not counted again.
    async fn wait_while_suspended(&self, row: &WebhookRow) {
        let mut changes = self.suspensions();
        let mut waiting = false;
        loop {
            match self.may_deliver(row).await.map(|ok| !ok) {
                Ok(false) => break,
                Ok(true) if !waiting => {
                    waiting = true;
                    tracing::info!(webhook = %row.webhook_id,
                        "webhook deliveries held: the enterprise is suspended or its key disabled");
                }
                Ok(true) => {}
                // Deliver nothing until the suspension can be checked.
                Err(e) => tracing::error!(webhook = %row.webhook_id, error = %e,
                    "checking the enterprise's suspension failed; retrying"),
            }
            match tokio::time::timeout(SUSPENDED_RECHECK, changes.changed()).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => tokio::time::sleep(SUSPENDED_RECHECK).await,
            }
        }
        if waiting {
            tracing::info!(webhook = %row.webhook_id,
                "webhook deliveries resume: the enterprise is reinstated, its key enabled");
        }
    }

    /// One signed POST; `Ok` on a 2xx answer.
    async fn post_once(
        &self,
        row: &WebhookRow,
        secret: &Secret,
        delivery: &str,
        attempt: u32,
        body: &[u8],
    ) -> std::result::Result<(), Failure> {
        let hooks = self.webhooks().map_err(|e| Failure {
            status: None,
            error: e.to_string(),
        })?;
        let cfg = &self.config().webhooks;
        // An address literal never meets the resolver: check it here.
        if !cfg.allow_private_addresses {
            let literal = url::Url::parse(&row.url).ok().and_then(|u| match u.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            });
            if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
                return Err(Failure {
                    status: None,
                    error: format!("{ip} is not a public address"),
                });
            }
        }
        let ts = self.now_ms();
        let resp = hooks
            .client
            .post(&row.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Rampart-Webhook", &row.webhook_id)
            .header("X-Rampart-Delivery", delivery)
            .header("X-Rampart-Attempt", attempt.to_string())
            .header("X-Rampart-Timestamp", ts.to_string())
            .header(
                "X-Rampart-Signature",
                sign(secret.expose().as_bytes(), ts, body),
            )
            .body(body.to_vec())
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Failure {
                status: Some(r.status().as_u16()),
                error: format!("HTTP {}", r.status()),
            }),
            Err(e) if e.is_timeout() => Err(Failure {
                status: None,
                error: format!("no answer within {} ms", cfg.timeout_ms),
            }),
            Err(e) => Err(Failure {
                status: None,
                error: error_chain(&e.without_url()),
            }),
        }
    }
}
