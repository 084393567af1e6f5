//! Server TLS material: a configured certificate and key, or a self-signed pair generated on first
//! start into `DATA/tls/` (key mode 0600). Every TLS listener shares one rustls configuration.
//! It never replaces an existing certificate and never accepts a key file others can read.

use crate::config::Config;
use rampart_core::secret::{check_private, write_private};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct TlsFiles {
    pub(crate) cert_path: PathBuf,
    pub(crate) fingerprint: String,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
}

pub(crate) fn load_or_create(cfg: &Config, dir: &Path) -> Result<TlsFiles, String> {
    let (cert_path, key_path) = if cfg.tls.cert.is_empty() {
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir).map_err(|e| format!("{}: {e}", tls_dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&tls_dir, std::fs::Permissions::from_mode(0o700));
        }
        let cert = tls_dir.join("cert.pem");
        let key = tls_dir.join("key.pem");
        if !cert.exists() {
            generate(&cert, &key)?;
        }
        (cert, key)
    } else {
        (PathBuf::from(&cfg.tls.cert), PathBuf::from(&cfg.tls.key))
    };
    check_private(&key_path).map_err(|e| e.to_string())?;
    let certs: Vec<rustls::pki_types::CertificateDer<'static>> = {
        let pem = std::fs::read(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
        rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert_path.display()))?
    };
    let first = certs
        .first()
        .ok_or_else(|| format!("{}: no certificate", cert_path.display()))?;
    let fingerprint = Sha256::digest(first.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let key = {
        let pem = std::fs::read(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| format!("{}: {e}", key_path.display()))?
            .ok_or_else(|| format!("{}: no private key", key_path.display()))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Devices may present a client certificate; `client_cert` says what is checked where.
    let client_certs = Arc::new(crate::client_cert::AnyClientCert::new(&provider));
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(client_certs)
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate/key: {e}"))?;
    Ok(TlsFiles {
        cert_path,
        fingerprint,
        server_config: Arc::new(server_config),
    })
}

fn generate(cert: &Path, key: &Path) -> Result<(), String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("certificate generation: {e}"))?;
    write_private(key, ck.key_pair.serialize_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    write_private(cert, ck.cert.pem().as_bytes())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
}
