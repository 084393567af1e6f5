//! Certificate devices: the CAs a product trusts for its devices' client certificates, their
//! revocation lists, and the check of a certificate a device presents (at CONNECT over TLS, or
//! at registration over HTTPS).
//!
//! The TLS listeners accept any client certificate whose holder proves its key in the handshake;
//! whether the certificate names a device is decided here, where the product's CAs are known:
//! the chain (one of the issuer's CAs as trust anchor), the validity period, revocation (the CA's
//! newest CRL), the key (RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519; RSA-1024 only where
//! the product opts in) and the subject CN, which is the device's hardware id. A refusal names the
//! failed check to the operator (`auth_refusal`) and nothing to the device.
//!
//! Never keeps a device's private key or the certificate itself: a device row records the
//! fingerprint, serial and expiry of the certificate it last connected with, so revocation can
//! close its session and its expiry can be shown before it bites.

use crate::access::tenancy::{Act, Caller};
use crate::audit::{action, Actor, AuditEvent};
use crate::auth_refusal::RefusalReason;
use crate::device::runtime::{ConnectRefusal, DeviceAuth};
use crate::secret::{random_hex, Secret};
use crate::{Core, Error, Result};
use rampart_proto::ids::Did;
use rampart_store::{CaRow, CrlRow, DeviceCertRow, DeviceRow, StoreError};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest PEM accepted for a CA certificate or a CRL.
pub const MAX_PEM_BYTES: usize = 1 << 20;

/// A CA a product trusts, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CaView {
    pub ca_id: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256: String,
    /// The subject (RFC 4514).
    pub subject: String,
    /// Unix milliseconds.
    pub not_after: i64,
    pub created_at: i64,
}

impl From<CaRow> for CaView {
    fn from(r: CaRow) -> Self {
        CaView {
            ca_id: r.ca_id,
            sha256: r.sha256,
            subject: r.subject,
            not_after: r.not_after,
            created_at: r.created_at,
        }
    }
}

/// What a posted revocation list changed.
#[derive(Debug, Clone, Serialize)]
pub struct CrlOutcome {
    /// The CA that signed it.
    pub ca_id: String,
    /// Its CRL number (decimal).
    pub crl_number: String,
    /// Certificates it revokes.
    pub revoked: usize,
    /// Live sessions of devices whose certificate it revokes, closed now.
    pub closed_sessions: usize,
}

/// The certificate a device last connected with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateView {
    pub sha256: String,
    /// Unix milliseconds.
    pub not_after: i64,
}

/// The public key of a presented certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa(usize),
    P256,
    P384,
    Ed25519,
    Other,
}

/// The fields of a presented certificate the checks need, parsed once.
struct Presented<'a> {
    der: &'a [u8],
    hardware_id: Option<String>,
    issuer: String,
    serial: String,
    sha256: String,
    not_after: i64,
    key: KeyKind,
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn parse_presented(der: &[u8]) -> Option<Presented<'_>> {
    let (rest, cert) = X509Certificate::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let hardware_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(Presented {
        der,
        hardware_id,
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial()),
        sha256: sha256_hex(der),
        not_after: cert.validity().not_after.timestamp().saturating_mul(1000),
        key: key_kind(&cert),
    })
}

fn key_kind(cert: &X509Certificate<'_>) -> KeyKind {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa(rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve.map(|o| o.to_id_string()).as_deref() {
                Some("1.2.840.10045.3.1.7") => KeyKind::P256,
                Some("1.3.132.0.34") => KeyKind::P384,
                _ => KeyKind::Other,
            }
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => KeyKind::Ed25519,
        _ => KeyKind::Other,
    }
}

/// The DER of the single certificate (or CRL) in `pem`, which must carry `label`.
fn pem_der(pem: &str, label: &str) -> Result<Vec<u8>> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(Error::Invalid(format!(
            "pem is larger than {MAX_PEM_BYTES} bytes"
        )));
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes())
        .map_err(|_| Error::Invalid(format!("pem: not a PEM block ({label} expected)")))?;
    if block.label != label {
        return Err(Error::Invalid(format!(
            "pem: a {} block, {label} expected",
            block.label
        )));
    }
    Ok(block.contents)
}

/// The CRL number of a list (decimal), or 0 when it has none.
fn crl_number(crl: &x509_parser::revocation_list::CertificateRevocationList<'_>) -> String {
    crl.crl_number()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "0".into())
}

/// Whether decimal `a` is a larger number than decimal `b` (CRL numbers may exceed 64 bits).
fn decimal_greater(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) > (b.len(), b)
}

impl Core {
    /// Add a CA certificate (PEM) to a product's trusted CAs. Owners only; audited
    /// (`product.ca_add`). Refused: not a CA certificate, expired, or one the product has.
    pub async fn add_product_ca(
        &self,
        caller: &Caller,
        product_key: &str,
        pem: &str,
        ip: Option<String>,
    ) -> Result<CaView> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let der = pem_der(pem, "CERTIFICATE")?;
        let (rest, cert) = X509Certificate::from_der(&der)
            .map_err(|e| Error::Invalid(format!("pem: not an X.509 certificate ({e})")))?;
        if !rest.is_empty() {
            return Err(Error::Invalid("pem: bytes after the certificate".into()));
        }
        if !cert.is_ca() {
            return Err(Error::Invalid(
                "the certificate is not a CA certificate (basicConstraints cA is not set)".into(),
            ));
        }
        let not_after = cert.validity().not_after.timestamp().saturating_mul(1000);
        if not_after <= self.now_ms() {
            return Err(Error::Invalid("the CA certificate has expired".into()));
        }
        let anchor_der = CertificateDer::from(der.as_slice());
        webpki::anchor_from_trusted_cert(&anchor_der).map_err(|e| {
            Error::Invalid(format!("the certificate cannot be a trust anchor: {e}"))
        })?;
        let row = CaRow {
            ca_id: format!("ca_{}", random_hex(8)),
            product_key: product_key.to_owned(),
            sha256: sha256_hex(&der),
            subject: cert.subject().to_string(),
            not_after,
            der: der.clone(),
            created_at: self.now_ms(),
        };
        match self.store().insert_ca(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::Conflict(
                    "the product trusts this CA certificate already".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_CA_ADD, "ok")
            .target(format!("product:{product_key}"))
            .detail(format!("ca_id={} sha256={}", row.ca_id, row.sha256));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(row.into())
    }

    /// A product's trusted CAs, oldest first.
    pub async fn list_product_cas(
        &self,
        caller: &Caller,
        product_key: &str,
    ) -> Result<Vec<CaView>> {
        self.authorize_product(caller, product_key, Act::Read)
            .await?;
        Ok(self
            .store()
            .list_cas(product_key)
            .await?
            .into_iter()
            .map(CaView::from)
            .collect())
    }

    /// Stop trusting a CA (its revocation list goes with it). Devices whose certificates it
    /// issued are refused from their next connection. Owners only; audited (`product.ca_delete`).
    pub async fn delete_product_ca(
        &self,
        caller: &Caller,
        product_key: &str,
        ca_id: &str,
        ip: Option<String>,
    ) -> Result<CaView> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let Some(row) = self.store().delete_ca(product_key, ca_id).await? else {
            return Err(Error::NotFound("ca certificate"));
        };
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_CA_DELETE, "ok")
            .target(format!("product:{product_key}"))
            .detail(format!("ca_id={ca_id}"));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(row.into())
    }

    /// Take a revocation list (PEM) signed by one of the product's CAs as that CA's current list,
    /// unless the CA's stored list has the same or a higher CRL number; then close, at once, the
    /// live sessions of the product's devices whose last certificate it revokes. Owners only;
    /// audited (`product.crl`).
    pub async fn put_product_crl(
        &self,
        caller: &Caller,
        product_key: &str,
        pem: &str,
        ip: Option<String>,
    ) -> Result<CrlOutcome> {
        self.authorize_product(caller, product_key, Act::Secrets)
            .await?;
        let der = pem_der(pem, "X509 CRL")?;
        let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| Error::Invalid(format!("pem: not an X.509 CRL ({e})")))?;
        if !rest.is_empty() {
            return Err(Error::Invalid("pem: bytes after the CRL".into()));
        }
        webpki::OwnedCertRevocationList::from_der(&der)
            .map_err(|e| Error::Invalid(format!("the CRL is not usable: {e}")))?;
        let issuer = crl.issuer().to_string();
        let cas = self.store().list_cas(product_key).await?;
        let ca = cas
            .iter()
            .filter(|c| c.subject == issuer)
            .find(|c| {
                X509Certificate::from_der(&c.der)
                    .is_ok_and(|(_, ca)| crl.verify_signature(ca.public_key()).is_ok())
            })
            .ok_or_else(|| {
                Error::Invalid("the CRL is not signed by one of the product's CAs".into())
            })?;
        let number = crl_number(&crl);
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        let row = CrlRow {
            ca_id: ca.ca_id.clone(),
            crl_number: number.clone(),
            der: der.clone(),
            this_update: crl.last_update().timestamp().saturating_mul(1000),
            created_at: self.now_ms(),
        };
        let stored = self
            .store()
            .put_crl(&row, |old| decimal_greater(&number, old))
            .await?;
        if !stored {
            return Err(Error::Conflict(format!(
                "the CA's stored CRL has a CRL number of {number} or higher"
            )));
        }
        let dids = self
            .store()
            .devices_with_serials(&ca.ca_id, &serials)
            .await?;
        let mut closed = 0;
        for did in &dids {
            if self.bus().is_attached(did) {
                self.bus().kick(did);
                closed += 1;
            }
        }
        let mut ev = AuditEvent::new(&caller.actor(), action::PRODUCT_CRL, "ok")
            .target(format!("product:{product_key}"))
            .detail(format!(
                "ca_id={} crl_number={number} revoked={} closed_sessions={closed}",
                ca.ca_id,
                serials.len()
            ));
        if let Some(ip) = ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
        Ok(CrlOutcome {
            ca_id: ca.ca_id.clone(),
            crl_number: number,
            revoked: serials.len(),
            closed_sessions: closed,
        })
    }

    /// The certificate a device last connected with, if it is a certificate device.
    pub async fn device_certificate(&self, did: &str) -> Result<Option<CertificateView>> {
        Ok(self
            .store()
            .device_cert(did)
            .await?
            .map(|r| CertificateView {
                sha256: r.sha256,
                not_after: r.not_after,
            }))
    }

    /// The device a client certificate names, for a CONNECT over TLS: refused unless the
    /// certificate passes every check in the module documentation. A device unknown to the
    /// product is registered now when the product has `x509_jit` (and, with `allowlist`, its
    /// hardware id is listed). A non-empty `client_id` must be that device's id. Refusals are
    /// logged, counted and audited like those of passwords.
    pub async fn authenticate_certificate(
        &self,
        client_id: &str,
        cert: &[u8],
        source_ip: &str,
        listener: &'static str,
    ) -> std::result::Result<DeviceAuth, ConnectRefusal> {
        let presented = parse_presented(cert);
        let claimed = presented
            .as_ref()
            .and_then(|p| p.hardware_id.clone())
            .unwrap_or_else(|| client_id.to_owned());
        let res = self
            .certificate_device(presented, None, client_id, source_ip)
            .await;
        let dev = match res {
            Ok(d) => d,
            Err((refusal, why)) => {
                self.connect_refused(listener, &refusal, &why, &claimed, source_ip)
                    .await;
                return Err(refusal);
            }
        };
        let limits = self.connect_limits();
        let now = self.now_ms();
        let checked = limits
            .check_banned(dev.did.as_str(), now)
            .and_then(|()| limits.admit_device(dev.did.as_str(), now));
        if let Err(r) = checked {
            let why = RefusalReason::Limit(r.state.name);
            crate::auth_refusal::record(listener, &why, dev.did.as_str(), Some(source_ip));
            return Err(ConnectRefusal::Limited(Box::new(r)));
        }
        Ok(dev)
    }

    /// Registration over HTTPS with a client certificate (`{"mode": "x509", "product_key"}`):
    /// the device's id, found or (with `x509_jit`) made by the same checks as a CONNECT. For
    /// MQTT 3.1.1 devices, which cannot learn an assigned client id. The limits of signed
    /// registration apply (`register.ip`, and a refused certificate counts towards
    /// `register.failures.ip`); `source_ip` is `None` only for in-process tools.
    pub async fn register_certificate(
        &self,
        product_key: &str,
        cert: Option<&[u8]>,
        source_ip: Option<&str>,
    ) -> Result<String> {
        let Some(cert) = cert else {
            return Err(Error::Invalid(
                "mode x509 needs a client certificate in the TLS handshake".into(),
            ));
        };
        let presented = parse_presented(cert);
        let claimed = presented
            .as_ref()
            .and_then(|p| p.hardware_id.clone())
            .unwrap_or_default();
        let now = self.now_ms();
        self.admit_registration(source_ip, &claimed, now)?;
        match self
            .certificate_device(
                presented,
                Some(product_key),
                "",
                source_ip.unwrap_or_default(),
            )
            .await
        {
            Ok(dev) => Ok(dev.did.as_str().to_owned()),
            Err((_, why)) => {
                crate::auth_refusal::record("http", &why, &claimed, source_ip);
                self.count_registration_failure(source_ip, now);
                Err(Error::Unauthorized)
            }
        }
    }

    /// The checks of a presented certificate, in order; `product_key` narrows the products
    /// whose CAs are tried (registration names its product).
    async fn certificate_device(
        &self,
        presented: Option<Presented<'_>>,
        product_key: Option<&str>,
        client_id: &str,
        source_ip: &str,
    ) -> std::result::Result<DeviceAuth, (ConnectRefusal, RefusalReason)> {
        use ConnectRefusal::*;
        let refuse = |why: &'static str| (NotAuthorized, RefusalReason::Certificate(why));
        let p = presented.ok_or_else(|| refuse("not a parsable X.509 certificate"))?;
        let hardware_id = p
            .hardware_id
            .clone()
            .filter(|h| !h.is_empty() && h.len() <= 64 && !h.chars().any(char::is_control))
            .ok_or_else(|| refuse("no usable subject CN (the device's hardware id)"))?;
        let candidates = self.store().cas_by_subject(&p.issuer).await.map_err(|e| {
            tracing::error!(error = %e, "CA lookup failed");
            (NotAuthorized, RefusalReason::Internal)
        })?;
        let now = self.now_ms();
        let mut last = refuse("not issued by a CA of a product that allows certificates");
        for (ca, crl) in candidates {
            if product_key.is_some_and(|pk| pk != ca.product_key) {
                continue;
            }
            let Ok(product) = self.product(&ca.product_key).await else {
                continue;
            };
            if !product.identity.x509 {
                continue;
            }
            if let Err(why) = verify_chain(&ca, crl.as_ref(), &p, now) {
                last = refuse(why);
                continue;
            }
            let weak = match p.key {
                KeyKind::Rsa(bits) if bits >= 2048 => false,
                KeyKind::Rsa(bits) if bits >= 1024 && product.identity.allow_rsa1024 => true,
                KeyKind::Rsa(_) => {
                    return Err(refuse(
                        "RSA key below 2048 bits (the product does not allow RSA-1024)",
                    ))
                }
                KeyKind::P256 | KeyKind::P384 | KeyKind::Ed25519 => false,
                KeyKind::Other => {
                    return Err(refuse(
                        "key type not accepted (RSA 2048+, ECDSA P-256/P-384 or Ed25519)",
                    ))
                }
            };
            let row = match self
                .store()
                .get_device_by_hardware(&ca.product_key, &hardware_id)
                .await
            {
                Ok(Some(row)) => row,
                Ok(None) if product.identity.x509_jit => {
                    self.register_just_in_time(
                        &ca.product_key,
                        &hardware_id,
                        product.identity.allowlist,
                        source_ip,
                    )
                    .await?
                }
                Ok(None) => return Err((
                    NotAuthorized,
                    RefusalReason::Unknown(
                        "device (the product does not register certificate devices just in time)",
                    ),
                )),
                Err(e) => {
                    tracing::error!(error = %e, "device lookup failed");
                    return Err((NotAuthorized, RefusalReason::Internal));
                }
            };
            if !client_id.is_empty() && client_id != row.did {
                return Err((NotAuthorized, RefusalReason::ClientIdMismatch));
            }
            if self
                .credential_lookups()
                .get(&row.did)
                .await
                .ok()
                .flatten()
                .is_some_and(|c| c.disabled)
            {
                return Err((
                    NotAuthorized,
                    RefusalReason::NotAllowed("the device is disabled"),
                ));
            }
            let did = Did::parse(&row.did).map_err(|_| (NotAuthorized, RefusalReason::Internal))?;
            let seen = DeviceCertRow {
                did: row.did.clone(),
                ca_id: ca.ca_id.clone(),
                serial: p.serial.clone(),
                sha256: p.sha256.clone(),
                not_after: p.not_after,
                seen_at: now,
            };
            if let Err(e) = self.store().put_device_cert(&seen).await {
                tracing::error!(error = %e, did = %row.did, "device certificate not recorded");
            }
            if weak {
                let ev = AuditEvent::new(
                    &Actor::device(&row.did),
                    action::DEVICE_CONNECT_WEAK_KEY,
                    "ok",
                )
                .source_ip(source_ip)
                .detail(format!(
                    "RSA key of {} bits; sha256={}",
                    match p.key {
                        KeyKind::Rsa(b) => b,
                        _ => 0,
                    },
                    p.sha256
                ));
                self.audit(ev).await;
            }
            return Ok(DeviceAuth { did, product });
        }
        Err(last)
    }

    /// A certificate device's first connection to a product with `x509_jit`: its row, with a
    /// secret nobody is told (the certificate is its credential) and a passcode for binding.
    async fn register_just_in_time(
        &self,
        product_key: &str,
        hardware_id: &str,
        allowlist: bool,
        source_ip: &str,
    ) -> std::result::Result<DeviceRow, (ConnectRefusal, RefusalReason)> {
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "just-in-time registration failed");
            (ConnectRefusal::NotAuthorized, RefusalReason::Internal)
        };
        if allowlist
            && !self
                .store()
                .allowlist_contains(product_key, hardware_id)
                .await
                .map_err(|e| internal(&e))?
        {
            return Err((
                ConnectRefusal::NotAuthorized,
                RefusalReason::NotAllowed("hardware id is not on the product's allowlist"),
            ));
        }
        // The certificate is the device's credential: its secret is never told to anyone.
        let (row, _passcode) = self.new_device_row(
            product_key,
            hardware_id,
            "x509",
            &Secret::new(random_hex(16)),
        );
        let did = row.did.clone();
        match self.store().insert_device(&row).await {
            Ok(()) => {
                let ev = AuditEvent::new(&Actor::device(&did), action::DEVICE_REGISTER, "ok")
                    .target(format!("product:{product_key}"))
                    .source_ip(source_ip)
                    .detail(format!("mode=x509 just-in-time hardware_id={hardware_id}"));
                self.audit(ev).await;
                self.announce_registered(&did, hardware_id, "x509", true)
                    .await;
                Ok(row)
            }
            // Two first connections at once: the other made the row.
            Err(StoreError::Conflict) => self
                .store()
                .get_device_by_hardware(product_key, hardware_id)
                .await
                .map_err(|e| internal(&e))?
                .ok_or((ConnectRefusal::NotAuthorized, RefusalReason::Internal)),
            Err(e) => Err(internal(&e)),
        }
    }
}

/// The chain from the presented certificate to `ca`, at `now`, against the CA's CRL.
fn verify_chain(
    ca: &CaRow,
    crl: Option<&CrlRow>,
    p: &Presented<'_>,
    now: i64,
) -> std::result::Result<(), &'static str> {
    use webpki::Error as E;
    let ca_der = CertificateDer::from(ca.der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&ca_der)
        .map_err(|_| "the product's CA certificate is unusable")?;
    let ee_der = CertificateDer::from(p.der);
    let ee =
        webpki::EndEntityCert::try_from(&ee_der).map_err(|_| "not a parsable X.509 certificate")?;
    let crl = match crl {
        Some(c) => Some(webpki::CertRevocationList::Owned(
            webpki::OwnedCertRevocationList::from_der(&c.der)
                .map_err(|_| "the CA's CRL is unusable")?,
        )),
        None => None,
    };
    let crls: Vec<&webpki::CertRevocationList<'_>> = crl.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crls).ok().map(|b| {
        b.with_depth(webpki::RevocationCheckDepth::EndEntity)
            .with_status_policy(webpki::UnknownStatusPolicy::Allow)
            .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
            .build()
    });
    let time = UnixTime::since_unix_epoch(Duration::from_millis(u64::try_from(now).unwrap_or(0)));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        time,
        webpki::KeyUsage::client_auth(),
        revocation,
        None,
    )
    .map(|_| ())
    .map_err(|e| match e {
        E::CertExpired { .. } => "expired",
        E::CertNotValidYet { .. } => "not yet valid",
        E::CertRevoked => "revoked by its CA's CRL",
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => {
            "not issued by one of the product's CAs"
        }
        E::RequiredEkuNotFoundContext(_) => "not for client authentication (extended key usage)",
        E::CaUsedAsEndEntity => "a CA certificate, not a device certificate",
        _ => "its chain to the product's CA does not verify",
    })
}
