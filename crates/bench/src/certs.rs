//! Client certificates for mutual-TLS runs: every connection presents a fresh P-256 certificate
//! issued by the run's CA just before it connects, so the server pays for a full chain check per
//! handshake as it would with a fleet of distinct devices.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that issues device certificates.
pub(crate) struct Issuer {
    /// The CA as rcgen signs with it (re-made from the given certificate: same subject and key).
    ca: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as given, PEM (what a product is told to trust).
    ca_pem: String,
}

/// A certificate and its private key, ready for a TLS client configuration.
pub(crate) struct ClientCert {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Issuer {
    /// Read a PEM file's text holding one CA certificate and its PKCS#8 private key (what
    /// `openssl req -x509 -newkey ...` writes).
    pub(crate) fn from_pem(text: &str) -> Result<Issuer, String> {
        let mut cert = None;
        let mut key = None;
        for item in rustls_pemfile::read_all(&mut text.as_bytes()) {
            match item.map_err(|e| format!("client CA file: {e}"))? {
                rustls_pemfile::Item::X509Certificate(c) if cert.is_none() => cert = Some(c),
                rustls_pemfile::Item::Pkcs8Key(k) if key.is_none() => key = Some(k),
                _ => {}
            }
        }
        let cert = cert.ok_or("client CA file: no CERTIFICATE block")?;
        let key = key.ok_or("client CA file: no PKCS#8 PRIVATE KEY block")?;
        let key =
            KeyPair::try_from(key.secret_pkcs8_der()).map_err(|e| format!("client CA key: {e}"))?;
        let params = CertificateParams::from_ca_cert_der(&cert)
            .map_err(|e| format!("client CA certificate: {e}"))?;
        let ca = params
            .self_signed(&key)
            .map_err(|e| format!("client CA: {e}"))?;
        let ca_pem = pem_block("CERTIFICATE", &cert);
        Ok(Issuer { ca, key, ca_pem })
    }

    /// The CA certificate, PEM.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A new key and a certificate for it with subject CN `cn`, valid from an hour ago for a
    /// week, for client authentication.
    pub(crate) fn issue(&self, cn: &str) -> Result<ClientCert, String> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(7);
        let cert = p
            .signed_by(&key, &self.ca, &self.key)
            .map_err(|e| format!("issue a client certificate: {e}"))?;
        Ok(ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// `der` as a PEM block labelled `label`.
fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA as `openssl req -x509 -newkey ec` writes it: certificate then PKCS#8 key.
    fn ca_file() -> String {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bench client CA");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = p.self_signed(&key).unwrap();
        format!("{}{}", ca.pem(), key.serialize_pem())
    }

    #[test]
    fn issued_certificates_chain_to_the_given_ca() {
        let file = ca_file();
        let issuer = Issuer::from_pem(&file).unwrap();
        let leaf = issuer.issue("bx0123456789ab").unwrap();
        let ca_der = rustls_pemfile::certs(&mut issuer.ca_pem().as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let anchor = webpki::anchor_from_trusted_cert(&ca_der).unwrap();
        let ee = webpki::EndEntityCert::try_from(&leaf.chain[0]).unwrap();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            rustls::pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .unwrap();
        assert!(Issuer::from_pem("no pem here").is_err());
    }
}
