//! The secure-session layer for modules without TLS: Noise `NNpsk0_25519_AESGCM_SHA256` over
//! length-prefixed frames on the plain-TCP MQTT listener (`docs/protocol.md`, "Secure session").
//!
//! Owns the constants, the frame codec, the PSK and prologue derivations, and a sans-I/O state
//! machine over `snow`: [`Handshake`] for frames 1 and 2, then [`Transport`] for the MQTT byte
//! stream with key rotation. It never touches a socket or a clock: the caller moves bytes and
//! decides when time-based rotation is due.

use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The Noise protocol name; it is hashed into the handshake, so both sides must spell it so.
pub const PROTOCOL_NAME: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// The prologue is this followed by the did of frame 0.
pub const PROLOGUE_PREFIX: &[u8] = b"rampart-noise/1\n";
/// The PSK is HMAC-SHA256, keyed by the device secret, of this followed by the did.
pub const PSK_LABEL: &[u8] = b"rampart-noise-psk\n";
/// Longest did in frame 0, bytes.
pub const DID_MAX: usize = 64;
/// Largest frame body (and Noise message), bytes: the 2-byte length's limit.
pub const FRAME_MAX: usize = 65_535;
/// AES-GCM tag on every transport message.
pub const TAG_LEN: usize = 16;
/// Most plaintext one transport message carries.
pub const PLAINTEXT_MAX: usize = FRAME_MAX - TAG_LEN;
/// Both handshake messages: an ephemeral public key (32) and the tag of the empty payload (16).
pub const HANDSHAKE_LEN: usize = 48;
/// PSK length.
pub const PSK_LEN: usize = 32;

/// Why a frame or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Frame 0 is empty, longer than [`DID_MAX`] or not UTF-8; a handshake message has the wrong
    /// length.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A body longer than a frame can carry.
    #[error("frame larger than {FRAME_MAX} bytes")]
    Oversize,
    /// A handshake message that does not verify: the peers do not share the PSK (or the
    /// prologue), or the bytes were changed.
    #[error("handshake failed (PSK or prologue mismatch, or altered bytes)")]
    Handshake,
    /// A transport message whose tag does not verify.
    #[error("transport message does not decrypt")]
    Decrypt,
    /// The Noise state refused the operation (out of order, nonce exhausted).
    #[error("noise state: {0}")]
    State(String),
}

/// `"rampart-noise/1\n" + did`.
pub fn prologue(did: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROLOGUE_PREFIX.len() + did.len());
    p.extend_from_slice(PROLOGUE_PREFIX);
    p.extend_from_slice(did.as_bytes());
    p
}

/// HMAC-SHA256(key = device secret, message = `"rampart-noise-psk\n" + did`). The secret is used
/// as the bytes of its text, as in every other device signature.
pub fn psk(device_secret: &[u8], did: &str) -> [u8; PSK_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(device_secret).expect("HMAC takes any key length");
    mac.update(PSK_LABEL);
    mac.update(did.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Append one frame: the body's length (2 bytes, big-endian), then the body.
pub fn put_frame(body: &[u8], out: &mut BytesMut) -> Result<(), Error> {
    let len = u16::try_from(body.len()).map_err(|_| Error::Oversize)?;
    out.reserve(2 + body.len());
    out.put_u16(len);
    out.put_slice(body);
    Ok(())
}

/// Take one whole frame's body off the front of `buf`; `None` while it is incomplete.
pub fn take_frame(buf: &mut BytesMut) -> Option<BytesMut> {
    if buf.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if buf.len() < 2 + len {
        return None;
    }
    buf.advance(2);
    Some(buf.split_to(len))
}

/// Frame 0's body as a did: 1 to [`DID_MAX`] bytes of UTF-8 (the did grammar is the caller's).
pub fn parse_did_frame(body: &[u8]) -> Result<&str, Error> {
    if body.is_empty() || body.len() > DID_MAX {
        return Err(Error::Malformed("frame 0 must hold a did of 1 to 64 bytes"));
    }
    std::str::from_utf8(body).map_err(|_| Error::Malformed("frame 0 is not UTF-8"))
}

fn params() -> snow::params::NoiseParams {
    PROTOCOL_NAME
        .parse()
        .expect("the protocol name is one snow knows")
}

fn state(e: snow::Error) -> Error {
    Error::State(e.to_string())
}

/// Frames 1 and 2: Noise handshake messages with empty payloads.
pub struct Handshake {
    state: Box<snow::HandshakeState>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.state.is_initiator())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    fn build(
        did: &str,
        psk: &[u8; PSK_LEN],
        initiator: bool,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<Handshake, Error> {
        let prologue = prologue(did);
        let mut b = snow::Builder::new(params())
            .prologue(&prologue)
            .map_err(state)?
            .psk(0, psk)
            .map_err(state)?;
        if let Some(e) = ephemeral {
            b = b.fixed_ephemeral_key_for_testing_only(e);
        }
        let state = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
        .map_err(state)?;
        Ok(Handshake {
            state: Box::new(state),
        })
    }

    /// The server's side of the session of `did`, keyed by `psk`.
    pub fn responder(did: &str, psk: &[u8; PSK_LEN]) -> Result<Handshake, Error> {
        Handshake::build(did, psk, false, None)
    }

    /// The device's side.
    pub fn initiator(did: &str, psk: &[u8; PSK_LEN]) -> Result<Handshake, Error> {
        Handshake::build(did, psk, true, None)
    }

    /// Either side with a fixed ephemeral private key: only for reproducing the test vectors.
    /// A fixed ephemeral key in a real session gives away its secrecy.
    pub fn with_ephemeral_for_vectors(
        did: &str,
        psk: &[u8; PSK_LEN],
        initiator: bool,
        ephemeral: &[u8; 32],
    ) -> Result<Handshake, Error> {
        Handshake::build(did, psk, initiator, Some(ephemeral))
    }

    /// This side's next handshake message (frame 1 for the initiator, frame 2 for the responder),
    /// as a frame body.
    pub fn write(&mut self) -> Result<Vec<u8>, Error> {
        let mut msg = vec![0u8; HANDSHAKE_LEN];
        let n = self.state.write_message(&[], &mut msg).map_err(state)?;
        msg.truncate(n);
        Ok(msg)
    }

    /// The peer's handshake message. Anything but [`HANDSHAKE_LEN`] bytes with a verifying tag
    /// (an empty payload) is refused.
    pub fn read(&mut self, msg: &[u8]) -> Result<(), Error> {
        if msg.len() != HANDSHAKE_LEN {
            return Err(Error::Malformed("a handshake message is 48 bytes"));
        }
        let mut payload = [0u8; HANDSHAKE_LEN];
        match self.state.read_message(msg, &mut payload) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::Malformed("a handshake payload is empty")),
            Err(snow::Error::Decrypt) => Err(Error::Handshake),
            Err(e) => Err(state(e)),
        }
    }

    /// Both messages are through: the transport state. `rekey_after`: messages this side sends
    /// with one key before it rotates on its own (0: never by count).
    pub fn into_transport(self, rekey_after: u64) -> Result<Transport, Error> {
        let state = (*self.state).into_transport_mode().map_err(state)?;
        Ok(Transport {
            state,
            sent: 0,
            rekey_after,
        })
    }
}

/// What one transport message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// This many plaintext bytes were appended.
    Data(usize),
    /// An empty message: the peer's sending key, and so this side's receiving key, rotated.
    Rekeyed,
}

/// The session after the handshake: MQTT bytes in transport messages, and key rotation.
pub struct Transport {
    state: snow::TransportState,
    /// Messages sent with the current sending key.
    sent: u64,
    rekey_after: u64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("sent", &self.sent)
            .field("rekey_after", &self.rekey_after)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Encrypt `plaintext` into as many frames as it needs, appended to `out`. When this side
    /// has sent `rekey_after` messages with its key, an empty message (and the rotation) goes
    /// first. Empty plaintext sends nothing: an empty message means "rekey".
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        for chunk in plaintext.chunks(PLAINTEXT_MAX) {
            if self.rekey_after > 0 && self.sent >= self.rekey_after {
                self.rekey_now(out)?;
            }
            self.message(chunk, out)?;
            self.sent += 1;
        }
        Ok(())
    }

    /// Rotate the sending key now: an empty message, then `Rekey()` on the sending cipher.
    pub fn rekey_now(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.message(&[], out)?;
        self.state.rekey_outgoing();
        self.sent = 0;
        Ok(())
    }

    fn message(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let len = plaintext.len() + TAG_LEN;
        let len16 = u16::try_from(len).map_err(|_| Error::Oversize)?;
        let start = out.len();
        out.reserve(2 + len);
        out.put_u16(len16);
        out.resize(start + 2 + len, 0);
        match self
            .state
            .write_message(plaintext, &mut out[start + 2..])
            .map_err(state)
        {
            Ok(n) => {
                debug_assert_eq!(n, len);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Decrypt one frame's body, appending its plaintext to `out`; an empty message rotates the
    /// receiving key.
    pub fn open(&mut self, body: &[u8], out: &mut BytesMut) -> Result<Opened, Error> {
        if body.len() < TAG_LEN {
            return Err(Error::Decrypt);
        }
        let start = out.len();
        out.resize(start + body.len() - TAG_LEN, 0);
        match self.state.read_message(body, &mut out[start..]) {
            Ok(0) => {
                out.truncate(start);
                self.state.rekey_incoming();
                Ok(Opened::Rekeyed)
            }
            Ok(n) => {
                out.truncate(start + n);
                Ok(Opened::Data(n))
            }
            Err(e) => {
                out.truncate(start);
                Err(match e {
                    snow::Error::Decrypt => Error::Decrypt,
                    e => state(e),
                })
            }
        }
    }

    /// Messages sent with the current sending key.
    pub fn sent_since_rekey(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of `docs/protocol.md` ("Secure session"): keep both in step.
    mod vectors {
        pub(super) const DID: &str = "d0123456789abcdefghi";
        pub(super) const SECRET: &str = "00112233445566778899aabbccddeeff";
        /// Ephemeral private keys: bytes 0x01..=0x20 for the device, 0x21..=0x40 for the server.
        pub(super) fn client_e() -> [u8; 32] {
            std::array::from_fn(|i| i as u8 + 0x01)
        }
        pub(super) fn server_e() -> [u8; 32] {
            std::array::from_fn(|i| i as u8 + 0x21)
        }
        pub(super) const PSK: &str =
            "a2f30c9053e93b8022f4f5674a370c845f663109a36e6ae668d8dc9e5051cbaf";
        pub(super) const FRAME0: &str = "00146430313233343536373839616263646566676869";
        pub(super) const FRAME1: &str =
            "003007a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c7f2a0c70136027d972ae2d246ac2c502";
        pub(super) const FRAME2: &str =
            "00305869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67be4ae7e84c3ddce92c4ebb319e4dc93cc";
        /// Device -> server: MQTT PINGREQ (`c000`).
        pub(super) const C2S_1: &str = "00129221b6709016b32a7e36726c268ab6cf752e";
        /// Server -> device: MQTT PINGRESP (`d000`).
        pub(super) const S2C_1: &str = "0012ea1e50b3cb8e61a191e765716c84814801c7";
        /// Device -> server: the empty message announcing its rotation.
        pub(super) const C2S_REKEY: &str = "0010fb15c18dff8eb684b6bea9ba23d9c95c";
        /// Device -> server: PINGREQ again, under the rotated key.
        pub(super) const C2S_2: &str = "0012ca0dbf68c9f8d89658f3fb2400deb4a5bcac";
    }

    fn frame_hex(body: &[u8]) -> String {
        let mut f = BytesMut::new();
        put_frame(body, &mut f).unwrap();
        hex::encode(&f)
    }

    fn pair(rekey_after: u64) -> (Transport, Transport) {
        let psk = psk(b"secret", "dev1");
        let mut c = Handshake::initiator("dev1", &psk).unwrap();
        let mut s = Handshake::responder("dev1", &psk).unwrap();
        s.read(&c.write().unwrap()).unwrap();
        c.read(&s.write().unwrap()).unwrap();
        (
            c.into_transport(rekey_after).unwrap(),
            s.into_transport(rekey_after).unwrap(),
        )
    }

    fn deliver(from: &mut Transport, to: &mut Transport, msg: &[u8]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        from.seal(msg, &mut wire).unwrap();
        let mut plain = BytesMut::new();
        while let Some(body) = take_frame(&mut wire) {
            to.open(&body, &mut plain).unwrap();
        }
        assert!(wire.is_empty());
        plain.to_vec()
    }

    #[test]
    fn the_vectors_hold() {
        use vectors::*;
        let psk = psk(SECRET.as_bytes(), DID);
        let mut c = Handshake::with_ephemeral_for_vectors(DID, &psk, true, &client_e()).unwrap();
        let mut s = Handshake::with_ephemeral_for_vectors(DID, &psk, false, &server_e()).unwrap();
        let m1 = c.write().unwrap();
        s.read(&m1).unwrap();
        let m2 = s.write().unwrap();
        c.read(&m2).unwrap();
        let (mut c, mut s) = (c.into_transport(0).unwrap(), s.into_transport(0).unwrap());
        let mut c2s1 = BytesMut::new();
        c.seal(&[0xc0, 0x00], &mut c2s1).unwrap();
        let mut s2c1 = BytesMut::new();
        s.seal(&[0xd0, 0x00], &mut s2c1).unwrap();
        let mut rekey = BytesMut::new();
        c.rekey_now(&mut rekey).unwrap();
        let mut c2s2 = BytesMut::new();
        c.seal(&[0xc0, 0x00], &mut c2s2).unwrap();
        let got = [
            ("PSK", hex::encode(psk)),
            ("FRAME0", frame_hex(DID.as_bytes())),
            ("FRAME1", frame_hex(&m1)),
            ("FRAME2", frame_hex(&m2)),
            ("C2S_1", hex::encode(&c2s1)),
            ("S2C_1", hex::encode(&s2c1)),
            ("C2S_REKEY", hex::encode(&rekey)),
            ("C2S_2", hex::encode(&c2s2)),
        ];
        let want = [PSK, FRAME0, FRAME1, FRAME2, C2S_1, S2C_1, C2S_REKEY, C2S_2];
        for (name, got) in &got {
            println!("{name} = {got}");
        }
        for ((name, got), want) in got.iter().zip(want) {
            assert_eq!(got, want, "{name}");
        }
        // The server reads the device's frames back, rotation included.
        let mut plain = BytesMut::new();
        for hex_frame in [C2S_1, C2S_REKEY, C2S_2] {
            let mut wire = BytesMut::from(&hex::decode(hex_frame).unwrap()[..]);
            let body = take_frame(&mut wire).unwrap();
            s.open(&body, &mut plain).unwrap();
        }
        assert_eq!(&plain[..], &[0xc0, 0x00, 0xc0, 0x00]);
    }

    #[test]
    fn frames_split_and_join() {
        let mut b = BytesMut::new();
        put_frame(b"abc", &mut b).unwrap();
        put_frame(b"", &mut b).unwrap();
        assert_eq!(&b[..], b"\x00\x03abc\x00\x00");
        let mut part = b.split_to(4);
        assert_eq!(take_frame(&mut part), None);
        part.unsplit(b);
        assert_eq!(&take_frame(&mut part).unwrap()[..], b"abc");
        assert_eq!(&take_frame(&mut part).unwrap()[..], b"");
        assert!(part.is_empty());
        assert_eq!(
            put_frame(&vec![0; FRAME_MAX + 1], &mut BytesMut::new()),
            Err(Error::Oversize)
        );
        assert!(parse_did_frame(b"").is_err());
        assert!(parse_did_frame(&[b'a'; 65]).is_err());
        assert!(parse_did_frame(&[0xff]).is_err());
        assert_eq!(parse_did_frame(b"dev1"), Ok("dev1"));
    }

    #[test]
    fn a_wrong_psk_or_did_fails_the_handshake() {
        let good = psk(b"secret", "dev1");
        let bad = psk(b"other", "dev1");
        let mut c = Handshake::initiator("dev1", &bad).unwrap();
        let mut s = Handshake::responder("dev1", &good).unwrap();
        assert_eq!(s.read(&c.write().unwrap()), Err(Error::Handshake));
        // Same PSK, another did in the prologue.
        let mut c = Handshake::initiator("dev2", &good).unwrap();
        let mut s = Handshake::responder("dev1", &good).unwrap();
        assert_eq!(s.read(&c.write().unwrap()), Err(Error::Handshake));
        let mut s = Handshake::responder("dev1", &good).unwrap();
        assert!(matches!(s.read(&[0; 47]), Err(Error::Malformed(_))));
    }

    #[test]
    fn large_writes_split_and_a_flipped_byte_fails() {
        let (mut c, mut s) = pair(0);
        let big = vec![7u8; PLAINTEXT_MAX * 2 + 10];
        assert_eq!(deliver(&mut c, &mut s, &big), big);
        let mut wire = BytesMut::new();
        c.seal(b"hello", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let body = take_frame(&mut wire).unwrap();
        assert_eq!(s.open(&body, &mut BytesMut::new()), Err(Error::Decrypt));
    }

    #[test]
    fn rotation_by_count_and_on_demand() {
        let (mut c, mut s) = pair(2);
        for i in 0..7u8 {
            assert_eq!(deliver(&mut s, &mut c, &[i]), vec![i]);
            assert!(s.sent_since_rekey() <= 2);
        }
        // Each side rotating on its own keeps the other in step.
        let mut wire = BytesMut::new();
        c.rekey_now(&mut wire).unwrap();
        let body = take_frame(&mut wire).unwrap();
        assert_eq!(s.open(&body, &mut BytesMut::new()), Ok(Opened::Rekeyed));
        assert_eq!(deliver(&mut c, &mut s, b"after"), b"after");
        // A receiver that does not rotate cannot read on.
        let mut wire = BytesMut::new();
        c.rekey_now(&mut wire).unwrap();
        c.seal(b"x", &mut wire).unwrap();
        take_frame(&mut wire).unwrap();
        let body = take_frame(&mut wire).unwrap();
        assert_eq!(s.open(&body, &mut BytesMut::new()), Err(Error::Decrypt));
    }
}
