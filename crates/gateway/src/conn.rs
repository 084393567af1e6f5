//! Reading from a connection without holding a buffer while it is idle.
//!
//! A plain TCP connection waits for readiness and then reads into a per-thread scratch buffer;
//! only the bytes of a partial packet are copied into the connection's own buffer, which is empty
//! (no allocation) between packets. Streams that buffer internally (TLS) read straight into the
//! connection's buffer.

use bytes::BytesMut;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWrite};

/// Scratch space for one read; shared by every connection served on the thread.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// A byte stream the gateway serves. Reads go through [`Conn::read_some`] only (a secure session
/// decrypts whole frames, which a caller-sized `AsyncRead` buffer could not always take).
pub(crate) trait Conn: AsyncWrite + Unpin + Send {
    /// Append what is readable now (waiting until something is) to `buf`; `Ok(0)` at end of stream.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// The certificate (DER) the client presented in the TLS handshake, if any.
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        None
    }

    /// Whether the stream keeps no state of its own, so an idle session can give up its socket
    /// to the idle pool.
    fn parkable(&self) -> bool {
        false
    }

    /// The bare socket, taken off the runtime; only called when [`Conn::parkable`].
    fn into_std(self) -> io::Result<std::net::TcpStream>
    where
        Self: Sized,
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this stream cannot be parked",
        ))
    }

    /// The device a secure session was opened for (its frame 0): the only did its CONNECT may
    /// name. `None` on streams not bound to a device.
    fn bound_did(&self) -> Option<&str> {
        None
    }
}

impl Conn for tokio::net::TcpStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.readable().await?;
            let res = SCRATCH_BUF.with(|s| {
                let mut s = s.borrow_mut();
                let n = self.try_read(&mut s[..])?;
                buf.extend_from_slice(&s[..n]);
                Ok::<usize, io::Error>(n)
            });
            match res {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    fn parkable(&self) -> bool {
        true
    }

    fn into_std(self) -> io::Result<std::net::TcpStream> {
        tokio::net::TcpStream::into_std(self)
    }
}

impl Conn for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(1024);
        self.read_buf(buf).await
    }

    fn peer_certificate(&self) -> Option<Vec<u8>> {
        let certs = self.get_ref().1.peer_certificates()?;
        certs.first().map(|c| c.as_ref().to_vec())
    }
}

impl Conn for tokio::io::DuplexStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(1024);
        self.read_buf(buf).await
    }
}
