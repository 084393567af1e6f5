//! The TLS listeners' client-certificate policy: a certificate is asked for, never required, and
//! any well-formed one is accepted once its holder has proved its key in the handshake.
//!
//! Whether a certificate identifies a device depends on the product whose CAs issued it, which
//! the TLS layer cannot know; `rampart_core::device::certificates` decides that after the
//! handshake, with the product's CAs and revocation lists, and refuses with a reason the
//! operator can read. What this layer guarantees is possession: the peer holds the private key
//! of the certificate it presented.
//!
//! ring, which verifies handshake signatures, refuses RSA keys below 2048 bits. A product may
//! still accept RSA-1024 devices (`identity.allow_rsa1024`), so their signatures are checked here
//! with the `rsa` crate; whether the product allows them is decided later, in core.

use rsa::pkcs1v15;
use rsa::pss;
use rsa::signature::Verifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyClientCert {
    pub(crate) fn new(provider: &rustls::crypto::CryptoProvider) -> AnyClientCert {
        AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match X509Certificate::from_der(end_entity) {
            Ok(([], cert)) if cert.version() == X509Version::V3 => {
                Ok(ClientCertVerified::assertion())
            }
            // The handshake's signature check (webpki) cannot read an older certificate, and
            // the device would hear only "certificate unknown": the operator reads why here.
            Ok(([], cert)) => {
                tracing::info!(subject = %cert.subject(), version = cert.version().0 + 1,
                    "client certificate refused in the TLS handshake: only X.509 version 3 is \
                     accepted (`openssl x509 -req` makes version 1 unless given -extfile)");
                Err(Error::InvalidCertificate(CertificateError::BadEncoding))
            }
            _ => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
            .or_else(|e| small_rsa(message, cert, dss).ok_or(e))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
            .or_else(|e| small_rsa(message, cert, dss).ok_or(e))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A handshake signature by an RSA key of 1024 to 2047 bits, checked with the `rsa` crate;
/// `None` for any other key or a bad signature.
fn small_rsa(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Option<HandshakeSignatureValid> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm.to_id_string() != "1.2.840.113549.1.1.1" {
        return None;
    }
    let key = rsa::RsaPublicKey::from_pkcs1_der(&spki.subject_public_key.data).ok()?;
    if !(1024..2048).contains(&key.size().saturating_mul(8)) {
        return None;
    }
    let sig = dss.signature();
    let ok = match dss.scheme {
        SignatureScheme::RSA_PSS_SHA256 => pss_verify::<sha2::Sha256>(&key, message, sig),
        SignatureScheme::RSA_PSS_SHA384 => pss_verify::<sha2::Sha384>(&key, message, sig),
        SignatureScheme::RSA_PSS_SHA512 => pss_verify::<sha2::Sha512>(&key, message, sig),
        SignatureScheme::RSA_PKCS1_SHA256 => pkcs1_verify::<sha2::Sha256>(&key, message, sig),
        SignatureScheme::RSA_PKCS1_SHA384 => pkcs1_verify::<sha2::Sha384>(&key, message, sig),
        SignatureScheme::RSA_PKCS1_SHA512 => pkcs1_verify::<sha2::Sha512>(&key, message, sig),
        _ => false,
    };
    ok.then(HandshakeSignatureValid::assertion)
}

fn pss_verify<D>(key: &rsa::RsaPublicKey, message: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
{
    let Ok(sig) = pss::Signature::try_from(sig) else {
        return false;
    };
    pss::VerifyingKey::<D>::new(key.clone())
        .verify(message, &sig)
        .is_ok()
}

fn pkcs1_verify<D>(key: &rsa::RsaPublicKey, message: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    let Ok(sig) = pkcs1v15::Signature::try_from(sig) else {
        return false;
    };
    pkcs1v15::VerifyingKey::<D>::new(key.clone())
        .verify(message, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn version_3_certificates_pass_and_older_ones_are_refused() {
        let verifier = AnyClientCert::new(&rustls::crypto::ring::default_provider());
        let now = UnixTime::now();
        let key = rcgen::KeyPair::generate().unwrap();
        let v3 = rcgen::CertificateParams::new(vec!["device".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(verifier.verify_client_cert(v3.der(), &[], now).is_ok());
        // Made by `openssl x509 -req` without -extfile: version 1.
        let v1 = der(include_str!("client_cert_v1.pem"));
        assert!(verifier.verify_client_cert(&v1, &[], now).is_err());
        assert!(verifier
            .verify_client_cert(&CertificateDer::from(&b"junk"[..]), &[], now)
            .is_err());
    }
}
