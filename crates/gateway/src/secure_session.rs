//! The plain-TCP listener: the secure-session layer (Noise `NNpsk0_25519_AESGCM_SHA256`,
//! `docs/protocol.md`, "Secure session"), and plain MQTT beside it when `allow_unencrypted` is on.
//!
//! A connection's first byte picks: `0x00` (the high byte of frame 0's length) is a secure
//! session, `0x10` plain MQTT. A secure session reads frame 0 (the did) and the handshake within
//! the connect timeout, asks core for the device's PSK (a random one for an unknown did, so it
//! fails exactly like a wrong PSK), and then serves the ordinary MQTT session over a
//! [`NoiseStream`]. Every failure closes the connection without a word to the peer and goes
//! through `rampart_core::device::secure_session::record`.
//!
//! Noise state lives in `rampart_proto::secure_session`; this module only moves bytes and keeps
//! time.

use crate::conn::Conn;
use crate::{session, ConnGuard, Shared};
use bytes::{Buf, BytesMut};
use rampart_core::device::secure_session::{record, SessionFailure};
use rampart_core::telemetry;
use rampart_proto::secure_session::{self as noise, Handshake, Opened, Transport};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// One connection on the plain-TCP listener, from its first byte.
pub(crate) async fn run_plain(
    sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnGuard,
) {
    let deadline = Instant::now() + shared.config.connect_timeout;
    let allow_plain = shared.config.allow_unencrypted;
    let mut first = [0u8; 1];
    let first = match tokio::time::timeout_at(deadline, sock.peek(&mut first)).await {
        Ok(Ok(1)) => first[0],
        Ok(_) => return,
        Err(_) => {
            if !allow_plain {
                record(SessionFailure::Timeout, None, &peer.to_string());
            }
            return;
        }
    };
    // Each kind of session is boxed, so this task's own future stays small.
    if first == 0x00 {
        Box::pin(run(sock, peer, shared, stop, guard, deadline)).await;
    } else if allow_plain {
        Box::pin(session::run(sock, peer, shared, stop, guard)).await;
    } else {
        let why = if first == 0x10 {
            SessionFailure::Unencrypted
        } else {
            SessionFailure::Malformed
        };
        record(why, None, &peer.to_string());
    }
}

/// A secure session: handshake, then the MQTT session over it.
async fn run(
    mut sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    guard: ConnGuard,
    deadline: Instant,
) {
    let mut did = None;
    let mut early = BytesMut::new();
    let hs = handshake(&mut sock, &shared, &mut early, &mut did);
    let hs = tokio::time::timeout_at(deadline, hs).await;
    let transport = match hs {
        Ok(Ok(t)) => t,
        Ok(Err(Some(why))) => return record(why, did.as_deref(), &peer.to_string()),
        Ok(Err(None)) => {
            tracing::debug!(%peer, "connection closed during the secure-session handshake");
            return;
        }
        Err(_) => return record(SessionFailure::Timeout, did.as_deref(), &peer.to_string()),
    };
    let Some(did) = did else { return };
    metrics::counter!(telemetry::SECURE_SESSION_HANDSHAKES).increment(1);
    tracing::debug!(%peer, did = %did, "secure session established");
    let stream = NoiseStream {
        sock,
        noise: Box::new(transport),
        did,
        rx: early,
        tx: BytesMut::new(),
        rekeyed_at: Instant::now(),
        rekey_interval: shared.config.rekey_interval,
    };
    session::run(stream, peer, shared, stop, guard).await;
}

/// Frame 0, message 1 in, message 2 out; bytes read past message 1 are left in `buf` (a device
/// cannot seal anything before it has message 2, so they will not decrypt). `Err(None)`: the
/// peer went away.
async fn handshake(
    sock: &mut TcpStream,
    shared: &Shared,
    buf: &mut BytesMut,
    did_out: &mut Option<Box<str>>,
) -> Result<Transport, Option<SessionFailure>> {
    let body = read_frame(sock, buf, noise::DID_MAX).await?;
    let did = noise::parse_did_frame(&body).map_err(|_| Some(SessionFailure::Malformed))?;
    *did_out = Some(did.into());
    // An unknown did, or one that may not open a session, gets a random PSK: the handshake
    // then fails exactly as with a wrong secret, and only the log knows the difference.
    let (psk, refused) = match shared.core.secure_session_psk(did).await {
        Ok(psk) => (psk, None),
        Err((why, psk)) => (psk, Some(why)),
    };
    let mut hs = Handshake::responder(did, &psk).map_err(|e| {
        tracing::error!(error = %e, "secure-session responder not built");
        Some(SessionFailure::Internal)
    })?;
    let m1 = read_frame(sock, buf, noise::HANDSHAKE_LEN).await?;
    match hs.read(&m1) {
        Ok(()) => {}
        Err(noise::Error::Malformed(_)) => return Err(Some(SessionFailure::Malformed)),
        Err(_) => return Err(Some(refused.unwrap_or(SessionFailure::BadPsk))),
    }
    if let Some(why) = refused {
        return Err(Some(why));
    }
    let mut out = BytesMut::new();
    let m2 = hs.write().map_err(|_| Some(SessionFailure::Internal))?;
    noise::put_frame(&m2, &mut out).map_err(|_| Some(SessionFailure::Internal))?;
    sock.write_all(&out).await.map_err(|_| None)?;
    hs.into_transport(shared.config.rekey_messages)
        .map_err(|_| Some(SessionFailure::Internal))
}

/// One whole frame of at most `max` bytes (a longer length is refused before its body is read).
async fn read_frame(
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, Option<SessionFailure>> {
    loop {
        if buf.len() >= 2 && usize::from(u16::from_be_bytes([buf[0], buf[1]])) > max {
            return Err(Some(SessionFailure::Malformed));
        }
        if let Some(body) = noise::take_frame(buf) {
            return Ok(body);
        }
        buf.reserve(2 + max);
        match sock.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

/// The MQTT byte stream of a secure session: reads decrypt whole frames into the session's
/// buffer, writes are encrypted into frames. Between packets it holds no buffer (both are
/// emptied and freed), only the Noise state. Not parkable: its keys are not in the idle pool's
/// reach, so an idle secure session stays a task.
pub(crate) struct NoiseStream {
    sock: TcpStream,
    noise: Box<Transport>,
    did: Box<str>,
    /// Ciphertext of a frame not yet whole.
    rx: BytesMut,
    /// Ciphertext not yet written.
    tx: BytesMut,
    /// When the server's sending key last rotated (or the session began).
    rekeyed_at: Instant,
    rekey_interval: Duration,
}

impl NoiseStream {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            let n = ready!(Pin::new(&mut self.sock).poll_write(cx, &self.tx))?;
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

    fn failed(&self, why: SessionFailure) -> io::Error {
        let peer = self
            .sock
            .peer_addr()
            .map_or_else(|_| "-".to_owned(), |a| a.to_string());
        record(why, Some(&self.did), &peer);
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }
}

impl Conn for NoiseStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // Every whole frame buffered is decrypted before the next wait, with no await in
            // between, so a read cancelled at its wait loses nothing.
            let mut got = 0;
            while let Some(body) = noise::take_frame(&mut self.rx) {
                match self.noise.open(&body, buf) {
                    Ok(Opened::Data(n)) => got += n,
                    Ok(Opened::Rekeyed) => {
                        metrics::counter!(telemetry::SECURE_SESSION_REKEYS, "direction" => "in")
                            .increment(1);
                    }
                    Err(_) => return Err(self.failed(SessionFailure::BadTag)),
                }
            }
            if self.rx.is_empty() && self.rx.capacity() > 0 {
                self.rx = BytesMut::new();
            }
            if got > 0 {
                return Ok(got);
            }
            if Conn::read_some(&mut self.sock, &mut self.rx).await? == 0 {
                return Ok(0);
            }
        }
    }

    fn bound_did(&self) -> Option<&str> {
        Some(&self.did)
    }
}

impl AsyncWrite for NoiseStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // What is sealed but unwritten goes first: at most one message waits per stream.
        ready!(this.poll_drain(cx))?;
        let take = data.len().min(noise::PLAINTEXT_MAX);
        if take == 0 {
            return Poll::Ready(Ok(0));
        }
        let before = this.noise.sent_since_rekey();
        let sealed = if this.rekeyed_at.elapsed() >= this.rekey_interval {
            this.noise
                .rekey_now(&mut this.tx)
                .and_then(|()| this.noise.seal(&data[..take], &mut this.tx))
                .map(|()| true)
        } else {
            // `seal` rotates by itself after `rekey_messages`: the count starts again.
            this.noise
                .seal(&data[..take], &mut this.tx)
                .map(|()| before > 0 && this.noise.sent_since_rekey() == 1)
        };
        match sealed {
            Ok(rotated) => {
                if rotated {
                    this.rekeyed_at = Instant::now();
                    metrics::counter!(telemetry::SECURE_SESSION_REKEYS, "direction" => "out")
                        .increment(1);
                }
            }
            Err(e) => return Poll::Ready(Err(io::Error::other(e.to_string()))),
        }
        // Start writing now; what the socket does not take waits for the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.sock).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server-side stream over loopback and the device's transport state at the other end.
    async fn pair(
        rekey_messages: u64,
        rekey_interval: Duration,
    ) -> (NoiseStream, TcpStream, Transport) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let device = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let psk = noise::psk(b"secret", "dev1");
        let mut c = Handshake::initiator("dev1", &psk).unwrap();
        let mut s = Handshake::responder("dev1", &psk).unwrap();
        s.read(&c.write().unwrap()).unwrap();
        c.read(&s.write().unwrap()).unwrap();
        let stream = NoiseStream {
            sock: server,
            noise: Box::new(s.into_transport(rekey_messages).unwrap()),
            did: "dev1".into(),
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            rekeyed_at: Instant::now(),
            rekey_interval,
        };
        (stream, device, c.into_transport(0).unwrap())
    }

    /// Read the device's side until `want` plaintext bytes arrived; how many rotations it saw.
    async fn receive(sock: &mut TcpStream, t: &mut Transport, want: usize) -> (Vec<u8>, usize) {
        let (mut wire, mut plain, mut rotations) = (BytesMut::new(), BytesMut::new(), 0);
        while plain.len() < want {
            sock.read_buf(&mut wire).await.unwrap();
            while let Some(body) = noise::take_frame(&mut wire) {
                if t.open(&body, &mut plain).unwrap() == Opened::Rekeyed {
                    rotations += 1;
                }
            }
        }
        (plain.to_vec(), rotations)
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_rotates_its_key_by_age() {
        let (mut s, mut dev, mut t) = pair(0, Duration::from_secs(60)).await;
        s.write_all(b"one").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(receive(&mut dev, &mut t, 3).await, (b"one".to_vec(), 0));
        tokio::time::advance(Duration::from_secs(59)).await;
        s.write_all(b"two").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(receive(&mut dev, &mut t, 3).await, (b"two".to_vec(), 0));
        tokio::time::advance(Duration::from_secs(2)).await;
        s.write_all(b"three").await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(receive(&mut dev, &mut t, 5).await, (b"three".to_vec(), 1));
    }

    #[tokio::test]
    async fn reads_follow_the_devices_rotation_and_refuse_a_bad_tag() {
        let (mut s, mut dev, mut t) = pair(0, Duration::MAX).await;
        let mut wire = BytesMut::new();
        t.seal(b"ab", &mut wire).unwrap();
        t.rekey_now(&mut wire).unwrap();
        t.seal(b"cd", &mut wire).unwrap();
        dev.write_all(&wire).await.unwrap();
        let mut got = BytesMut::new();
        while got.len() < 4 {
            assert!(s.read_some(&mut got).await.unwrap() > 0);
        }
        assert_eq!(&got[..], b"abcd");
        assert!(
            s.rx.is_empty() && s.rx.capacity() == 0,
            "a buffer kept between frames"
        );
        let mut wire = BytesMut::new();
        t.seal(b"ef", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        dev.write_all(&wire).await.unwrap();
        let err = s.read_some(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
