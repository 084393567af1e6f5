//! Erasure and access to one's own data (GDPR): a manufacturer deletes a device, a product, its
//! developer account or its enterprise; an end user deletes their account or downloads
//! everything held about them.
//!
//! Deleting is final: rows are removed, not flagged, in one store transaction per subject. The
//! audit log keeps its entries (they name subjects by random ids, which point at nothing once the
//! rows are gone), and the erasure itself is audited with what it removed. This module must never
//! answer an erasure before the store committed it.

mod tenants;
pub mod user;

pub use rampart_store::{DeviceErased, ProductErased, UserErased};
pub use tenants::{DeveloperErasure, EnterpriseErasure, FRESH_DEVELOPER_LOGIN_MS};
pub use user::UserExport;

use crate::access::bindings::AccessChange;
use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, Actor, AuditEvent};
use crate::device::bus::DeviceEvent;
use crate::{Core, Error, Result};
use std::time::Duration;

/// How long an erasure waits for the device's live session to close before going on without it.
const SESSION_CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Core {
    /// Tell the live sessions of `dids` to close (DISCONNECT `0x98`) and wait, at most
    /// [`SESSION_CLOSE_WAIT`], until they have left the bus: after that they hand the writer
    /// nothing more. The devices must already be refused at CONNECT.
    async fn close_sessions<S: AsRef<str>>(&self, dids: &[S]) {
        for did in dids {
            self.bus().kick(did.as_ref());
        }
        let deadline = tokio::time::Instant::now() + SESSION_CLOSE_WAIT;
        let mut open: Vec<&str> = dids
            .iter()
            .map(AsRef::as_ref)
            .filter(|d| self.bus().is_attached(d))
            .collect();
        while !open.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            open.retain(|d| self.bus().is_attached(d));
        }
        if !open.is_empty() {
            tracing::warn!(
                sessions = open.len(),
                "erasing devices whose sessions had not closed yet"
            );
        }
    }

    /// Delete a device: its secrets, state, history, bindings, shares, commands, desired state,
    /// certificate and OTA records. Its live session is closed first (DISCONNECT `0x98`) and
    /// its CONNECTs are refused from the start, so nothing it sends afterwards is stored. The
    /// caller's right to manage the device is checked by the caller. Audited (`device.delete`).
    pub async fn erase_device(
        &self,
        did: &str,
        actor: &Actor,
        source_ip: Option<String>,
    ) -> Result<DeviceErased> {
        let device = self
            .store()
            .get_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        let tenant = self.product_tenant(&device.product_key).await;
        // Refused at CONNECT from now on; then the live session (if any) is told to close.
        self.store().set_device_disabled(did, true).await?;
        self.close_sessions(&[did]).await;
        // The writer commits in queue order: once this offline mark is stored, every report the
        // closed session handed over is stored too, and the erasure below removes it.
        let ts = self.now_ms();
        let barrier = self
            .writer()
            .presence(
                rampart_store::PresenceRow {
                    did: did.to_owned(),
                    online: false,
                    ts,
                },
                DeviceEvent::Offline {
                    did: did.to_owned(),
                    ts,
                    reason: "deleted".to_owned(),
                },
            )
            .await
            .map_err(Error::Internal)?;
        barrier.committed().await.map_err(Error::Internal)?;
        let erased = self
            .store()
            .erase_device(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        self.shadow_forgotten(did).await;
        self.bus().event_sink().state_cleared(did);
        self.access_changed(AccessChange::DeviceCleared {
            did: did.to_owned(),
        });
        let counts = &erased;
        let mut ev = AuditEvent::new(actor, action::DEVICE_DELETE, "ok")
            .target(format!("device:{did}"))
            .detail(format!(
                "product={} history={} bindings={} shares={} commands={} other={}",
                device.product_key,
                counts.history,
                counts.bindings,
                counts.shares,
                counts.commands,
                counts.other
            ))
            .tenant_opt(tenant);
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(erased)
    }

    /// Delete a product (its owner, or an operator) with its devices and everything recorded
    /// about them, its firmware (the files no other record uses), campaigns, OTA key, CAs and
    /// CRLs, factory identities, batches and credentials, and allowlist. Every device is refused
    /// at CONNECT first and its live session closed, as for one device. Audited
    /// (`product.delete`, with the counts).
    pub async fn erase_product(
        &self,
        caller: &Caller,
        product_key: &str,
        source_ip: Option<String>,
    ) -> Result<ProductErased> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let tenant = self.product_tenant(product_key).await;
        self.store().disable_product_devices(product_key).await?;
        let dids = self.store().product_device_ids(product_key).await?;
        self.close_sessions(&dids).await;
        self.writer()
            .barrier()
            .await
            .map_err(Error::Internal)?
            .committed()
            .await
            .map_err(Error::Internal)?;
        // The store's lock, so no upload of the same bytes slips between the holders' removal
        // and the removal of the files nothing holds any more.
        let held = crate::device::uploads::store_lock().await;
        let erased = self
            .store()
            .erase_product(product_key)
            .await?
            .ok_or(Error::NotFound("product"))?;
        for sha256 in &erased.upload_hashes {
            self.remove_unheld(sha256).await;
        }
        drop(held);
        for did in &dids {
            self.shadow_forgotten(did).await;
            self.bus().event_sink().state_cleared(did);
            self.access_changed(AccessChange::DeviceCleared { did: did.clone() });
        }
        self.forget_product(product_key);
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_DELETE, "ok")
            .target(format!("product:{product_key}"))
            .detail(format!(
                "devices={} history={} bindings={} firmware={} campaigns={} factory={} other={}",
                erased.devices,
                erased.history,
                erased.bindings,
                erased.firmware,
                erased.campaigns,
                erased.factory,
                erased.other
            ))
            .tenant_opt(tenant);
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(erased)
    }
}
