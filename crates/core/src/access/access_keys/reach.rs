//! What a key reaches: the devices of its products that still belong to its enterprise (anything
//! else is `NotFound`, like an unknown id), its scopes, the sensitive points it may see, and the
//! audit of its reads.

use super::*;

/// Leave the `hidden` points out of a device's state.
fn redact(v: &mut DeviceView, hidden: &[String]) {
    if let Some(state) = v.state.as_object_mut() {
        state.retain(|name, _| !hidden.contains(name));
    }
}

impl Core {
    fn key_access_event(&self, k: &KeySession, action: &str, outcome: &str) -> AuditEvent {
        AuditEvent::new(&k.actor(), action, outcome)
            .tenant(k.enterprise_id.clone())
            .source_ip(k.source_ip.clone())
    }

    /// Record a key's data access (`action` on `target`).
    pub async fn audit_key_access(&self, k: &KeySession, action: &str, target: String) {
        self.audit(self.key_access_event(k, action, "ok").target(target))
            .await;
    }

    /// `Forbidden` unless `k` has scope `s`.
    pub fn require_scope(k: &KeySession, s: Scope) -> Result<()> {
        if k.has(s) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "the access key lacks the `{}` scope",
                s.as_str()
            )))
        }
    }

    /// May `k` do `need` to device `did`? `NotFound("device")` for a device outside the key's
    /// products or enterprise (like an unknown did), `Forbidden` for a missing scope. Refusals are
    /// audited (`enterprise.device_access`). Returns the device's product key.
    pub async fn authorize_key_device(
        &self,
        k: &KeySession,
        did: &str,
        need: Scope,
    ) -> Result<String> {
        let pk = match self.store().get_device(did).await? {
            Some(d) if k.products.contains(&d.product_key) => Some(d.product_key),
            _ => None,
        };
        let visible = match &pk {
            Some(pk) => {
                self.store()
                    .product_owner(pk)
                    .await?
                    .and_then(|o| o.enterprise_id)
                    .as_deref()
                    == Some(k.enterprise_id.as_str())
            }
            None => false,
        };
        let refusal = match (visible, pk) {
            (true, Some(pk)) => match Self::require_scope(k, need) {
                Ok(()) => return Ok(pk),
                Err(e) => e,
            },
            _ => Error::NotFound("device"),
        };
        let ev = self
            .key_access_event(
                k,
                action::ENTERPRISE_DEVICE_ACCESS,
                &format!("denied: {refusal}"),
            )
            .target(format!(
                "device:{}",
                did.chars().take(64).collect::<String>()
            ))
            .detail(need.as_str());
        self.audit(ev).await;
        Err(refusal)
    }

    /// The data points of `product_key` that `k` may not see: those marked `sensitive` in the
    /// model that the key does not name.
    pub async fn key_hidden_points(
        &self,
        k: &KeySession,
        product_key: &str,
    ) -> Result<Vec<String>> {
        self.hidden_points(product_key, &k.sensitive_points).await
    }

    /// The data points of `product_key` marked `sensitive` in the model, except those `allowed`.
    pub(crate) async fn hidden_points(
        &self,
        product_key: &str,
        allowed: &[String],
    ) -> Result<Vec<String>> {
        Ok(self
            .product(product_key)
            .await?
            .datapoints
            .points()
            .iter()
            .filter(|p| p.sensitivity == rampart_proto::model::Sensitivity::Sensitive)
            .filter(|p| !allowed.contains(&p.name))
            .map(|p| p.name.clone())
            .collect())
    }

    /// The device's view with the points `k` may not see left out of its state.
    pub async fn key_device_view(&self, k: &KeySession, did: &str) -> Result<DeviceView> {
        let mut v = self.device_view(did).await?;
        let hidden = self.key_hidden_points(k, &v.product_key).await?;
        redact(&mut v, &hidden);
        Ok(v)
    }

    /// A page of the devices `k` reaches, optionally of one of its products (another product:
    /// `NotFound("product")`). Needs `read`; audited (`enterprise.device_list`).
    pub async fn key_devices(
        &self,
        k: &KeySession,
        product_key: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<DeviceView>, i64)> {
        Self::require_scope(k, Scope::Read)?;
        let pk = product_key.unwrap_or("");
        if !pk.is_empty() && !k.products.iter().any(|p| p == pk) {
            return Err(Error::NotFound("product"));
        }
        let (rows, total) = self
            .store()
            .list_key_devices(&k.key_id, &k.enterprise_id, pk, offset, limit)
            .await?;
        let target = if pk.is_empty() {
            format!("enterprise:{}", k.enterprise_id)
        } else {
            format!("product:{pk}")
        };
        self.audit_key_access(k, action::ENTERPRISE_DEVICE_LIST, target)
            .await;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut v = DeviceView::from(r);
            let hidden = self.key_hidden_points(k, &v.product_key).await?;
            redact(&mut v, &hidden);
            out.push(v);
        }
        Ok((out, total))
    }

    /// The key's enterprise audit entries. Needs `read`; the read itself is audited (`audit.read`).
    pub async fn key_audit(
        &self,
        k: &KeySession,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<crate::audit::AuditEntryView>, i64)> {
        Self::require_scope(k, Scope::Read)?;
        let page = self
            .tenant_audit(&k.enterprise_id, filter, offset, limit)
            .await?;
        self.audit_key_access(
            k,
            action::AUDIT_READ,
            format!("enterprise:{}", k.enterprise_id),
        )
        .await;
        Ok(page)
    }
}
