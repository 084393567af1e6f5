#!/usr/bin/env python3
"""Recompute the secure-session test vectors of docs/protocol.md from the Noise specification alone
(Python `cryptography`, no Noise library), as an independent check of crates/proto/src/secure_session.rs."""
import hmac, hashlib, struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives import serialization
H=lambda d: hashlib.sha256(d).digest()
HM=lambda k,d: hmac.new(k,d,hashlib.sha256).digest()
def hkdf(ck, ikm, n):
    t=HM(ck,ikm); o1=HM(t,b'\x01'); o2=HM(t,o1+b'\x02'); o3=HM(t,o2+b'\x03'); return [o1,o2,o3][:n]
def nonce(n): return b'\x00'*4+struct.pack('>Q',n)
class CS:
    def __init__(s,k=None): s.k=k; s.n=0
    def enc(s,ad,p):
        if s.k is None: return p
        c=AESGCM(s.k).encrypt(nonce(s.n),p,ad); s.n+=1; return c
    def dec(s,ad,c):
        if s.k is None: return c
        p=AESGCM(s.k).decrypt(nonce(s.n),c,ad); s.n+=1; return p
    def rekey(s): s.k=AESGCM(s.k).encrypt(nonce(2**64-1),b'\x00'*32,b'')[:32]
class SS:
    def __init__(s,name):
        s.h = name.ljust(32,b'\x00') if len(name)<=32 else H(name); s.ck=s.h; s.cs=CS()
    def mh(s,d): s.h=H(s.h+d)
    def mk(s,ikm): s.ck,k=hkdf(s.ck,ikm,2); s.cs=CS(k)
    def mkh(s,ikm): s.ck,th,k=hkdf(s.ck,ikm,3); s.mh(th); s.cs=CS(k)
    def eh(s,p): c=s.cs.enc(s.h,p); s.mh(c); return c
    def dh(s,c): p=s.cs.dec(s.h,c); s.mh(c); return p
    def split(s): a,b=hkdf(s.ck,b'',2); return CS(a),CS(b)
def pub(priv): return priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
did=b"d0123456789abcdefghi"; secret=b"00112233445566778899aabbccddeeff"
psk=HM(secret,b"rampart-noise-psk\n"+did); print("PSK", psk.hex())
ce=X25519PrivateKey.from_private_bytes(bytes(range(1,33))); se=X25519PrivateKey.from_private_bytes(bytes(range(0x21,0x41)))
fr=lambda b: (struct.pack('>H',len(b))+b).hex()
print("FRAME0", fr(did))
i=SS(b"Noise_NNpsk0_25519_AESGCM_SHA256"); i.mh(b"rampart-noise/1\n"+did)
i.mkh(psk); e=pub(ce); i.mh(e); i.mk(e); m1=e+i.eh(b''); print("FRAME1", fr(m1))
r=SS(b"Noise_NNpsk0_25519_AESGCM_SHA256"); r.mh(b"rampart-noise/1\n"+did)
r.mkh(psk); re_=m1[:32]; r.mh(re_); r.mk(re_); assert r.dh(m1[32:])==b''
e2=pub(se); r.mh(e2); r.mk(e2); r.mk(se.exchange(X25519PublicKey.from_public_bytes(re_))); m2=e2+r.eh(b''); print("FRAME2", fr(m2))
i.mh(m2[:32]); i.mk(m2[:32]); i.mk(ce.exchange(X25519PublicKey.from_public_bytes(m2[:32]))); assert i.dh(m2[32:])==b''
c_send,c_recv=i.split(); s_recv,s_send=r.split()
print("C2S_1", fr(c_send.enc(b'',b'\xc0\x00')))
print("S2C_1", fr(s_send.enc(b'',b'\xd0\x00')))
print("C2S_REKEY", fr(c_send.enc(b'',b''))); c_send.rekey()
print("C2S_2", fr(c_send.enc(b'',b'\xc0\x00')))
