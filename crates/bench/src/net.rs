//! Sockets: target resolution, source-address spreading over 127.0.0.0/8, plain or TLS streams, and
//! reads into a per-thread scratch buffer so that an idle connection owns no read buffer.

use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::certs::ClientCert;

/// Where connections go: the resolved address, the host name for SNI and certificate checks, and
/// the TLS setup if any.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    /// The trusted roots of `tls`, for connectors that also present a client certificate.
    pub(crate) roots: Option<Arc<rustls::RootCertStore>>,
    /// Number of loopback source addresses to spread over (127.0.0.2 upward); 0 = let the kernel
    /// choose. Only used when `addr` is an IPv4 loopback address.
    pub(crate) source_ips: u32,
    /// Wrap each device's MQTT in Rampart's secure-session layer (Noise) on a plain-TCP port.
    pub(crate) noise: bool,
}

/// Split `HOST:PORT` (IPv6 hosts in brackets).
pub(crate) fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("target `{s}`: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("target `{s}`: bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("target `{s}`: empty host"));
    }
    Ok((host.to_owned(), port))
}

/// Resolve `HOST:PORT`, preferring IPv4 (source spreading needs it).
pub(crate) async fn resolve(target: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(target)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("resolve {target}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("resolve {target}: no address"))
}

/// A rustls client configuration trusting the certificates in `ca_pem` (no session resumption:
/// every connection pays a full handshake, as a fleet of distinct devices would).
pub(crate) fn tls_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = Arc::new(root_store(ca_pem)?);
    let mut cfg = client_config_builder(roots)?.with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

fn client_config_builder(
    roots: Arc<rustls::RootCertStore>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots))
}

/// A connector trusting `roots` that presents `cert` (no session resumption either).
fn connector_with_cert(
    roots: Arc<rustls::RootCertStore>,
    cert: ClientCert,
) -> Result<TlsConnector, String> {
    let mut cfg = client_config_builder(roots)?
        .with_client_auth_cert(cert.chain, cert.key)
        .map_err(|e| format!("client certificate: {e}"))?;
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// The certificates of a PEM file as a root store.
fn root_store(ca_pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| format!("CA file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("CA file holds no certificate".into());
    }
    Ok(roots)
}

/// Build a [`Target`].
pub(crate) async fn target(
    target: &str,
    ca_pem: Option<&[u8]>,
    source_ips: u32,
) -> Result<Target, String> {
    let addr = resolve(target).await?;
    let (tls, roots) = match ca_pem {
        Some(pem) => {
            let (host, _) = split_host_port(target)?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|e| format!("TLS server name: {e}"))?;
            let roots = Arc::new(root_store(pem)?);
            (
                Some((TlsConnector::from(tls_config(pem)?), name)),
                Some(roots),
            )
        }
        None => (None, None),
    };
    Ok(Target {
        addr,
        tls,
        roots,
        source_ips,
        noise: false,
    })
}

/// The source address of connection number `index`: 127.0.0.2 + (index mod n).
pub(crate) fn source_addr(index: u64, n: u32) -> Ipv4Addr {
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    // Stay inside 127.0.0.0/8 and away from 127.255.255.255.
    let k = (index % u64::from(n.max(1))) as u32 % 0x00FF_FFFD;
    Ipv4Addr::from(base + k)
}

/// A plain, TLS or secure-session connection.
pub(crate) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Noise(Box<NoiseConn>),
}

/// Open connection number `index` to the target: bind the source address, TCP connect, TLS
/// handshake (presenting `cert` when given).
pub(crate) async fn connect(
    t: &Target,
    index: u64,
    cert: Option<ClientCert>,
) -> Result<Conn, ConnectError> {
    let sock = match t.addr {
        SocketAddr::V4(a) => {
            let s = TcpSocket::new_v4().map_err(ConnectError::Io)?;
            if t.source_ips > 0 && a.ip().is_loopback() {
                // Choose the source port at connect() time, by the whole 4-tuple: bind() with port 0
                // would reserve a port per address and scan for a free one, which gets slow with
                // tens of thousands of sockets (and TIME_WAIT leftovers) on one address. Without
                // the option (kernels before 4.2) fall back to SO_REUSEADDR.
                if nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::IpBindAddressNoPort,
                    &true,
                )
                .is_err()
                {
                    s.set_reuseaddr(true).map_err(ConnectError::Io)?;
                }
                let src = SocketAddrV4::new(source_addr(index, t.source_ips), 0);
                s.bind(src.into()).map_err(ConnectError::Bind)?;
            }
            s
        }
        SocketAddr::V6(_) => TcpSocket::new_v6().map_err(ConnectError::Io)?,
    };
    let stream = sock.connect(t.addr).await.map_err(ConnectError::Io)?;
    let _ = stream.set_nodelay(true);
    match &t.tls {
        None => Ok(Conn::Plain(stream)),
        Some((connector, name)) => {
            let with_cert;
            let connector = match (cert, &t.roots) {
                (Some(cert), Some(roots)) => {
                    with_cert = connector_with_cert(roots.clone(), cert)
                        .map_err(ConnectError::ClientCert)?;
                    &with_cert
                }
                _ => connector,
            };
            let tls = connector
                .connect(name.clone(), stream)
                .await
                .map_err(ConnectError::Tls)?;
            Ok(Conn::Tls(Box::new(tls)))
        }
    }
}

#[derive(Debug)]
pub(crate) enum ConnectError {
    Bind(io::Error),
    Io(io::Error),
    Tls(io::Error),
    Noise(String),
    ClientCert(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Bind(e) => write!(f, "bind: {e}"),
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake: {e}"),
            ConnectError::Noise(e) => write!(f, "secure-session handshake: {e}"),
            ConnectError::ClientCert(e) => write!(f, "{e}"),
        }
    }
}

impl ConnectError {
    /// Error-count key.
    pub(crate) fn kind(&self) -> String {
        match self {
            ConnectError::Bind(e) => format!("bind_{}", io_kind(e)),
            ConnectError::Io(e) => format!("io_{}", io_kind(e)),
            ConnectError::Tls(_) => "tls_handshake".into(),
            ConnectError::Noise(_) => "noise_handshake".into(),
            ConnectError::ClientCert(_) => "client_cert".into(),
        }
    }
}

/// `ErrorKind` in snake case (`ConnectionRefused` -> `connection_refused`).
pub(crate) fn io_kind(e: &io::Error) -> String {
    let name = format!("{:?}", e.kind());
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Noise(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Noise(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Noise(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Noise(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

thread_local! {
    /// Scratch for reads: data is copied out before the poll returns, so it is never held across an
    /// await and one buffer per thread serves every connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 32 * 1024].into_boxed_slice());
}

impl Conn {
    /// Read what is available and append it to `buf`; `Ok(0)` at end of stream. Cancel-safe.
    pub(crate) async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        std::future::poll_fn(|cx| {
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                let mut rb = ReadBuf::new(&mut s[..]);
                match Pin::new(&mut *self).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let filled = rb.filled();
                        buf.extend_from_slice(filled);
                        Poll::Ready(Ok(filled.len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        })
        .await
    }

    /// Write all of `data` and flush.
    pub(crate) async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data).await?;
        self.flush().await
    }
}

/// Rampart's secure-session layer (`docs/protocol.md`, "Secure session") over a TCP connection:
/// frame 0 (the did), the Noise handshake, then MQTT bytes sealed in transport messages. The
/// client never rotates its own key; it follows the server's rotations.
pub(crate) struct NoiseConn {
    sock: TcpStream,
    noise: noise::Transport,
    /// Ciphertext of a frame not yet whole.
    rx: BytesMut,
    /// Plaintext decrypted but not yet read.
    plain: BytesMut,
    /// Ciphertext not yet written.
    tx: BytesMut,
}

use rampart_proto::secure_session as noise;

fn noise_error(e: noise::Error) -> ConnectError {
    ConnectError::Noise(e.to_string())
}

/// Turn a fresh plain connection into a secure session of device `did`.
pub(crate) async fn secure(conn: Conn, did: &str, secret: &str) -> Result<Conn, ConnectError> {
    use tokio::io::AsyncReadExt;
    let Conn::Plain(mut sock) = conn else {
        return Err(ConnectError::Noise("needs a plain TCP connection".into()));
    };
    let psk = noise::psk(secret.as_bytes(), did);
    let mut hs = noise::Handshake::initiator(did, &psk).map_err(noise_error)?;
    let mut out = BytesMut::new();
    noise::put_frame(did.as_bytes(), &mut out).map_err(noise_error)?;
    noise::put_frame(&hs.write().map_err(noise_error)?, &mut out).map_err(noise_error)?;
    sock.write_all(&out).await.map_err(ConnectError::Io)?;
    let mut rx = BytesMut::new();
    let m2 = loop {
        if let Some(body) = noise::take_frame(&mut rx) {
            break body;
        }
        rx.reserve(64);
        if sock.read_buf(&mut rx).await.map_err(ConnectError::Io)? == 0 {
            return Err(ConnectError::Noise(
                "closed by the server (unknown did, wrong secret, or a product without \
                 identity.secure_session)"
                    .into(),
            ));
        }
    };
    hs.read(&m2).map_err(noise_error)?;
    let noise = hs.into_transport(0).map_err(noise_error)?;
    if rx.is_empty() {
        rx = BytesMut::new();
    }
    Ok(Conn::Noise(Box::new(NoiseConn {
        sock,
        noise,
        rx,
        plain: BytesMut::new(),
        tx: BytesMut::new(),
    })))
}

impl NoiseConn {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        use bytes::Buf;
        while !self.tx.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.sock).poll_write(cx, &self.tx))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tx.advance(n);
        }
        if self.tx.capacity() > 0 {
            self.tx = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for NoiseConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use bytes::Buf;
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                buf.put_slice(&this.plain[..n]);
                this.plain.advance(n);
                if this.plain.is_empty() {
                    this.plain = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            while let Some(body) = noise::take_frame(&mut this.rx) {
                // An empty message (the server's rotation) rotates the receiving key in `open`.
                this.noise
                    .open(&body, &mut this.plain)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            }
            if !this.plain.is_empty() {
                continue;
            }
            if this.rx.is_empty() {
                this.rx = BytesMut::new();
            }
            // Not the thread's scratch buffer: `Conn::read_into` lends that to this very call.
            let mut chunk = [0u8; 8 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.sock).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.rx.extend_from_slice(rb.filled());
        }
    }
}

impl AsyncWrite for NoiseConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        let take = data.len().min(noise::PLAINTEXT_MAX);
        if take == 0 {
            return Poll::Ready(Ok(0));
        }
        if let Err(e) = this.noise.seal(&data[..take], &mut this.tx) {
            return Poll::Ready(Err(io::Error::other(e.to_string())));
        }
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.sock).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.sock).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_sources() {
        assert_eq!(
            split_host_port("localhost:1883").unwrap(),
            ("localhost".into(), 1883)
        );
        assert_eq!(split_host_port("[::1]:8883").unwrap(), ("::1".into(), 8883));
        assert!(split_host_port("nohost").is_err());
        assert!(split_host_port(":1").is_err());
        assert_eq!(source_addr(0, 1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(5, 1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(5, 4), Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(source_addr(300, 1000), Ipv4Addr::new(127, 0, 1, 46));
        assert_eq!(
            io_kind(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "connection_refused"
        );
    }
}
