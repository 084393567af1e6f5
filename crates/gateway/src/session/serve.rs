//! A running session: the read loop, writes and their deadline, commands delivered to the device
//! within its inflight window, and acknowledgements in PUBLISH order.

use super::*;

impl<S: Conn> Session<S> {
    pub(super) fn send(&mut self, p: Packet) {
        // Encode straight into the write buffer (the encoder writes nothing on error); a packet
        // over the client's maximum size is cut off again.
        let start = self.wbuf.len();
        match mqtt::encode(&p, self.version, &mut self.wbuf) {
            Ok(()) if self.wbuf.len() - start <= self.client_max_packet as usize => {}
            Ok(()) => {
                self.wbuf.truncate(start);
                tracing::debug!("dropping a packet larger than the client's maximum");
            }
            Err(e @ mqtt::EncodeError::Reason { .. }) => {
                // A reason code the packet type may not carry is a bug in this crate: the codec
                // refused it, so the peer gets nothing rather than a protocol error.
                tracing::error!(error = %e, "packet with an invalid reason code not sent");
                metrics::counter!(rampart_core::telemetry::MQTT_ENCODE_REFUSED).increment(1);
                debug_assert!(false, "{e}");
            }
            Err(e) => tracing::warn!(error = %e, "encode failed"),
        }
    }

    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await?;
            self.io.flush().await?;
            // Nothing is kept allocated between writes.
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }

    pub(super) fn v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    /// Serve the connection until it closes (or, [`Close::Park`], has been idle long enough to
    /// wait in the idle pool). `deadline` is the keepalive deadline, kept up to date.
    pub(super) async fn run_loop(
        &mut self,
        keep_alive: u16,
        deadline: &mut Option<Instant>,
        rx: &Inbox,
        stop: &mut watch::Receiver<bool>,
    ) -> Close {
        // MQTT: the server closes after 1.5 keepalive periods without a packet.
        let idle = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let max = self.shared.config.max_packet_size;
        let park_after = match (&self.shared.idle, self.shared.config.park_idle_after) {
            (Some(_), Some(after)) if self.io.parkable() => Some(after),
            _ => None,
        };
        let mut active_at = Instant::now();
        loop {
            // Drain every whole packet already buffered (while reports in flight leave room).
            while self.acks.len() < INBOUND_UNCOMMITTED_MAX {
                // Bind the packet first so the decode result is not kept across the await.
                let p = match mqtt::decode(&mut self.rbuf, self.version, max) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(did = %self.dev.did, error = %e, "decode error");
                        return violation_of(&e);
                    }
                };
                if let Some(close) = Box::pin(self.handle(p)).await {
                    return close;
                }
            }
            match tokio::time::timeout(self.shared.config.write_timeout, self.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Close::Gone,
                Err(_) => {
                    metrics::counter!(rampart_core::telemetry::SLOW_PEER_DISCONNECTS, "listener" => "mqtt")
                        .increment(1);
                    tracing::info!(did = %self.dev.did, "peer stopped reading: closing");
                    return Close::SlowPeer;
                }
            }
            // Between packets the read buffer holds nothing (and no allocation).
            if self.rbuf.is_empty() {
                self.rbuf = BytesMut::new();
            }
            if let Err(e) = mqtt::frame_len(&self.rbuf, max) {
                return violation_of(&e);
            }
            // Idle with nothing buffered or in flight: after a while, wait in the idle pool.
            let park_at = park_after
                .filter(|_| self.rbuf.is_empty() && self.wbuf.is_empty() && self.acks.is_empty())
                .map(|after| active_at + after);
            let wake_at = match (*deadline, park_at) {
                (Some(d), Some(p)) => Some(d.min(p)),
                (d, p) => d.or(p),
            };
            let sleep = async {
                match wake_at {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let reading = self.acks.len() < INBOUND_UNCOMMITTED_MAX;
            let committing = self.acks.front().is_some_and(|a| a.receipt.is_some());
            tokio::select! {
                r = self.io.read_some(&mut self.rbuf), if reading => match r {
                    Ok(0) | Err(_) => return Close::Gone,
                    Ok(_) => {
                        active_at = Instant::now();
                        *deadline = idle.map(|d| active_at + d);
                    }
                },
                r = async {
                    match self.acks.front_mut().and_then(|a| a.receipt.as_mut()) {
                        Some(receipt) => receipt.await,
                        None => std::future::pending().await,
                    }
                }, if committing => {
                    self.committed(r);
                    active_at = Instant::now();
                    // Time spent waiting on our own storage is not the device's silence.
                    if !reading {
                        *deadline = idle.map(|d| active_at + d);
                    }
                }
                msg = rx.recv() => {
                    active_at = Instant::now();
                    match msg {
                        ToSession::Publish(msg) => self.deliver(msg, false),
                        ToSession::Kick(r) => return Close::Kicked(r),
                    }
                },
                _ = sleep => {
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        return Close::KeepAlive;
                    }
                    return Close::Park;
                }
                _ = stop.changed() => return Close::Shutdown,
            }
        }
    }

    /// Send a message to the device if one of its subscriptions matches.
    pub(super) fn deliver(&mut self, msg: Message, retain: bool) {
        let Some(granted) = self
            .subs
            .iter()
            .filter(|(f, _)| topic::matches(f, &msg.topic))
            .map(|(_, q)| q)
            .max()
        else {
            tracing::debug!(did = %self.dev.did, topic = %msg.topic, "no subscription; message dropped");
            return;
        };
        if granted != QoS::AtMostOnce && self.inflight_len() >= usize::from(self.out_window) {
            // The client's receive maximum is reached: hold the message until a PUBACK frees a slot.
            let pending = &mut self.rare().pending_out;
            if pending.len() >= OUTBOUND_PENDING_MAX {
                pending.pop_front();
                tracing::warn!(did = %self.dev.did, "outbound queue full; oldest message dropped");
            }
            self.rare().pending_out.push_back((msg, retain));
            return;
        }
        self.send_publish(msg, retain, granted);
    }

    /// Send now (expired messages are dropped; MQTT 5 gets the remaining expiry).
    pub(super) fn send_publish(&mut self, msg: Message, retain: bool, qos: QoS) {
        let remaining = msg.remaining_secs(self.shared.core.now_ms());
        if remaining == Some(0) {
            tracing::debug!(did = %self.dev.did, topic = %msg.topic, "message expired before delivery");
            return;
        }
        let packet_id = (qos != QoS::AtMostOnce).then(|| {
            let mut next = self.next_pid;
            let inflight = &mut self.rare.get_or_insert_with(Default::default).inflight_out;
            let pid = loop {
                next = next.wrapping_add(1).max(1);
                if !inflight.contains_key(&next) {
                    break next;
                }
            };
            inflight.insert(pid, msg.clone());
            self.next_pid = pid;
            pid
        });
        self.send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: msg.topic,
            packet_id,
            payload: msg.payload,
            properties: Properties {
                message_expiry_interval: remaining,
                ..Default::default()
            },
        }));
    }

    /// A PUBACK freed an inflight slot: send what waited for it.
    pub(super) fn release_pending(&mut self) {
        while self.inflight_len() < usize::from(self.out_window) {
            let Some((msg, retain)) = self.rare.as_mut().and_then(|r| r.pending_out.pop_front())
            else {
                break;
            };
            self.send_publish(msg, retain, QoS::AtLeastOnce);
        }
        self.trim_rare();
    }

    /// The rarely used state, allocated on first use.
    pub(super) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Give the rarely used state's memory back once it is empty.
    pub(super) fn trim_rare(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// Inbound QoS 1 publishes not yet acknowledged and QoS 2 ones awaiting their PUBREL.
    pub(super) fn inbound_unacked(&self) -> usize {
        self.acks.len() + self.rare.as_ref().map_or(0, |r| r.awaiting_rel.len())
    }

    pub(super) fn inflight_len(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.inflight_out.len())
    }

    /// Answer a QoS 1 publish now, or queue the answer behind reports still being committed.
    pub(super) fn ack_in_order(&mut self, packet_id: u16, code: u8, why: Option<String>) {
        if self.acks.is_empty() {
            let r = self.pubresp(packet_id, code, why.as_deref());
            self.send(Packet::PubAck(r));
        } else {
            self.acks.push_back(PendingAck {
                packet_id,
                receipt: None,
                code,
                why,
            });
        }
    }

    /// Answer a refused QoS 1 or 2 publish: a PUBACK waits its turn behind the reports still
    /// being committed (PUBACKs go out in PUBLISH order); a PUBREC goes at once, since QoS 2
    /// answers never wait for a commit and so are always in order among themselves.
    pub(super) fn refuse_publish(&mut self, packet_id: u16, qos: QoS, code: u8, why: String) {
        if qos == QoS::ExactlyOnce {
            let r = self.pubresp(packet_id, code, Some(&why));
            self.send(Packet::PubRec(r));
        } else {
            self.ack_in_order(packet_id, code, Some(why));
        }
    }

    /// The oldest report in flight was committed (or failed): acknowledge it and every answer
    /// that was waiting behind it, up to the next report still in flight.
    pub(super) fn committed(&mut self, res: Result<(), String>) {
        if let Some(front) = self.acks.front_mut() {
            front.receipt = None;
            if let Err(e) = res {
                tracing::error!(did = %self.dev.did, error = %e, "report not stored");
                front.code = reason::IMPLEMENTATION_SPECIFIC_ERROR;
                front.why = Some("server error".into());
            }
        }
        while self.acks.front().is_some_and(|a| a.receipt.is_none()) {
            let Some(a) = self.acks.pop_front() else {
                break;
            };
            let r = self.pubresp(a.packet_id, a.code, a.why.as_deref());
            self.send(Packet::PubAck(r));
        }
        if self.acks.is_empty() && self.acks.capacity() > 0 {
            self.acks = Default::default();
        }
    }

    /// Wait for every report in flight and queue all their answers.
    pub(super) async fn settle_acks(&mut self) {
        while let Some(front) = self.acks.front_mut() {
            let res = match front.receipt.as_mut() {
                Some(r) => r.await,
                None => Ok(()),
            };
            self.committed(res);
        }
    }

    pub(super) fn pubresp(&self, packet_id: u16, code: u8, why: Option<&str>) -> PubResp {
        let mut properties = Properties::default();
        if self.v5() {
            properties.reason_string = why.map(|w| w.chars().take(200).collect());
        }
        PubResp {
            packet_id,
            code: if self.v5() { code } else { 0 },
            properties,
        }
    }
}
