//! Devices that prove themselves with an Ed25519 key made on the device: pre-registration of the
//! public key by the product's manufacturer, and the challenge a CONNECT (MQTT 5 enhanced
//! authentication, method [`sign::ED25519_METHOD`]) or a re-authentication answers.
//!
//! The server sends a fresh random nonce; the device signs [`sign::ed25519_challenge`] of its id
//! and the nonce. No secret of the device is ever known to the server, and a signature is good
//! for one nonce only, so there is nothing to replay. An unknown device, a device without a key
//! and a wrong signature are refused alike (not authorised), after the same work.
//!
//! Nothing here speaks MQTT: the gateway runs the exchange and maps the refusals to its codes.

use crate::access::tenancy::{Act, Caller};
use crate::audit::action;
use crate::audit::{Actor, AuditEvent};
use crate::auth_refusal::{self, RefusalReason};
use crate::device::bus::DeviceEvent;
use crate::device::runtime::{ConnectRefusal, DeviceAuth};
use crate::secret::{random_hex, Secret};
use crate::{Core, Error, Result};
use ed25519_dalek::{Signature, VerifyingKey};
use rampart_proto::ids::{valid_hardware_id, Did, ProductKey};
use rampart_proto::sign;
use rampart_store::StoreError;

/// The `mode` of a device pre-registered with its public key (`devices.mode`, and the
/// registration event's `mode`).
pub const MODE_ED25519: &str = "ed25519";

/// An Ed25519 public key: 32 bytes that decode to a point of the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key from its standard base64 (32 bytes once decoded); the reason in words otherwise.
    pub fn parse_base64(text: &str) -> std::result::Result<PublicKey, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| "public_key.ed25519: not base64".to_owned())?;
        PublicKey::from_slice(&bytes)
    }

    fn from_slice(bytes: &[u8]) -> std::result::Result<PublicKey, String> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            format!(
                "public_key.ed25519: {} bytes, an Ed25519 key has 32",
                bytes.len()
            )
        })?;
        VerifyingKey::from_bytes(&raw)
            .map(PublicKey)
            .map_err(|_| "public_key.ed25519: not a valid Ed25519 public key".to_owned())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The key as standard base64.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.as_bytes())
    }

    /// Whether `signature` (64 bytes) is this key's over `msg` (strict verification: no
    /// malleable or small-order forms).
    fn verifies(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(msg, &sig).is_ok()
    }
}

/// A fresh challenge nonce ([`sign::ED25519_NONCE_LEN`] random bytes from the OS).
pub fn challenge_nonce() -> [u8; sign::ED25519_NONCE_LEN] {
    use rand::RngCore as _;
    let mut n = [0u8; sign::ED25519_NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// A key checked against when the device has none (or is unknown), so every refusal costs the
/// same verification; its answer is never used.
fn stand_in_key() -> VerifyingKey {
    static KEY: std::sync::OnceLock<VerifyingKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[0x5a; 32]).verifying_key())
}

impl Core {
    /// Pre-register a device of `product_key` with the Ed25519 public key made on it (standard
    /// base64 of 32 bytes). Needs the right to manage the product. The device gets a did, a
    /// passcode (for binding; the admin reads it like any device's) and a random sealed secret
    /// nobody is told, so the device connects only by answering the key challenge. A hardware id
    /// already registered in the product is a conflict. Audited (`device.register`, detail
    /// `method=ed25519`). Returns the did.
    pub async fn preregister_device(
        &self,
        caller: &Caller,
        product_key: &str,
        hardware_id: &str,
        public_key: &str,
        source_ip: Option<String>,
    ) -> Result<String> {
        let pk = ProductKey::parse(product_key).map_err(|_| Error::NotFound("product"))?;
        self.authorize_product(caller, pk.as_str(), Act::Manage)
            .await?;
        if !valid_hardware_id(hardware_id) {
            return Err(Error::Invalid(
                "hardware_id: 1-64 printable ASCII, no space, `&`, `=` or `|`".into(),
            ));
        }
        let key = PublicKey::parse_base64(public_key).map_err(Error::Invalid)?;
        let product = self.product(pk.as_str()).await?;
        // A secret nobody knows: the column stays what every other device has, and the password
        // paths refuse this device as they refuse a wrong secret.
        let (row, _passcode) = self.new_device_row(
            pk.as_str(),
            hardware_id,
            MODE_ED25519,
            &Secret::new(random_hex(16)),
        );
        let did = row.did.clone();
        let outcome = match self
            .store()
            .insert_device_with_key(&row, key.as_bytes())
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Error::Conflict(
                "a device with this hardware_id is already registered in the product".into(),
            )),
            Err(e) => Err(e.into()),
        };
        let mut ev = AuditEvent::new(
            &caller.actor(),
            action::DEVICE_REGISTER,
            if outcome.is_ok() {
                "ok created"
            } else {
                "refused: already registered"
            },
        )
        .target(match &outcome {
            Ok(()) => format!("device:{did}"),
            Err(_) => format!("product:{pk}"),
        })
        .detail(format!(
            "product={pk} hardware_id={hardware_id} method=ed25519"
        ))
        .tenant_opt(product.enterprise_id.clone());
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        // Only a conflict is worth an entry among the failures; a store error is logged.
        if !matches!(outcome, Err(Error::Store(_))) {
            self.audit(ev).await;
        }
        outcome?;
        self.bus()
            .publish_event(DeviceEvent::Registered {
                did: did.clone(),
                ts: self.now_ms(),
                hardware_id: hardware_id.to_owned(),
                mode: MODE_ED25519.to_owned(),
                created: true,
            })
            .await;
        Ok(did)
    }

    /// A device's Ed25519 public key as base64, if it has one (`NotFound` for an unknown did).
    pub async fn device_public_key(&self, did: &str) -> Result<Option<String>> {
        let key = self
            .store()
            .device_public_key(did)
            .await?
            .ok_or(Error::NotFound("device"))?;
        Ok(key.and_then(|k| PublicKey::from_slice(&k).ok().map(|k| k.to_base64())))
    }

    /// The end of a CONNECT's Ed25519 challenge: the client id `client_id` (the did) signed
    /// `nonce` with `signature`. The device's reconnect-storm ban is checked first, its connect
    /// rates count the attempt once the signature holds (as for a password); a refusal is logged,
    /// counted and audited like a password CONNECT's. `listener` names the listener.
    pub async fn authenticate_ed25519(
        &self,
        client_id: &str,
        nonce: &[u8],
        signature: &[u8],
        source_ip: &str,
        listener: &'static str,
    ) -> std::result::Result<DeviceAuth, ConnectRefusal> {
        let limits = self.connect_limits();
        let claimed: String = client_id.chars().take(64).collect();
        if let Err(r) = limits.check_banned(client_id, self.now_ms()) {
            let why = RefusalReason::Limit(r.state.name);
            auth_refusal::record(listener, &why, &claimed, Some(source_ip));
            return Err(ConnectRefusal::Limited(Box::new(r)));
        }
        let dev = match self.check_ed25519(client_id, nonce, signature).await {
            Ok(d) => d,
            Err((refusal, why)) => {
                self.ed25519_refused(listener, &refusal, &why, &claimed, Some(source_ip))
                    .await;
                return Err(refusal);
            }
        };
        if let Err(r) = limits.admit_device(dev.did.as_str(), self.now_ms()) {
            let why = RefusalReason::Limit(r.state.name);
            auth_refusal::record(listener, &why, &claimed, Some(source_ip));
            return Err(ConnectRefusal::Limited(Box::new(r)));
        }
        Ok(dev)
    }

    /// Re-authentication on a live session of `did` (MQTT 5 AUTH `0x19`): the same checks as at
    /// CONNECT, but no connect limit counts it. A refusal is logged, counted and audited.
    pub async fn reauthenticate_ed25519(
        &self,
        did: &str,
        nonce: &[u8],
        signature: &[u8],
        source_ip: Option<&str>,
        listener: &'static str,
    ) -> std::result::Result<DeviceAuth, ConnectRefusal> {
        match self.check_ed25519(did, nonce, signature).await {
            Ok(d) => Ok(d),
            Err((refusal, why)) => {
                self.ed25519_refused(listener, &refusal, &why, did, source_ip)
                    .await;
                Err(refusal)
            }
        }
    }

    /// The checks, in order. Every refusal is `NotAuthorized` to the device; the reason is the
    /// operator's. An unknown device and one without a key are checked against a stand-in key,
    /// so they cost what a wrong signature costs.
    async fn check_ed25519(
        &self,
        client_id: &str,
        nonce: &[u8],
        signature: &[u8],
    ) -> std::result::Result<DeviceAuth, (ConnectRefusal, RefusalReason)> {
        let no = |why| (ConnectRefusal::NotAuthorized, why);
        let did = Did::parse(client_id).ok();
        let row = match &did {
            Some(did) => match self.credential_lookups().get(did.as_str()).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "device lookup failed");
                    return Err(no(RefusalReason::Internal));
                }
            },
            None => None,
        };
        let key = row
            .as_ref()
            .and_then(|r| r.public_key.as_deref())
            .and_then(|k| PublicKey::from_slice(k).ok());
        let msg = sign::ed25519_challenge(client_id, nonce);
        let good = match &key {
            Some(k) => k.verifies(&msg, signature),
            None => {
                let _ = PublicKey(stand_in_key()).verifies(&msg, signature);
                false
            }
        };
        let (Some(did), Some(row)) = (did, row) else {
            return Err(no(RefusalReason::Unknown("device")));
        };
        if key.is_none() {
            return Err(no(RefusalReason::NoPublicKey));
        }
        if !good || nonce.len() != sign::ED25519_NONCE_LEN {
            return Err(no(RefusalReason::WrongKeySignature));
        }
        let product = self
            .product(&row.product_key)
            .await
            .map_err(|_| no(RefusalReason::NotAllowed("the device's product is gone")))?;
        if row.disabled {
            return Err(no(RefusalReason::NotAllowed("the device is disabled")));
        }
        Ok(DeviceAuth { did, product })
    }

    /// Log, count and (within `mqtt.limits.refusal_audit_per_ip`) audit a refused challenge.
    async fn ed25519_refused(
        &self,
        listener: &'static str,
        refusal: &ConnectRefusal,
        why: &RefusalReason,
        claimed: &str,
        source_ip: Option<&str>,
    ) {
        auth_refusal::record(listener, why, claimed, source_ip);
        let ip = source_ip.and_then(|s| s.parse::<std::net::IpAddr>().ok());
        let Some(left_out) = self.connect_limits().audit_refusal(ip, self.now_ms()) else {
            return;
        };
        let mut detail = format!("reason={}; method={}", why.label(), sign::ED25519_METHOD);
        if left_out > 0 {
            detail.push_str(&format!(
                "; {left_out} more refused from this address since its last entry"
            ));
        }
        let mut ev = AuditEvent::new(
            &Actor::device_candidate(claimed),
            action::DEVICE_CONNECT,
            &format!("refused: {refusal:?}"),
        )
        .detail(detail);
        if let Some(ip) = source_ip {
            ev = ev.source_ip(ip);
        }
        self.audit(ev).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn pair() -> (SigningKey, String) {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let pk = PublicKey(sk.verifying_key()).to_base64();
        (sk, pk)
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_on_the_curve() {
        let (sk, b64) = pair();
        assert_eq!(
            PublicKey::parse_base64(&b64).unwrap().as_bytes(),
            sk.verifying_key().as_bytes()
        );
        assert!(PublicKey::parse_base64("not base64!")
            .unwrap_err()
            .contains("not base64"));
        assert!(PublicKey::parse_base64("AAAA")
            .unwrap_err()
            .contains("3 bytes"));
        // y = 2 is not the y coordinate of any point of the curve.
        let mut off = [0u8; 32];
        off[0] = 2;
        use base64::Engine as _;
        let off = base64::engine::general_purpose::STANDARD.encode(off);
        assert!(PublicKey::parse_base64(&off)
            .unwrap_err()
            .contains("not a valid"));
    }

    #[test]
    fn a_signature_holds_for_its_message_only() {
        let (sk, b64) = pair();
        let key = PublicKey::parse_base64(&b64).unwrap();
        let msg = sign::ed25519_challenge("d1", &[7; 32]);
        let sig = sk.sign(&msg).to_bytes();
        assert!(key.verifies(&msg, &sig));
        assert!(!key.verifies(&sign::ed25519_challenge("d1", &[8; 32]), &sig));
        assert!(!key.verifies(&sign::ed25519_challenge("d2", &[7; 32]), &sig));
        assert!(!key.verifies(&msg, &sig[..63]));
        assert_ne!(challenge_nonce(), challenge_nonce());
    }

    #[tokio::test]
    async fn the_challenge_is_refused_alike_for_unknown_keyless_and_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let core = crate::test_support::core_with_device(dir.path(), "[]").await;
        let (sk, b64) = pair();
        let did = core
            .preregister_device(
                &Caller::Operator(Actor::admin()),
                "pk",
                "hw-key-1",
                &b64,
                None,
            )
            .await
            .unwrap();
        let nonce = challenge_nonce();
        let sig = sk.sign(&sign::ed25519_challenge(&did, &nonce)).to_bytes();
        let ok = core
            .authenticate_ed25519(&did, &nonce, &sig, "10.0.0.1", "mqtt_tls")
            .await
            .unwrap();
        assert_eq!(ok.did.as_str(), did);
        let other = challenge_nonce();
        for (who, n) in [
            (did.as_str(), &other[..]),
            ("d1", &nonce[..]),
            ("nobody", &nonce[..]),
        ] {
            assert_eq!(
                core.authenticate_ed25519(who, n, &sig, "10.0.0.1", "mqtt_tls")
                    .await
                    .map(|_| ()),
                Err(ConnectRefusal::NotAuthorized),
                "{who}"
            );
        }
        assert_eq!(
            core.device_public_key(&did).await.unwrap().as_deref(),
            Some(b64.as_str())
        );
        assert_eq!(core.device_public_key("d1").await.unwrap(), None);
        let again = core
            .preregister_device(
                &Caller::Operator(Actor::admin()),
                "pk",
                "hw-key-1",
                &b64,
                None,
            )
            .await;
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    }
}
