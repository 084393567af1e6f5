//! Certificate devices: a product's CAs, devices connecting over mutual TLS with certificates made
//! here (rcgen) and presented by rumqttc, just-in-time registration (MQTT 5 assigned client id;
//! HTTPS registration for MQTT 3.1.1), and revocation by CRL closing a live session.

use crate::support::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use rumqttc::tokio_rustls::rustls;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A CA: its certificate and key.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A device certificate for `hardware_id`, valid from `from` to `to` (years), with `serial`.
    fn issue(&self, hardware_id: &str, serial: u64, from: i32, to: i32) -> Device {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, hardware_id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Device { cert, key }
    }

    fn valid(&self, hardware_id: &str, serial: u64) -> Device {
        self.issue(hardware_id, serial, 2020, 2080)
    }

    /// A CRL numbered `number` revoking `serials`.
    fn crl(&self, number: u64, serials: &[u64]) -> String {
        let p = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2080, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2025, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.cert, &self.key).unwrap().pem().unwrap()
    }
}

/// A device's certificate and key.
struct Device {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Device {
    /// A TLS client config presenting this certificate and trusting the server's.
    fn tls(&self, srv: &Server) -> Arc<rustls::ClientConfig> {
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key.serialize_der()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(server_roots(srv))
                .with_client_auth_cert(vec![self.cert.der().clone()], key)
                .unwrap(),
        )
    }

    fn sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.cert.der()))
    }
}

/// Replace a product's identity modes.
async fn set_identity(srv: &Server, pk: &str, modes: Value) {
    let (s, v) = srv
        .admin("PUT", &format!("/v1/products/{pk}/identity"), Some(modes))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// The server's certificate as the one root a client trusts.
fn server_roots(srv: &Server) -> rustls::RootCertStore {
    let pem = std::fs::read(srv.ca_path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// MQTT 5 over TLS with the device's certificate and no user name or password.
fn v5(srv: &Server, dev: &Device, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, "localhost", srv.mqtt_tls);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(dev.tls(srv)),
    ));
    o
}

/// Connect; the CONNACK's assigned client id (if any), or the refusal's code.
async fn connect5(
    srv: &Server,
    dev: &Device,
    client_id: &str,
) -> (
    Result<Option<String>, p5::ConnectReturnCode>,
    rumqttc::v5::AsyncClient,
    rumqttc::v5::EventLoop,
) {
    let (c, mut el) = rumqttc::v5::AsyncClient::new(v5(srv, dev, client_id), 10);
    let r = connack5(&mut el).await;
    (r, c, el)
}

/// The CONNACK's assigned client id (if any), or the refusal's code.
async fn connack5(
    el: &mut rumqttc::v5::EventLoop,
) -> Result<Option<String>, p5::ConnectReturnCode> {
    v5_until(el, |e| match e {
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(ack))) => Some(Ok(ack
            .properties
            .and_then(|p| p.assigned_client_identifier))),
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Some(Err(code)),
        _ => None,
    })
    .await
}

/// A product allowing certificate devices (`extra` identity modes on top of `x509`) that trusts
/// `ca`; returns its key.
/// An HTTPS client trusting the server, presenting `dev`'s certificate when given.
fn https(srv: &Server, dev: Option<&Device>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().add_root_certificate(
        reqwest::Certificate::from_pem(&std::fs::read(srv.ca_path()).unwrap()).unwrap(),
    );
    if let Some(d) = dev {
        let pem = format!("{}{}", d.cert.pem(), d.key.serialize_pem());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

async fn cert_product(srv: &Server, ca: &Ca, extra: Value) -> String {
    let mut identity = json!({"dynamic_registration": true, "x509": true});
    for (k, v) in extra.as_object().unwrap() {
        identity[k] = v.clone();
    }
    let (s, v) = srv
        .admin(
            "POST",
            "/v1/products",
            Some(json!({"name": "Meter", "identity": identity,
                "datapoints": [{"name": "power", "type": "bool", "writable": true}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let pk = v["product_key"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/ca-certificates"),
            Some(json!({"pem": ca.cert.pem()})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    pk
}

#[tokio::test]
async fn a_device_connects_with_its_certificate_and_bad_certificates_are_refused() {
    let srv = Server::start().await;
    let ca = Ca::new("Acme Device CA");
    let pk = cert_product(&srv, &ca, json!({})).await;

    // The CA as the API shows it; the same CA twice is a conflict, a leaf is not a CA.
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/ca-certificates"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let listed = &v["data"][0];
    assert!(listed["ca_id"].as_str().unwrap().starts_with("ca_"), "{v}");
    assert_eq!(listed["subject"], "CN=Acme Device CA, O=Acme", "{v}");
    assert_eq!(listed["not_after"], 3_786_912_000_000_i64, "{v}");
    use sha2::Digest;
    assert_eq!(
        listed["sha256"],
        hex::encode(sha2::Sha256::digest(ca.cert.der())),
        "{v}"
    );
    let path = format!("/v1/products/{pk}/ca-certificates");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": ca.cert.pem()})))
        .await;
    assert_error(s, &v, 409, "CONFLICT");
    let leaf = ca.valid("not-a-ca", 99);
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": leaf.cert.pem()})))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": "not pem"})))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");

    // The device exists (registered with the product secret); its certificate names its
    // hardware id. No user name, no password.
    let (s, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/secret"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let ps = v["product_secret"].as_str().unwrap().to_owned();
    let (did, _, _) = srv.register(&pk, &ps, "meter-0001").await;
    let good = ca.valid("meter-0001", 1);
    let (r, c, mut el) = connect5(&srv, &good, &did).await;
    assert_eq!(r, Ok(None));
    c.publish(
        format!("dev/{did}/up"),
        Q5::AtLeastOnce,
        false,
        r#"{"power":true}"#,
    )
    .await
    .unwrap();
    v5_until(&mut el, |e| match e {
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(_))) => Some(()),
        _ => None,
    })
    .await;
    let v = srv.wait_state(&did, |v| v["state"]["power"] == true).await;
    assert_eq!(v["online"], true, "{v}");
    // The certificate it connected with, so its expiry is in sight.
    let (_, v) = srv.admin("GET", &format!("/v1/devices/{did}"), None).await;
    assert_eq!(v["certificate"]["sha256"], good.sha256(), "{v}");
    assert_eq!(v["certificate"]["not_after"], 3_471_292_800_000_i64, "{v}");
    c.disconnect().await.unwrap();

    // Refused: another CA's certificate, an expired one, one not valid yet, the right
    // certificate under another device's id, and a hardware id the product has not registered.
    let other = Ca::new("Acme Device CA");
    let not_authorized = Err(p5::ConnectReturnCode::NotAuthorized);
    let cases = [
        ("wrong CA", other.valid("meter-0001", 1), did.clone()),
        (
            "expired",
            ca.issue("meter-0001", 2, 2020, 2021),
            did.clone(),
        ),
        (
            "not yet valid",
            ca.issue("meter-0001", 3, 2070, 2080),
            did.clone(),
        ),
        (
            "another device's id",
            ca.valid("meter-0001", 4),
            "d0000000000000000001".into(),
        ),
        ("unknown hardware", ca.valid("meter-9999", 5), String::new()),
    ];
    for (what, dev, id) in cases {
        let (r, _, _) = connect5(&srv, &dev, &id).await;
        assert_eq!(r, not_authorized, "{what}");
    }
    let refusals = r#"rampart_auth_refusals_total{listener="mqtt_tls",reason="certificate"}"#;
    assert_eq!(srv.metric(refusals).await, 3.0);

    // A product without `x509` does not take certificates, even from its CA.
    set_identity(&srv, &pk, json!({"dynamic_registration": true})).await;
    let (r, _, _) = connect5(&srv, &good, &did).await;
    assert_eq!(r, not_authorized);
}

#[tokio::test]
async fn certificate_devices_register_just_in_time() {
    let srv = Server::start().await;
    let ca = Ca::new("Acme JIT CA");
    let pk = cert_product(&srv, &ca, json!({"x509_jit": true})).await;
    // MQTT 5 with an empty client id: the gateway registers the device and assigns its did.
    let dev = ca.valid("meter-jit-1", 10);
    let (r, c, _el) = connect5(&srv, &dev, "").await;
    let did = r.unwrap().expect("assigned client id");
    let (s, v) = srv.admin("GET", &format!("/v1/devices/{did}"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hardware_id"], "meter-jit-1", "{v}");
    assert_eq!(v["product_key"], pk, "{v}");
    srv.wait_state(&did, |v| v["online"] == true).await;
    c.disconnect().await.unwrap();
    // The next time it is found, under either form of client id.
    let (r, _, _) = connect5(&srv, &dev, "").await;
    assert_eq!(r, Ok(Some(did.clone())));
    let (r, _, _) = connect5(&srv, &dev, &did).await;
    assert_eq!(r, Ok(None));

    // MQTT 3.1.1 devices learn their did over HTTPS with the same certificate.
    let other = ca.valid("meter-jit-2", 11);
    let https = |dev: Option<&Device>| https(&srv, dev);
    let body = json!({"mode": "x509", "product_key": pk});
    let url = format!("https://localhost:{}/v1/device/register", srv.http);
    let r = https(Some(&other))
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let did2 = v["did"].as_str().unwrap().to_owned();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    // The same certificate again: the same device.
    let r = https(Some(&other))
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["did"], did2.as_str());
    // Then MQTT 3.1.1 with that did as client id and no password.
    let mut o = rumqttc::MqttOptions::new(did2.as_str(), "localhost", srv.mqtt_tls);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(other.tls(&srv)),
    ));
    let (_c4, mut el4) = rumqttc::AsyncClient::new(o, 10);
    v4_until(&mut el4, |e| match e {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => Some(a.code),
        _ => None,
    })
    .await;
    // Without a certificate the x509 mode is a clear error; so is a malformed product key. A
    // product that does not trust the certificate refuses it like a bad signature.
    let r = https(None).post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let bad = json!({"mode": "x509", "product_key": "not/a key"});
    let r = https(Some(&other))
        .post(&url)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (stranger, _) = srv.product(true, false).await;
    let body2 = json!({"mode": "x509", "product_key": stranger});
    let r = https(Some(&other))
        .post(&url)
        .json(&body2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // With the allowlist on, only listed hardware registers.
    set_identity(
        &srv,
        &pk,
        json!({"x509": true, "x509_jit": true, "allowlist": true}),
    )
    .await;
    let (r, _, _) = connect5(&srv, &ca.valid("meter-jit-3", 12), "").await;
    assert_eq!(r, Err(p5::ConnectReturnCode::NotAuthorized));
    let (s, v) = srv
        .admin(
            "POST",
            &format!("/v1/products/{pk}/allowlist"),
            Some(json!({"hardware_ids": ["meter-jit-3"]})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let (r, _, _) = connect5(&srv, &ca.valid("meter-jit-3", 12), "").await;
    assert!(matches!(r, Ok(Some(_))), "{r:?}");
}

#[tokio::test]
async fn a_crl_closes_the_live_session_of_a_revoked_certificate() {
    let srv = Server::start().await;
    let ca = Ca::new("Acme Revoking CA");
    let pk = cert_product(&srv, &ca, json!({"x509_jit": true})).await;
    let revoked = ca.valid("meter-r-1", 21);
    let kept = ca.valid("meter-r-2", 22);
    let (r, _c1, mut el1) = connect5(&srv, &revoked, "").await;
    let did1 = r.unwrap().unwrap();
    let (r, _c2, mut el2) = connect5(&srv, &kept, "").await;
    let did2 = r.unwrap().unwrap();
    srv.wait_state(&did1, |v| v["online"] == true).await;

    let path = format!("/v1/products/{pk}/crl");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": ca.crl(1, &[21])})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["crl_number"], "1", "{v}");
    assert_eq!(v["revoked"], 1, "{v}");
    assert_eq!(v["closed_sessions"], 1, "{v}");
    // The revoked device is told why and goes offline; the other stays.
    let code = v5_until(&mut el1, |e| match e {
        Ok(rumqttc::v5::Event::Incoming(p5::Packet::Disconnect(d))) => Some(d.reason_code),
        Err(rumqttc::v5::ConnectionError::MqttState(
            rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
        )) => Some(reason_code),
        _ => None,
    })
    .await;
    assert_eq!(code, p5::DisconnectReasonCode::AdministrativeAction);
    srv.wait_state(&did1, |v| v["online"] == false).await;
    assert_eq!(srv.state(&did2).await["online"], true);
    let _ = tokio::time::timeout(Duration::from_millis(200), el2.poll()).await;
    // And it cannot come back.
    let (r, _, _) = connect5(&srv, &revoked, "").await;
    assert_eq!(r, Err(p5::ConnectReturnCode::NotAuthorized));

    // An older or equal CRL number is refused; a CRL from a CA the product does not trust too.
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": ca.crl(1, &[]) })))
        .await;
    assert_error(s, &v, 409, "CONFLICT");
    let stranger = Ca::new("Acme Revoking CA");
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": stranger.crl(5, &[22])})))
        .await;
    assert_error(s, &v, 400, "INVALID_REQUEST");
    // A newer list that no longer names it lets it back.
    let (s, v) = srv
        .admin("POST", &path, Some(json!({"pem": ca.crl(2, &[])})))
        .await;
    assert_eq!(s, 200, "{v}");
    let (r, _, _) = connect5(&srv, &revoked, "").await;
    assert_eq!(r, Ok(Some(did1)));

    // Audited, and a deleted CA trusts nobody any more.
    let rows = audit_rows(&srv, "product.crl").await;
    assert_eq!(rows.len(), 2);
    let first = rows[1].detail.as_deref().unwrap_or_default();
    assert!(first.contains("revoked=1 closed_sessions=1"), "{rows:?}");
    let (_, v) = srv
        .admin("GET", &format!("/v1/products/{pk}/ca-certificates"), None)
        .await;
    let ca_id = v["data"][0]["ca_id"].as_str().unwrap().to_owned();
    let (s, v) = srv
        .admin(
            "DELETE",
            &format!("/v1/products/{pk}/ca-certificates/{ca_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ca_id"], ca_id.as_str());
    let (r, _, _) = connect5(&srv, &kept, "").await;
    assert_eq!(r, Err(p5::ConnectReturnCode::NotAuthorized));
}

/// An RSA key of 1024 bits as a rustls client key: ring neither makes nor signs with one, so the
/// `rsa` crate signs (RSA-PSS with SHA-256, as TLS 1.3 asks).
#[derive(Debug)]
struct SmallRsa(rsa::RsaPrivateKey);

impl rustls::sign::SigningKey for SmallRsa {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::RSA_PSS_SHA256)
            .then(|| Box::new(SmallRsaSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::RSA
    }
}

#[derive(Debug)]
struct SmallRsaSigner(rsa::RsaPrivateKey);

impl rustls::sign::Signer for SmallRsaSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let key = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(self.0.clone());
        Ok(key.sign_with_rng(&mut rand::thread_rng(), message).to_vec())
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::RSA_PSS_SHA256
    }
}

/// Presents one certificate with a [`SmallRsa`] key.
#[derive(Debug)]
struct SmallRsaCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for SmallRsaCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// An RSA public key in the form rcgen puts in a certificate.
struct RsaPublic(Vec<u8>);

impl rcgen::PublicKeyData for RsaPublic {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

/// MQTT 5 over TLS as `hardware_id` with an RSA-1024 certificate from `ca`.
async fn connect_rsa1024(
    srv: &Server,
    ca: &Ca,
    key: &rsa::RsaPrivateKey,
    hardware_id: &str,
) -> Result<Option<String>, p5::ConnectReturnCode> {
    use rsa::pkcs1::EncodeRsaPublicKey;
    let public = RsaPublic(key.to_public_key().to_pkcs1_der().unwrap().into_vec());
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, hardware_id);
    p.serial_number = Some(SerialNumber::from(1024u64));
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2080, 1, 1);
    let cert = p.signed_by(&public, &ca.cert, &ca.key).unwrap();
    let certified =
        rustls::sign::CertifiedKey::new(vec![cert.der().clone()], Arc::new(SmallRsa(key.clone())));
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(server_roots(srv))
        .with_client_cert_resolver(Arc::new(SmallRsaCert(Arc::new(certified))));
    let mut o = rumqttc::v5::MqttOptions::new("", "localhost", srv.mqtt_tls);
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
    ));
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(o, 10);
    connack5(&mut el).await
}

#[tokio::test]
async fn device_keys_are_ecdsa_ed25519_or_rsa_of_2048_bits_unless_the_product_opts_in() {
    let srv = Server::start().await;
    let ca = Ca::new("Acme Keys CA");
    let pk = cert_product(&srv, &ca, json!({"x509_jit": true})).await;
    // P-384 and Ed25519 device keys are accepted like P-256 ones.
    for (n, alg) in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519]
        .into_iter()
        .enumerate()
    {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("meter-key-{n}"));
        p.serial_number = Some(SerialNumber::from(500 + n as u64));
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let (r, _, _) = connect5(&srv, &Device { cert, key }, "").await;
        assert!(matches!(r, Ok(Some(_))), "{alg:?}: {r:?}");
    }

    // RSA-1024: refused, until the product opts in; then each connect is audited as weak.
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let r = connect_rsa1024(&srv, &ca, &key, "meter-old-1").await;
    assert_eq!(r, Err(p5::ConnectReturnCode::NotAuthorized));
    set_identity(
        &srv,
        &pk,
        json!({"x509": true, "x509_jit": true, "allow_rsa1024": true}),
    )
    .await;
    let r = connect_rsa1024(&srv, &ca, &key, "meter-old-1").await;
    let did = r.unwrap().expect("assigned client id");
    let weak = audit_rows(&srv, "device.connect_weak_key").await;
    assert_eq!(weak.len(), 1, "{weak:?}");
    assert_eq!(weak[0].actor_id, did);
    assert!(weak[0]
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("RSA key of 1024 bits"));
}

#[tokio::test]
async fn refused_certificate_registrations_count_towards_the_failure_limit() {
    let srv = Server::start_with(&[("RAMPART_LIMITS__REGISTER_FAILURES_IP", "3")]).await;
    let trusted = Ca::new("Acme trusted CA");
    let pk = cert_product(&srv, &trusted, json!({"x509_jit": true})).await;
    let stranger = Ca::new("Someone else's CA").valid("meter-x-1", 1);
    let http = https(&srv, Some(&stranger));
    let url = format!("https://localhost:{}/v1/device/register", srv.http);
    // Refusals are counted in clock minutes: the loop below runs inside one.
    srv.start_a_minute();
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..5 {
        let r = http
            .post(&url)
            .json(&json!({"mode": "x509", "product_key": pk}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = r.json().await.unwrap();
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429], "{last}");
    assert_eq!(last["error"]["limit"], "register.failures.ip", "{last}");
}
