//! A server TLS stream that holds no buffers while the connection is idle.
//!
//! `tokio_rustls` keeps rustls's buffered connection, whose receive buffer stays allocated for the
//! life of the connection, inline in the stream. This stream drives rustls's unbuffered API
//! instead:
//!
//! * reads wait for readiness, read into a per-thread scratch buffer and decrypt in place there;
//!   only the bytes of an incomplete record are copied into the connection's own buffer, which is
//!   freed as soon as that record is complete;
//! * writes encrypt one record at a time into a per-thread scratch buffer and write it out; only
//!   what the socket would not take is kept, until it does;
//! * the rustls connection state lives in one heap allocation next to those (normally empty)
//!   buffers, so the stream itself is a socket and a pointer.
//!
//! The handshake (TLS 1.3 and 1.2) uses temporary buffers that are dropped when it completes.

use crate::conn::Conn;
use bytes::BytesMut;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::ServerConfig;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read from the socket at once (the per-thread scratch buffer).
const READ_SCRATCH: usize = 16 * 1024;
/// Plaintext encrypted per write: one full TLS record.
const WRITE_CHUNK: usize = 16 * 1024;
/// Room for one record's header, tag and padding, and a queued key update, after `WRITE_CHUNK`.
const WRITE_SCRATCH: usize = WRITE_CHUNK + 1024;
/// Most received bytes held while waiting for the rest of a record (or of a handshake message
/// spread over several records). rustls refuses records over 18 KiB and handshake messages over
/// 64 KiB, so this is only a backstop.
const MAX_HELD_IN: usize = 128 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_SCRATCH].into_boxed_slice());
    static WRITE_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; WRITE_SCRATCH].into_boxed_slice());
}

/// A server-side TLS connection over TCP. See the module documentation.
pub(crate) struct LeanTlsStream {
    sock: TcpStream,
    inner: Box<Inner>,
}

/// Everything but the socket, in one allocation.
struct Inner {
    tls: UnbufferedServerConnection,
    /// Received bytes that do not yet make a whole record. Empty, and unallocated, between records.
    held_in: Vec<u8>,
    /// Encrypted bytes the socket would not take yet. Empty, and unallocated, when idle.
    unsent: Vec<u8>,
    /// Decrypted bytes not yet handed out: application data that arrived with the handshake, or
    /// more than a `poll_read` caller had room for.
    plain: Vec<u8>,
    /// close_notify received: reads return end of stream.
    read_closed: bool,
    /// close_notify sent (or the connection is unusable): no more writes.
    write_closed: bool,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn misuse(what: &'static str) -> io::Error {
    io::Error::other(what)
}

/// Accept a TLS connection: run the server handshake on `sock`.
///
/// Apply a timeout around this: a peer that stops sending stalls it. Fails with `InvalidData` on a
/// TLS error (a fatal alert is sent to the peer first when possible) and `UnexpectedEof` if the
/// peer closes during the handshake.
pub(crate) async fn accept(
    mut sock: TcpStream,
    config: Arc<ServerConfig>,
) -> io::Result<LeanTlsStream> {
    let tls = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    // Boxed from the start so that the handshake future stays small.
    let mut inner = Box::new(Inner {
        tls,
        held_in: Vec::new(),
        unsent: Vec::new(),
        plain: Vec::new(),
        read_closed: false,
        write_closed: false,
    });
    // During the handshake `held_in` is the receive buffer and `unsent` the send buffer.
    loop {
        match handshake_step(&mut inner) {
            Ok(Handshake::Send) => {
                tokio::io::AsyncWriteExt::write_all(&mut sock, &inner.unsent).await?;
                inner.unsent.clear();
            }
            Ok(Handshake::Receive) => {
                if inner.held_in.len() >= MAX_HELD_IN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS handshake message too large",
                    ));
                }
                inner.held_in.reserve(4096);
                if sock.read_buf(&mut inner.held_in).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the TLS handshake",
                    ));
                }
            }
            Ok(Handshake::Done) => break,
            Err(e) => {
                // The fatal alert, if rustls produced one; best effort, without waiting.
                let _ = sock.try_write(&inner.unsent);
                return Err(e);
            }
        }
    }
    // Free the handshake buffers; keep only the start of a record that arrived with the last
    // handshake flight, if any.
    inner.unsent = Vec::new();
    if inner.held_in.is_empty() {
        inner.held_in = Vec::new();
    } else {
        inner.held_in.shrink_to_fit();
    }
    inner.plain.shrink_to_fit();
    Ok(LeanTlsStream { sock, inner })
}

enum Handshake {
    /// Write `unsent`, then continue.
    Send,
    /// Read more into `held_in`, then continue.
    Receive,
    Done,
}

/// Advance the handshake until it needs I/O. On error, `unsent` holds the alert for the peer.
fn handshake_step(inner: &mut Inner) -> io::Result<Handshake> {
    let Inner {
        tls,
        held_in,
        unsent,
        plain,
        read_closed,
        ..
    } = inner;
    let mut peer_closed = false;
    loop {
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(held_in);
        let next = match state {
            Err(e) => {
                drop_front(held_in, discard);
                return Err(failed(tls, held_in, unsent, e));
            }
            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                encode_into(&mut enc, unsent)?;
                None
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                // The caller writes `unsent` before processing anything more.
                t.done();
                Some(Handshake::Send)
            }
            Ok(ConnectionState::BlockedHandshake) => Some(Handshake::Receive),
            // A TLS 1.3 server may send before the client's Finished: not done until both ways are open.
            Ok(ConnectionState::WriteTraffic(_)) => Some(Handshake::Done),
            // Application data right behind the client's Finished.
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec.map_err(tls_error)?;
                    discard += rec.discard;
                    plain.extend_from_slice(rec.payload);
                }
                None
            }
            // close_notify right behind the client's Finished (and perhaps some data).
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                peer_closed = true;
                Some(Handshake::Done)
            }
            Ok(_) => return Err(misuse("unexpected TLS state during the handshake")),
        };
        drop_front(held_in, discard);
        match next {
            Some(Handshake::Done) if tls.is_handshaking() => {
                if peer_closed {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed the connection during the TLS handshake",
                    ));
                }
                return Ok(Handshake::Receive);
            }
            Some(Handshake::Done) => {
                *read_closed |= peer_closed;
                return Ok(Handshake::Done);
            }
            Some(n) => return Ok(n),
            None => {}
        }
    }
}

/// rustls failed: collect the alert it queued (if any) into `unsent` and describe the error.
/// `rest` is the receive buffer after the failing call's discard.
fn failed(
    tls: &mut UnbufferedServerConnection,
    rest: &mut [u8],
    unsent: &mut Vec<u8>,
    e: rustls::Error,
) -> io::Error {
    if let Ok(ConnectionState::EncodeTlsData(mut enc)) = tls.process_tls_records(rest).state {
        let _ = encode_into(&mut enc, unsent);
    }
    tls_error(e)
}

/// Remove the first `n` bytes of `v`, freeing it when nothing is left.
fn drop_front(v: &mut Vec<u8>, n: usize) {
    if n >= v.len() {
        *v = Vec::new();
    } else if n > 0 {
        v.drain(..n);
    }
}

/// Append a TLS message rustls wants sent to `out`, growing it to exactly the size needed.
fn encode_into(
    enc: &mut EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let start = out.len();
    let mut need = 0;
    loop {
        out.resize(start + need, 0);
        match enc.encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > need =>
            {
                need = required_size
            }
            Err(_) => {
                out.truncate(start);
                return Err(misuse("TLS record encoding failed"));
            }
        }
    }
}

/// What processing received bytes found.
struct Absorbed {
    /// Bytes of the input consumed; the rest starts an incomplete record.
    consumed: usize,
    /// Plaintext bytes handed to `out`.
    plaintext: usize,
    /// The peer sent close_notify.
    peer_closed: bool,
}

/// Process received TLS bytes in place: application data goes to `out`; messages rustls wants to
/// send in reply (alerts, a key update) are appended to `unsent`. On error, `unsent` holds the
/// fatal alert for the peer, if any.
fn absorb(
    tls: &mut UnbufferedServerConnection,
    data: &mut [u8],
    out: &mut dyn FnMut(&[u8]),
    unsent: &mut Vec<u8>,
) -> io::Result<Absorbed> {
    let mut done = Absorbed {
        consumed: 0,
        plaintext: 0,
        peer_closed: false,
    };
    loop {
        let rest = &mut data[done.consumed..];
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(rest);
        let mut more = true;
        match state {
            Err(e) => {
                let at = (done.consumed + discard).min(data.len());
                return Err(failed(tls, &mut data[at..], unsent, e));
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec.map_err(tls_error)?;
                    discard += rec.discard;
                    done.plaintext += rec.payload.len();
                    out(rec.payload);
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut enc)) => encode_into(&mut enc, unsent)?,
            // The caller writes `unsent` after this call.
            Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                done.peer_closed = true;
                more = false;
            }
            // Everything complete has been processed.
            Ok(ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake) => {
                more = false
            }
            Ok(_) => return Err(misuse("unexpected TLS state")),
        }
        done.consumed = (done.consumed + discard).min(data.len());
        if !more {
            return Ok(done);
        }
    }
}

/// Run `f` with rustls's application-data writer (processing anything rustls has pending first).
fn with_write_traffic<R>(
    inner: &mut Inner,
    f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>) -> R,
) -> io::Result<R> {
    let Inner {
        tls,
        held_in,
        unsent,
        plain,
        read_closed,
        ..
    } = inner;
    let mut f = Some(f);
    loop {
        // The held bytes are passed back as they are: rustls tracks positions in them.
        let UnbufferedStatus { mut discard, state } = tls.process_tls_records(held_in);
        let mut result = None;
        match state {
            Err(e) => {
                drop_front(held_in, discard);
                return Err(failed(tls, held_in, unsent, e));
            }
            Ok(ConnectionState::WriteTraffic(mut w)) => {
                if let Some(f) = f.take() {
                    result = Some(f(&mut w));
                }
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec.map_err(tls_error)?;
                    discard += rec.discard;
                    plain.extend_from_slice(rec.payload);
                }
            }
            Ok(ConnectionState::EncodeTlsData(mut enc)) => encode_into(&mut enc, unsent)?,
            Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
            Ok(ConnectionState::PeerClosed) => *read_closed = true,
            Ok(ConnectionState::Closed) => {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "TLS connection closed",
                ))
            }
            Ok(_) => return Err(misuse("unexpected TLS state")),
        }
        drop_front(held_in, discard);
        if let Some(r) = result {
            return Ok(r);
        }
    }
}

/// Encrypted bytes: in the scratch buffer, or on the heap when they did not fit.
enum Sealed {
    Scratch(usize),
    Heap(Vec<u8>),
}

fn encrypt(
    w: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    scratch: &mut [u8],
) -> io::Result<Sealed> {
    match w.encrypt(data, scratch) {
        Ok(n) => Ok(Sealed::Scratch(n)),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            let mut v = vec![0u8; required_size];
            match w.encrypt(data, &mut v) {
                Ok(n) => {
                    v.truncate(n);
                    Ok(Sealed::Heap(v))
                }
                Err(e) => Err(io::Error::other(e)),
            }
        }
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Write what the socket takes now without waiting; keep the rest in `unsent` (after whatever is
/// there already).
fn send_now(sock: &TcpStream, unsent: &mut Vec<u8>, mut bytes: &[u8]) -> io::Result<()> {
    if unsent.is_empty() {
        while !bytes.is_empty() {
            match sock.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    unsent.extend_from_slice(bytes);
    Ok(())
}

/// Best effort, without waiting: push out what rustls queued while reading (alerts, key updates).
fn flush_unsent_now(sock: &TcpStream, unsent: &mut Vec<u8>) {
    while !unsent.is_empty() {
        match sock.try_write(unsent) {
            Ok(n) if n > 0 => drop_front(unsent, n),
            _ => return,
        }
    }
    *unsent = Vec::new();
}

impl LeanTlsStream {
    /// One non-waiting read from the socket, decrypted into `out`. `Ok(None)`: nothing for the
    /// reader yet; `Ok(Some(0))`: end of stream. `WouldBlock` when the socket had nothing.
    fn read_ready(&mut self, out: &mut dyn FnMut(&[u8])) -> io::Result<Option<usize>> {
        let LeanTlsStream { sock, inner } = self;
        let inner = &mut **inner;
        let absorbed = READ_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = sock.try_read(&mut scratch[..])?;
            if n == 0 {
                let why = if inner.held_in.is_empty() {
                    "peer closed the connection without sending TLS close_notify"
                } else {
                    "peer closed the connection in the middle of a TLS record"
                };
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
            }
            if inner.held_in.is_empty() {
                // Decrypt in the scratch buffer; keep only an incomplete record's bytes.
                let got = absorb(&mut inner.tls, &mut scratch[..n], out, &mut inner.unsent)?;
                inner.held_in.extend_from_slice(&scratch[got.consumed..n]);
                Ok(got)
            } else {
                if inner.held_in.len() + n > MAX_HELD_IN {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS message too large",
                    ));
                }
                inner.held_in.extend_from_slice(&scratch[..n]);
                let got = absorb(&mut inner.tls, &mut inner.held_in, out, &mut inner.unsent)?;
                drop_front(&mut inner.held_in, got.consumed);
                Ok(got)
            }
        });
        let absorbed = match absorbed {
            Ok(a) => a,
            Err(e) => {
                // After a TLS error its alert is in `unsent`; rustls would still encrypt, so refuse
                // further writes here. A peer's EOF (with or without close_notify) leaves writing
                // open, as TCP's half-close does.
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof => {}
                    _ => {
                        inner.write_closed = true;
                        flush_unsent_now(sock, &mut inner.unsent);
                    }
                }
                return Err(e);
            }
        };
        flush_unsent_now(sock, &mut inner.unsent);
        if absorbed.peer_closed {
            inner.read_closed = true;
            inner.held_in = Vec::new();
            return Ok(Some(absorbed.plaintext));
        }
        Ok((absorbed.plaintext > 0).then_some(absorbed.plaintext))
    }

    /// Write out `unsent`, waiting as needed; frees it when done.
    fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let LeanTlsStream { sock, inner } = self;
        while !inner.unsent.is_empty() {
            match ready!(Pin::new(&mut *sock).poll_write(cx, &inner.unsent)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => drop_front(&mut inner.unsent, n),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        inner.unsent = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Heap bytes held by this stream's own buffers (not rustls's state): zero when idle.
    #[cfg(test)]
    fn buffered_bytes(&self) -> usize {
        self.inner.held_in.capacity() + self.inner.unsent.capacity() + self.inner.plain.capacity()
    }
}

impl Conn for LeanTlsStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if !self.inner.plain.is_empty() {
            let plain = std::mem::take(&mut self.inner.plain);
            buf.extend_from_slice(&plain);
            return Ok(plain.len());
        }
        if self.inner.read_closed {
            return Ok(0);
        }
        loop {
            self.sock.readable().await?;
            match self.read_ready(&mut |p| buf.extend_from_slice(p)) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_certificate(&self) -> Option<Vec<u8>> {
        let certs = self.inner.tls.peer_certificates()?;
        certs.first().map(|c| c.as_ref().to_vec())
    }
}

impl AsyncRead for LeanTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        rb: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let plain = &mut this.inner.plain;
            if !plain.is_empty() {
                let take = plain.len().min(rb.remaining());
                rb.put_slice(&plain[..take]);
                drop_front(plain, take);
                return Poll::Ready(Ok(()));
            }
            if this.inner.read_closed || rb.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            ready!(this.sock.poll_read_ready(cx))?;
            let mut overflow = Vec::new();
            let got = this.read_ready(&mut |p| {
                let take = p.len().min(rb.remaining());
                rb.put_slice(&p[..take]);
                overflow.extend_from_slice(&p[take..]);
            });
            this.inner.plain = overflow;
            match got {
                Ok(Some(_)) => return Poll::Ready(Ok(())),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for LeanTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.inner.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection closed for writing",
            )));
        }
        let chunk = &buf[..buf.len().min(WRITE_CHUNK)];
        let LeanTlsStream { sock, inner } = this;
        let inner = &mut **inner;
        let sent = WRITE_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match with_write_traffic(inner, |w| encrypt(w, chunk, &mut scratch))?? {
                Sealed::Scratch(n) => send_now(sock, &mut inner.unsent, &scratch[..n]),
                Sealed::Heap(v) => send_now(sock, &mut inner.unsent, &v),
            }
        });
        match sent {
            Ok(()) => Poll::Ready(Ok(chunk.len())),
            Err(e) => {
                inner.write_closed = true;
                flush_unsent_now(sock, &mut inner.unsent);
                Poll::Ready(Err(e))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.sock).poll_flush(cx)
    }

    /// Sends close_notify (unless the connection already failed), then shuts the socket down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.inner.write_closed {
            this.inner.write_closed = true;
            let inner = &mut *this.inner;
            let alert = with_write_traffic(inner, |w| {
                let mut small = [0u8; 128];
                match w.queue_close_notify(&mut small) {
                    Ok(n) => Some(small[..n].to_vec()),
                    Err(EncryptError::InsufficientSize(InsufficientSizeError {
                        required_size,
                    })) => {
                        let mut v = vec![0u8; required_size];
                        let n = w.queue_close_notify(&mut v).ok()?;
                        v.truncate(n);
                        Some(v)
                    }
                    Err(_) => None,
                }
            });
            // Failed or already closed: nothing to say, just close the socket.
            if let Ok(Some(alert)) = alert {
                inner.unsent.extend_from_slice(&alert);
            }
        }
        ready!(this.poll_send_unsent(cx))?;
        Pin::new(&mut this.sock).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server config for `localhost` (TLS 1.3 and 1.2) and the certificate to trust.
    fn server_config() -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let cert = ck.cert.der().clone();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        (Arc::new(config), cert)
    }

    fn connector(
        cert: &CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> tokio_rustls::TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A listener and a server config; `accept` the next connection with `config`.
    async fn listen() -> (TcpListener, Arc<ServerConfig>, CertificateDer<'static>) {
        let (config, cert) = server_config();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (l, config, cert)
    }

    async fn connect(
        l: &TcpListener,
        cert: &CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        connector(cert, versions)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Handshake with a tokio_rustls client of the given versions; returns both ends.
    async fn pair(
        versions: &[&'static SupportedProtocolVersion],
    ) -> (LeanTlsStream, tokio_rustls::client::TlsStream<TcpStream>) {
        let (l, config, cert) = listen().await;
        let server = async {
            let (sock, _) = l.accept().await.unwrap();
            accept(sock, config).await.unwrap()
        };
        let (s, c) = tokio::join!(server, connect(&l, &cert, versions));
        (s, c)
    }

    async fn read_at_least(s: &mut LeanTlsStream, n: usize) -> BytesMut {
        let mut buf = BytesMut::new();
        while buf.len() < n {
            let got = s.read_some(&mut buf).await.unwrap();
            assert!(
                got > 0,
                "unexpected end of stream after {} bytes",
                buf.len()
            );
        }
        buf
    }

    async fn echo_round_trip(version: &'static SupportedProtocolVersion) {
        let (mut s, mut c) = pair(&[version]).await;
        assert_eq!(c.get_ref().1.protocol_version(), Some(version.version));
        c.write_all(b"hello over tls").await.unwrap();
        let got = read_at_least(&mut s, 14).await;
        assert_eq!(&got[..], b"hello over tls");
        s.write_all(&got).await.unwrap();
        s.flush().await.unwrap();
        let mut back = [0u8; 14];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello over tls");
        assert_eq!(s.buffered_bytes(), 0, "idle stream holds buffers");
        // Clean close both ways.
        c.shutdown().await.unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(s.read_some(&mut buf).await.unwrap(), 0);
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn echo_tls13() {
        echo_round_trip(&rustls::version::TLS13).await;
    }

    #[tokio::test]
    async fn echo_tls12() {
        echo_round_trip(&rustls::version::TLS12).await;
    }

    /// A TLS 1.3 key update from the client (a handshake message after the handshake, asking for
    /// ours in return): both directions keep working on the new keys.
    #[tokio::test]
    async fn key_update_from_client() {
        let (mut s, mut c) = pair(&[&rustls::version::TLS13]).await;
        for round in 0..3u8 {
            c.get_mut().1.refresh_traffic_keys().unwrap();
            c.write_all(&[round; 100]).await.unwrap();
            c.flush().await.unwrap();
            let got = read_at_least(&mut s, 100).await;
            assert_eq!(&got[..], &[round; 100]);
            s.write_all(&got).await.unwrap();
            s.flush().await.unwrap();
            let mut back = [0u8; 100];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round; 100]);
            assert_eq!(s.buffered_bytes(), 0);
        }
    }

    #[test]
    fn stream_is_small() {
        let size = std::mem::size_of::<LeanTlsStream>();
        let tokio_rustls = std::mem::size_of::<tokio_rustls::server::TlsStream<TcpStream>>();
        println!(
            "LeanTlsStream: {size} bytes inline, Inner: {} bytes on the heap (UnbufferedServerConnection {}); tokio_rustls TlsStream: {tokio_rustls} bytes",
            std::mem::size_of::<Inner>(),
            std::mem::size_of::<UnbufferedServerConnection>(),
        );
        assert!(size <= 64, "LeanTlsStream is {size} bytes");
    }

    #[tokio::test]
    async fn accept_future_is_small() {
        let (l, config, _) = listen().await;
        let sock = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let fut = accept(sock, config);
        let size = std::mem::size_of_val(&fut);
        println!("accept future: {size} bytes");
        assert!(size <= 256, "accept future is {size} bytes");
    }

    #[tokio::test]
    async fn large_transfers_both_ways() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut s, c) = pair(&[version]).await;
            let (mut cr, mut cw) = tokio::io::split(c);
            let data: Vec<u8> = (0..300 * 1024).map(|i| (i * 7 % 251) as u8).collect();
            // Server -> client: one 300 KiB write, read by the client in small pieces while the
            // server writes (so the socket blocks and `unsent` is used).
            let expect = data.clone();
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                let mut piece = [0u8; 1000];
                while got.len() < expect.len() {
                    let n = cr.read(&mut piece).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&piece[..n]);
                }
                assert!(got == expect, "server -> client data differs");
                cr
            });
            s.write_all(&data).await.unwrap();
            s.flush().await.unwrap();
            let cr = reader.await.unwrap();
            assert_eq!(s.buffered_bytes(), 0);
            // Client -> server, read with `read_some` (pieces as they arrive).
            let send = data.clone();
            let writer = tokio::spawn(async move {
                cw.write_all(&send).await.unwrap();
                cw.flush().await.unwrap();
                cw
            });
            let mut got = BytesMut::new();
            let mut reads = 0;
            while got.len() < data.len() {
                assert!(s.read_some(&mut got).await.unwrap() > 0);
                reads += 1;
            }
            assert!(got[..] == data[..], "client -> server data differs");
            assert!(reads > 1);
            let cw = writer.await.unwrap();
            assert_eq!(s.buffered_bytes(), 0);
            // And through `AsyncRead` with a small buffer (the rest of each read is kept).
            let mut c = cr.unsplit(cw);
            c.write_all(&data[..50_000]).await.unwrap();
            c.flush().await.unwrap();
            let mut small = vec![0u8; 50_000];
            let mut at = 0;
            while at < small.len() {
                let end = (at + 333).min(small.len());
                let n = s.read(&mut small[at..end]).await.unwrap();
                assert!(n > 0);
                at += n;
            }
            assert!(small[..] == data[..50_000]);
            assert_eq!(s.buffered_bytes(), 0);
        }
    }

    /// The client's first application data arriving with its Finished (rustls flushes data written
    /// before the handshake completes right behind it) is delivered.
    #[tokio::test]
    async fn data_with_the_client_finished() {
        let (l, config, cert) = listen().await;
        let addr = l.local_addr().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let cc = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut conn = rustls::ClientConnection::new(
                Arc::new(cc),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap();
            conn.writer().write_all(b"early bird").unwrap();
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            stream.flush().unwrap();
            let mut back = [0u8; 10];
            stream.read_exact(&mut back).unwrap();
            back
        });
        let (sock, _) = l.accept().await.unwrap();
        let mut s = accept(sock, config).await.unwrap();
        let got = read_at_least(&mut s, 10).await;
        assert_eq!(&got[..], b"early bird");
        s.write_all(&got).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(&client.await.unwrap(), b"early bird");
        assert_eq!(s.buffered_bytes(), 0);
    }

    /// Finished, data and close_notify in one go: the data is delivered, then end of stream.
    #[tokio::test]
    async fn close_right_after_the_handshake() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (l, config, cert) = listen().await;
            let server = async {
                let (sock, _) = l.accept().await.unwrap();
                accept(sock, config).await.unwrap()
            };
            let client = async {
                let mut c = connect(&l, &cert, &[version]).await;
                c.write_all(b"bye").await.unwrap();
                c.shutdown().await.unwrap();
                c
            };
            let (mut s, _c) = tokio::join!(server, client);
            let got = read_at_least(&mut s, 3).await;
            assert_eq!(&got[..], b"bye");
            assert_eq!(s.read_some(&mut BytesMut::new()).await.unwrap(), 0);
            // Writing back still works after the peer's close_notify.
            s.write_all(b"ok").await.unwrap();
            s.shutdown().await.unwrap();
        }
    }

    #[tokio::test]
    async fn garbage_instead_of_client_hello() {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
            &[0x16, 0x03, 0x01, 0xff, 0xff][..],
            &[0u8; 64][..],
        ] {
            let (l, config, _) = listen().await;
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            c.write_all(garbage).await.unwrap();
            let (sock, _) = l.accept().await.unwrap();
            let err = match accept(sock, config).await {
                Ok(_) => panic!("garbage accepted"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            // The server closed, after saying why (a fatal alert record) where rustls has an alert
            // for the error (it has none for an over-long handshake message length).
            let mut answer = Vec::new();
            let _ = c.read_to_end(&mut answer).await;
            if garbage.len() != 10 {
                assert_eq!(
                    answer.first(),
                    Some(&0x15),
                    "no alert for {garbage:?}: {answer:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn client_gone_during_handshake() {
        let (l, config, _) = listen().await;
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        drop(c);
        let (sock, _) = l.accept().await.unwrap();
        let err = accept(sock, config).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn version_mismatch_fails_cleanly() {
        // A TLS 1.2-only client against a TLS 1.3-only server fails cleanly.
        let (l, _, cert) = listen().await;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let only13 = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![ck.cert.der().clone()],
                PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap(),
            )
            .unwrap();
        let server = async {
            let (sock, _) = l.accept().await.unwrap();
            accept(sock, Arc::new(only13)).await
        };
        let client = async {
            let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            connector(&cert, &[&rustls::version::TLS12])
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        };
        let (s, c) = tokio::join!(server, client);
        assert_eq!(s.err().unwrap().kind(), io::ErrorKind::InvalidData);
        assert!(c.is_err());
    }

    /// Take the client's socket after the handshake to send raw records.
    async fn raw_client(
        version: &'static SupportedProtocolVersion,
    ) -> (LeanTlsStream, TcpStream, rustls::ClientConnection) {
        let (s, c) = pair(&[version]).await;
        let (tcp, conn) = c.into_inner();
        (s, tcp, conn)
    }

    #[tokio::test]
    async fn client_disconnects_mid_record() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut s, mut tcp, _) = raw_client(version).await;
            // A record header promising 100 bytes, then 10 of them, then close (FIN; dropping
            // the socket with the server's session tickets unread would reset it instead).
            tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 100]).await.unwrap();
            tcp.write_all(&[7u8; 10]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tcp.shutdown().await.unwrap();
            let mut buf = BytesMut::new();
            let err = s.read_some(&mut buf).await.err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
            assert!(buf.is_empty());
        }
    }

    #[tokio::test]
    async fn client_disconnects_without_close_notify() {
        let (mut s, mut tcp, _) = raw_client(&rustls::version::TLS13).await;
        tcp.shutdown().await.unwrap();
        let err = s.read_some(&mut BytesMut::new()).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn corrupted_record_is_an_error() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut s, mut tcp, mut conn) = raw_client(version).await;
            let mut rec = vec![0x17, 0x03, 0x03, 0x00, 40];
            rec.extend_from_slice(&[0xAA; 40]);
            tcp.write_all(&rec).await.unwrap();
            let err = s.read_some(&mut BytesMut::new()).await.err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            // The stream stays failed.
            assert!(s.write_all(b"x").await.is_err());
            drop(s);
            // The client was told: a bad_record_mac alert (after any session tickets).
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await.unwrap();
            let mut answer = &answer[..];
            let mut outcome = Ok(());
            while !answer.is_empty() && outcome.is_ok() {
                conn.read_tls(&mut answer).unwrap();
                outcome = conn.process_new_packets().map(|_| ());
            }
            assert_eq!(
                outcome.err(),
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadRecordMac
                ))
            );
        }
    }

    #[tokio::test]
    async fn oversized_record_header_is_an_error() {
        let (mut s, mut tcp, _) = raw_client(&rustls::version::TLS13).await;
        tcp.write_all(&[0x17, 0x03, 0x03, 0xff, 0xff])
            .await
            .unwrap();
        let err = s.read_some(&mut BytesMut::new()).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn fatal_alert_from_client_is_an_error() {
        let (mut s, c) = pair(&[&rustls::version::TLS13]).await;
        let (tcp, mut conn) = c.into_inner();
        // Corrupt data from the server: the client answers with a bad_record_mac alert.
        let mut junk = vec![0x17, 0x03, 0x03, 0x00, 30];
        junk.extend_from_slice(&[9u8; 30]);
        s.sock.write_all(&junk).await.unwrap();
        let mut tcp = tcp.into_std().unwrap();
        tcp.set_nonblocking(false).unwrap();
        let client = tokio::task::spawn_blocking(move || {
            while conn.process_new_packets().is_ok() {
                assert!(conn.read_tls(&mut tcp).unwrap() > 0);
            }
            while conn.wants_write() {
                conn.write_tls(&mut tcp).unwrap();
            }
            tcp
        });
        let _tcp = client.await.unwrap();
        let err = s.read_some(&mut BytesMut::new()).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("alert"), "{err}");
    }

    /// Idle-connection memory, not a pass/fail test. Run it alone, in release mode:
    ///
    /// `cargo test -p rampart-gateway --release --lib lean_tls::tests::measure_idle_rss -- --ignored --nocapture`
    ///
    /// For each of plain TCP, tokio_rustls and this stream, a fresh server process (this test
    /// binary again) accepts `LEAN_TLS_N` (default 3000) connections from a client process (also
    /// this binary), each served by a task that completes the handshake and then waits in
    /// `Conn::read_some` as an idle session does, and reports the growth of its VmRSS per
    /// connection.
    #[test]
    #[ignore]
    fn measure_idle_rss() {
        match std::env::var("LEAN_TLS_ROLE").as_deref() {
            Ok("server") => measure::server(),
            Ok("client") => measure::client(),
            _ => measure::orchestrate(),
        }
    }

    mod measure {
        use super::*;
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Command, Stdio};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;

        const TEST: &str = "lean_tls::tests::measure_idle_rss";
        /// Connections opened (and kept) before the baseline, so that per-thread and per-runtime
        /// allocations are not counted.
        const WARM: usize = 50;

        fn child(role: &str) -> Command {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                TEST,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LEAN_TLS_ROLE", role);
            cmd
        }

        fn n() -> usize {
            std::env::var("LEAN_TLS_N")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3000)
        }

        fn rss_kib() -> usize {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }

        pub(super) fn orchestrate() {
            for mode in ["tcp", "tokio-rustls", "lean"] {
                let out = child("server")
                    .env("LEAN_TLS_MODE", mode)
                    .stderr(Stdio::inherit())
                    .output()
                    .unwrap();
                let out = String::from_utf8_lossy(&out.stdout);
                // libtest prints "test <name> ... " before the test's own output, on the same line.
                let result = out
                    .lines()
                    .find_map(|l| l.find("RESULT").map(|at| &l[at..]));
                println!("{}", result.unwrap_or("RESULT missing"));
            }
        }

        async fn idle<S: Conn>(mut s: S, ready: Arc<AtomicUsize>) {
            ready.fetch_add(1, Ordering::SeqCst);
            let mut buf = BytesMut::new();
            let _ = s.read_some(&mut buf).await;
        }

        pub(super) fn server() {
            let mode = std::env::var("LEAN_TLS_MODE").unwrap();
            let n = n();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (config, cert) = server_config();
            let dir = tempfile::tempdir().unwrap();
            let cert_path = dir.path().join("cert.der");
            std::fs::write(&cert_path, cert.as_ref()).unwrap();
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
            let addr = listener.local_addr().unwrap();
            let ready = Arc::new(AtomicUsize::new(0));
            {
                let (ready, mode) = (ready.clone(), mode.clone());
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                rt.spawn(async move {
                    loop {
                        let (sock, _) = listener.accept().await.unwrap();
                        let _ = sock.set_nodelay(true);
                        let ready = ready.clone();
                        match mode.as_str() {
                            "tcp" => tokio::spawn(idle(sock, ready)),
                            "tokio-rustls" => {
                                let acceptor = acceptor.clone();
                                tokio::spawn(async move {
                                    if let Ok(s) = acceptor.accept(sock).await {
                                        idle(s, ready).await;
                                    }
                                })
                            }
                            _ => {
                                let config = config.clone();
                                tokio::spawn(async move {
                                    if let Ok(s) = accept(sock, config).await {
                                        idle(s, ready).await;
                                    }
                                })
                            }
                        };
                    }
                });
            }
            let mut client = child("client")
                .env("LEAN_TLS_ADDR", addr.to_string())
                .env("LEAN_TLS_CERT", &cert_path)
                .env("LEAN_TLS_TCP", if mode == "tcp" { "1" } else { "0" })
                .env("LEAN_TLS_N", n.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut to_client = client.stdin.take().unwrap();
            let mut from_client = BufReader::new(client.stdout.take().unwrap());
            let wait_for = |line: &str, count: usize, from: &mut BufReader<_>| {
                let mut l = String::new();
                while !l.trim_end().ends_with(line) {
                    l.clear();
                    assert!(from.read_line(&mut l).unwrap() > 0, "client exited");
                }
                while ready.load(Ordering::SeqCst) < count {
                    std::thread::sleep(Duration::from_millis(10));
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            wait_for("WARM", WARM, &mut from_client);
            let before = rss_kib();
            writeln!(to_client, "go").unwrap();
            wait_for("READY", WARM + n, &mut from_client);
            let after = rss_kib();
            println!(
                "RESULT {mode}: {n} idle connections, VmRSS {before} -> {after} KiB, {:.2} KiB per connection",
                (after - before) as f64 / n as f64
            );
            drop(to_client);
            let _ = client.wait();
            rt.shutdown_background();
        }

        pub(super) fn client() {
            let addr: std::net::SocketAddr =
                std::env::var("LEAN_TLS_ADDR").unwrap().parse().unwrap();
            let tcp_only = std::env::var("LEAN_TLS_TCP").unwrap() == "1";
            let cert = CertificateDer::from(
                std::fs::read(std::env::var("LEAN_TLS_CERT").unwrap()).unwrap(),
            );
            let n = n();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let connector = connector(&cert, &[&rustls::version::TLS13]);
            let open = |count: usize| {
                rt.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    let mut opened = Vec::with_capacity(count);
                    for _ in 0..count {
                        let connector = connector.clone();
                        set.spawn(async move {
                            let tcp = TcpStream::connect(addr).await.unwrap();
                            if tcp_only {
                                return (Some(tcp), None);
                            }
                            let name = ServerName::try_from("localhost").unwrap();
                            (None, Some(connector.connect(name, tcp).await.unwrap()))
                        });
                        // A few handshakes at a time.
                        if set.len() >= 32 {
                            opened.push(set.join_next().await.unwrap().unwrap());
                        }
                    }
                    opened.extend(set.join_all().await);
                    opened
                })
            };
            let mut keep = open(WARM);
            println!("WARM");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            keep.extend(open(n));
            println!("READY");
            // Hold the connections until the server closes our stdin.
            let _ = std::io::stdin().read_line(&mut line);
            drop(keep);
        }
    }
}
