//! Packets from the device: publishes (namespace ACL, report rate, reports, acks, raw, retained),
//! subscriptions, PINGREQ and DISCONNECT.

use super::*;

impl<S: Conn> Session<S> {
    pub(super) async fn handle(&mut self, p: Packet) -> Option<Close> {
        match p {
            Packet::Publish(mut p) => {
                // Topic aliases (MQTT 5).
                if let Some(alias) = p.properties.topic_alias {
                    if alias == 0 || alias > self.shared.config.topic_alias_max {
                        return Some(Close::Violation(
                            reason::TOPIC_ALIAS_INVALID,
                            "topic alias out of range",
                        ));
                    }
                    if p.topic.is_empty() {
                        match self.rare.as_ref().and_then(|r| r.aliases.get(&alias)) {
                            Some(t) => p.topic = t.clone(),
                            None => {
                                return Some(Close::Violation(
                                    reason::PROTOCOL_ERROR,
                                    "unknown topic alias",
                                ))
                            }
                        }
                    } else {
                        self.rare().aliases.insert(alias, p.topic.clone());
                    }
                } else if p.topic.is_empty() {
                    return Some(Close::Violation(reason::PROTOCOL_ERROR, "empty topic"));
                }
                if p.topic.len() > self.shared.config.max_topic_len {
                    count_refusal(limit::MQTT_TOPIC_LENGTH);
                    return Some(Close::Violation(
                        reason::TOPIC_NAME_INVALID,
                        "limit mqtt.topic_length exceeded: topic longer than the maximum",
                    ));
                }
                let did = self.dev.did.as_str();
                let kind = match topic::classify(did, &p.topic) {
                    None | Some(DeviceTopic::Down) => {
                        tracing::info!(did, topic = %p.topic, "publish outside the device namespace refused");
                        metrics::counter!(rampart_core::telemetry::MQTT_ACL_DENIED).increment(1);
                        if let (Some(pid), true) = (p.packet_id, self.v5()) {
                            self.refuse_publish(
                                pid,
                                p.qos,
                                reason::NOT_AUTHORIZED,
                                "topic outside dev/{did}/".into(),
                            );
                        }
                        return Some(Close::Violation(
                            reason::NOT_AUTHORIZED,
                            "publish outside the device namespace",
                        ));
                    }
                    Some(kind) => kind,
                };
                let per_min = s_limit(&self.dev);
                let abuse_secs = self.shared.core.connect_limits().config().report_abuse_secs;
                match self.limiter.check(
                    self.shared.core.clock().monotonic_ms(),
                    per_min,
                    abuse_secs,
                ) {
                    Verdict::Allow => {}
                    Verdict::Abuse => {
                        count_refusal(limit::MQTT_REPORT_ABUSE);
                        tracing::info!(did, "sustained publishing over the report rate: closing");
                        return Some(Close::Violation(
                            reason::MESSAGE_RATE_TOO_HIGH,
                            "limit mqtt.report_abuse exceeded: publishes kept coming at more than \
                             twice the product's report rate",
                        ));
                    }
                    Verdict::Refuse => {
                        count_refusal(limit::MQTT_REPORT_RATE);
                        metrics::counter!(rampart_core::telemetry::REPORTS_RATE_LIMITED)
                            .increment(1);
                        tracing::debug!(
                            did,
                            "publish over the product's report rate limit dropped"
                        );
                        if let Some(pid) = p.packet_id {
                            let why = format!(
                                "limit {} exceeded: {per_min} messages per minute, \
                                 burst {}; full again in {} ms",
                                limit::MQTT_REPORT_RATE,
                                capacity(per_min) as u32,
                                self.limiter.full_in_ms(per_min)
                            );
                            // 0x97, not 0x96: message-rate-too-high is a DISCONNECT code only.
                            self.refuse_publish(pid, p.qos, reason::QUOTA_EXCEEDED, why);
                        }
                        return None;
                    }
                }
                // MQTT 5: no more unacknowledged QoS > 0 publishes than the receive maximum.
                if p.qos == QoS::AtLeastOnce
                    && self.v5()
                    && self.inbound_unacked() >= usize::from(self.shared.config.max_inflight)
                {
                    count_refusal(limit::MQTT_INFLIGHT);
                    return Some(Close::Violation(
                        reason::RECEIVE_MAXIMUM_EXCEEDED,
                        "limit mqtt.inflight exceeded: more unacknowledged publishes than the \
                         receive maximum",
                    ));
                }
                match (p.qos, p.packet_id) {
                    (QoS::AtMostOnce, _) => {
                        self.route_inbound(&p, kind).await;
                    }
                    (QoS::AtLeastOnce, Some(pid)) => {
                        if kind == DeviceTopic::Report {
                            // Reports are acknowledged when committed; reading goes on meanwhile.
                            match self
                                .shared
                                .core
                                .submit_report(&self.dev, &p.payload, true)
                                .await
                            {
                                Ok(receipt) => self.acks.push_back(PendingAck {
                                    packet_id: pid,
                                    receipt: Some(receipt),
                                    code: reason::SUCCESS,
                                    why: None,
                                }),
                                Err(e) => {
                                    let (code, why) = refusal_of(self.dev.did.as_str(), e);
                                    self.ack_in_order(pid, code, why);
                                }
                            }
                        } else {
                            let (code, why) = self.route_inbound(&p, kind).await;
                            self.ack_in_order(pid, code, why);
                        }
                    }
                    (QoS::ExactlyOnce, Some(pid)) => {
                        // Deliver once on first receipt; a duplicate while awaiting PUBREL is only acknowledged.
                        let awaiting = self.rare.as_ref().map(|r| &r.awaiting_rel);
                        let (code, why) = if awaiting.is_some_and(|a| a.contains(&pid)) {
                            (reason::SUCCESS, None)
                        } else {
                            // 3.1.1 has no receive maximum: only QoS 2 publishes count there.
                            let unacked = if self.v5() {
                                self.inbound_unacked()
                            } else {
                                awaiting.map_or(0, |a| a.len())
                            };
                            if unacked >= usize::from(self.shared.config.max_inflight) {
                                count_refusal(limit::MQTT_INFLIGHT);
                                return Some(Close::Violation(
                                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                                    "limit mqtt.inflight exceeded: too many QoS 2 messages \
                                     awaiting PUBREL",
                                ));
                            }
                            let (code, why) = self.route_inbound(&p, kind).await;
                            if code < 0x80 {
                                self.rare().awaiting_rel.insert(pid);
                            }
                            (code, why)
                        };
                        let r = self.pubresp(pid, code, why.as_deref());
                        self.send(Packet::PubRec(r));
                    }
                    _ => {
                        return Some(Close::Violation(
                            reason::PROTOCOL_ERROR,
                            "missing packet id",
                        ))
                    }
                }
                None
            }
            Packet::PubRel(r) => {
                let code = if self
                    .rare
                    .as_mut()
                    .is_some_and(|x| x.awaiting_rel.remove(&r.packet_id))
                {
                    0
                } else {
                    reason::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.trim_rare();
                let resp = self.pubresp(r.packet_id, code, None);
                self.send(Packet::PubComp(resp));
                None
            }
            Packet::PubAck(r) => {
                if let Some(x) = self.rare.as_mut() {
                    x.inflight_out.remove(&r.packet_id);
                }
                self.release_pending();
                None
            }
            // We never send QoS 2; answer a stray PUBREC so the peer does not hang.
            Packet::PubRec(r) => {
                if let Some(x) = self.rare.as_mut() {
                    x.inflight_out.remove(&r.packet_id);
                }
                self.trim_rare();
                let resp = self.pubresp(r.packet_id, reason::PACKET_IDENTIFIER_NOT_FOUND, None);
                self.send(Packet::PubRel(resp));
                None
            }
            Packet::PubComp(_) => None,
            Packet::Subscribe(sub) => {
                let did = self.dev.did.as_str().to_owned();
                let mut codes = Vec::with_capacity(sub.filters.len().min(64));
                let mut denied = false;
                let mut new_retained = Vec::new();
                for f in &sub.filters {
                    // Length first: a filter of tens of thousands of levels costs nothing more.
                    let refused = if f.filter.len() > self.shared.config.max_topic_len {
                        count_refusal(limit::MQTT_TOPIC_LENGTH);
                        Some(reason::TOPIC_FILTER_INVALID)
                    } else if !topic::filter_allowed(&did, &f.filter) {
                        denied = true;
                        Some(reason::NOT_AUTHORIZED)
                    } else if !self.subs.contains(&f.filter)
                        && self.subs.len() >= self.shared.config.max_subscriptions
                    {
                        count_refusal(limit::MQTT_SUBSCRIPTIONS);
                        Some(reason::QUOTA_EXCEEDED)
                    } else {
                        None
                    };
                    if let Some(code) = refused {
                        codes.push(if self.v5() {
                            code
                        } else {
                            reason::v311::SUBACK_FAILURE
                        });
                        continue;
                    }
                    let granted = f.qos.min(QoS::AtLeastOnce);
                    self.subs.insert(&f.filter, granted);
                    codes.push(granted as u8);
                    if f.retain_handling != 2 {
                        new_retained.push(f.filter.clone());
                    }
                }
                self.send(Packet::SubAck(SubAck {
                    packet_id: sub.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
                if denied {
                    metrics::counter!(rampart_core::telemetry::MQTT_ACL_DENIED).increment(1);
                    return Some(Close::Violation(
                        reason::NOT_AUTHORIZED,
                        "subscription outside the device namespace",
                    ));
                }
                for m in self.shared.retained.matching(&new_retained) {
                    self.deliver(m, true);
                }
                if let Some(m) = self.rare.as_mut().and_then(|r| r.desired.take()) {
                    self.offer_desired(m);
                    self.trim_rare();
                }
                None
            }
            Packet::Unsubscribe(u) => {
                let codes = u
                    .filters
                    .iter()
                    .map(|f| {
                        if self.subs.remove(f).is_some() {
                            0
                        } else {
                            reason::NO_SUBSCRIPTION_EXISTED
                        }
                    })
                    .collect();
                self.send(Packet::UnsubAck(UnsubAck {
                    packet_id: u.packet_id,
                    codes,
                    properties: Properties::default(),
                }));
                None
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                None
            }
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    self.expiry_secs = e.min(self.shared.config.max_session_expiry_secs);
                }
                Some(Close::Clean {
                    with_will: d.code == reason::DISCONNECT_WITH_WILL,
                })
            }
            Packet::Connect(_) => Some(Close::Violation(reason::PROTOCOL_ERROR, "second CONNECT")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(Close::Violation(
                    reason::PROTOCOL_ERROR,
                    "server-only packet from a client",
                ))
            }
            Packet::Auth(a) => self.on_auth(a).await,
        }
    }

    /// Act on a publish inside the device's namespace; returns the reason code and string for its ack.
    pub(super) async fn route_inbound(
        &mut self,
        p: &Publish,
        kind: DeviceTopic,
    ) -> (u8, Option<String>) {
        let answer = apply_publish(&self.shared, &self.dev, p, Some(kind)).await;
        // The device's own subscriptions to its other subtopics.
        if answer.0 == reason::SUCCESS && matches!(kind, DeviceTopic::Other | DeviceTopic::Raw) {
            self.deliver(message_of(p, self.shared.core.clock()), false);
        }
        answer
    }
}

/// What a device publish means to the cloud: a report is validated and stored, an ack resolves its
/// command, a retained message is kept. Returns the reason code (and string) for the ack. Also used
/// for wills, which may fire after the session is gone. `kind` is the topic's class, already known
/// to the caller.
pub(super) async fn apply_publish(
    shared: &Shared,
    dev: &DeviceAuth,
    p: &Publish,
    kind: Option<DeviceTopic>,
) -> (u8, Option<String>) {
    let did = dev.did.as_str();
    // A retained publish past a cap is refused as a whole, before it is forwarded anywhere.
    let retain = p.retain && matches!(kind, Some(DeviceTopic::Other | DeviceTopic::Raw));
    let caps = shared.core.connect_limits().config();
    let over_cap = |why: String| {
        count_refusal(retained::RETAINED);
        tracing::debug!(did, topic = %p.topic, "retained publish refused: {why}");
        (reason::QUOTA_EXCEEDED, Some(why))
    };
    if retain {
        if let Err(why) = shared.retained.admit(did, &p.topic, p.payload.len(), caps) {
            return over_cap(why);
        }
    }
    let result = match kind {
        Some(DeviceTopic::Report) => shared
            .core
            .ingest_report(dev, &p.payload, p.qos != QoS::AtMostOnce)
            .await
            .map(|_| ()),
        Some(DeviceTopic::Ack) => shared.core.ingest_ack(dev, &p.payload).await,
        Some(DeviceTopic::Raw) => shared.core.ingest_raw(dev, &p.payload).await,
        Some(DeviceTopic::Ota) => shared.core.ingest_ota(dev, &p.topic, &p.payload).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        return refusal_of(did, e);
    }
    if retain {
        // Checked again as it is kept: another device may have taken the node's last room.
        if let Err(why) =
            shared
                .retained
                .put(did, &p.topic, message_of(p, shared.core.clock()), caps)
        {
            return over_cap(why);
        }
    }
    (reason::SUCCESS, None)
}

/// The ack code (and reason string) for a publish the core refused.
pub(super) fn refusal_of(did: &str, e: CoreError) -> (u8, Option<String>) {
    match e {
        CoreError::Model(e) => {
            tracing::debug!(did, error = %e, "invalid payload refused");
            (reason::PAYLOAD_FORMAT_INVALID, Some(e.to_string()))
        }
        // An OTA check, status or chunk request the core refused: the device's mistake.
        e @ (CoreError::Invalid(_)
        | CoreError::Conflict(_)
        | CoreError::Forbidden(_)
        | CoreError::NotFound(_)) => {
            tracing::debug!(did, error = %e, "publish refused");
            (reason::PAYLOAD_FORMAT_INVALID, Some(e.to_string()))
        }
        e => {
            tracing::error!(did, error = %e, "ingest failed");
            (
                reason::IMPLEMENTATION_SPECIFIC_ERROR,
                Some("server error".into()),
            )
        }
    }
}

/// A device publish as a message to deliver, with its MQTT 5 message expiry counted from now
/// (the clock is read only for a publish that has one).
pub(super) fn message_of(p: &Publish, clock: &rampart_core::clock::Clock) -> Message {
    Message {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        expires_at: p
            .properties
            .message_expiry_interval
            .map(|secs| clock.now_ms().saturating_add(i64::from(secs) * 1000)),
    }
}
