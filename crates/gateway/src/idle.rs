//! The idle pool: plain-TCP sessions with nothing to do are set aside here, off the runtime.
//!
//! Most devices are silent most of the time. A silent session as a tokio task costs its whole
//! future, the task header and the runtime's registration of its socket. Here it costs its state
//! in one box, a slab slot and an epoll registration: one thread waits on every parked socket at
//! once and hands a session back to the runtime (a new task) when its socket brings anything but a
//! keepalive ping, when a message for it reaches its inbox, when its keepalive runs out, or at
//! shutdown. Pings (two fixed bytes in both MQTT versions) are answered here, so an idle device's
//! keepalive traffic never wakes its session.
//!
//! This module owns the sockets while they are parked and nothing else: bytes it reads that are
//! not pings go into the session's own buffer for it to decode, and it knows sessions only through
//! the few methods of [`Idle`].

use crate::session::{self, Idle};
use crate::Shared;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rampart_core::device::bus::{TagWake, Waiter};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];

/// Why a parked session goes back to the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Its socket is readable (data, end of stream or an error).
    Readable,
    /// A message reached its inbox.
    Message,
    /// Its keepalive deadline passed without a packet.
    KeepAlive,
    /// The gateway is shutting down.
    Shutdown,
}

enum Cmd {
    Park(std::net::TcpStream, Box<Idle>),
    Wake(u32, u32),
    Shutdown,
}

struct PoolShared {
    waker: mio::Waker,
    /// Commands for the pool thread; `None` once it has stopped taking sessions.
    cmds: Mutex<Option<Vec<Cmd>>>,
}

impl PoolShared {
    /// Queue a command (dropped once the pool has stopped: nothing is parked any more).
    fn send(&self, cmd: Cmd) {
        let mut g = self.cmds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = g.as_mut() {
            v.push(cmd);
            drop(g);
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "idle pool wake failed");
            }
        }
    }
}

/// Handle to the pool thread.
pub(crate) struct IdlePool {
    shared: Arc<PoolShared>,
    poll: Mutex<Option<Poll>>,
}

impl IdlePool {
    pub(crate) fn new() -> std::io::Result<IdlePool> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        Ok(IdlePool {
            shared: Arc::new(PoolShared {
                waker,
                cmds: Mutex::new(Some(Vec::new())),
            }),
            poll: Mutex::new(Some(poll)),
        })
    }

    /// Start the pool thread; sessions resume as tasks on `rt`.
    pub(crate) fn start(&self, gw: Arc<Shared>, rt: tokio::runtime::Handle) -> std::io::Result<()> {
        let Some(poll) = self.poll.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let pool = self.shared.clone();
        std::thread::Builder::new()
            .name("rampart-idle".into())
            .spawn(move || {
                Thread {
                    poll,
                    pool,
                    gw,
                    rt,
                    slots: Vec::new(),
                    free: Vec::new(),
                    timers: BinaryHeap::new(),
                    epoch: Instant::now(),
                    parked: 0,
                }
                .run()
            })?;
        Ok(())
    }

    /// Hand over an idle session; gives it back when the pool has stopped (shutdown).
    pub(crate) fn park(
        &self,
        io: std::net::TcpStream,
        idle: Box<Idle>,
    ) -> Result<(), (std::net::TcpStream, Box<Idle>)> {
        let mut g = self.shared.cmds.lock().unwrap_or_else(|p| p.into_inner());
        let Some(v) = g.as_mut() else {
            return Err((io, idle));
        };
        v.push(Cmd::Park(io, idle));
        drop(g);
        if let Err(e) = self.shared.waker.wake() {
            tracing::error!(error = %e, "idle pool wake failed");
        }
        Ok(())
    }

    /// Send every parked session back for closing, and stop taking new ones.
    pub(crate) fn shutdown(&self) {
        self.shared.send(Cmd::Shutdown);
    }
}

/// A message reached a parked session's inbox: every parked inbox shares the pool as its waiter,
/// told apart by the tag `slot << 32 | gen` (no allocation per parked session).
impl TagWake for PoolShared {
    fn wake_tag(&self, tag: u64) {
        self.send(Cmd::Wake((tag >> 32) as u32, tag as u32));
    }
}

/// A parked session's place. 16 bytes: the socket and the box travel together (both present or
/// both absent) but are kept as separate options so that no tuple padding is paid per slot.
struct Slot {
    gen: u32,
    io: Option<std::net::TcpStream>,
    idle: Option<Box<Idle>>,
}

impl Slot {
    fn take(&mut self) -> Option<(std::net::TcpStream, Box<Idle>)> {
        match (self.io.take(), self.idle.take()) {
            (Some(io), Some(idle)) => Some((io, idle)),
            _ => None,
        }
    }
}

/// A keepalive deadline `(ms since the pool's epoch, slot, gen)`: 16 bytes.
type Timer = Reverse<(u64, u32, u32)>;

struct Thread {
    poll: Poll,
    pool: Arc<PoolShared>,
    gw: Arc<Shared>,
    rt: tokio::runtime::Handle,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Keepalive deadlines: one entry per parked session with a keepalive (a ping answered here
    /// moves the session's deadline, not its entry: when the entry comes due the session's own
    /// deadline decides whether to close it or to queue a later entry). Entries of sessions gone
    /// since are skipped when they come due, or swept when they pile up.
    timers: BinaryHeap<Timer>,
    /// Time zero for [`Self::timers`].
    epoch: Instant,
    parked: usize,
}

impl Thread {
    /// Whole milliseconds since the epoch, rounded down.
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The timer entry for `deadline`: rounded up, so an entry that comes due (its time at or
    /// before the rounded-down present) always has its deadline passed.
    fn timer(&self, deadline: Instant, slot: u32, gen: u32) -> Timer {
        Reverse((self.ms(deadline).saturating_add(1), slot, gen))
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut cmds = Vec::new();
        loop {
            let timeout = self.timers.peek().map(|Reverse((at, _, _))| {
                Duration::from_millis(at.saturating_sub(self.ms(Instant::now())))
                    .min(Duration::from_secs(1))
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "idle pool poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                if let Ok(slot) = u32::try_from(ev.token().0) {
                    self.readable(slot);
                }
            }
            {
                let mut g = self.pool.cmds.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(v) = g.as_mut() {
                    std::mem::swap(v, &mut cmds);
                }
            }
            for cmd in cmds.drain(..) {
                match cmd {
                    Cmd::Park(io, idle) => self.park(io, idle),
                    Cmd::Wake(slot, gen) => self.resume(slot, gen, Resume::Message),
                    Cmd::Shutdown => {
                        // Stop taking sessions, then send every parked one back to close.
                        let late = self
                            .pool
                            .cmds
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .take()
                            .unwrap_or_default();
                        for cmd in late {
                            if let Cmd::Park(io, idle) = cmd {
                                self.spawn(io, idle, Resume::Shutdown);
                            }
                        }
                        for slot in 0..self.slots.len() as u32 {
                            let gen = self.slots[slot as usize].gen;
                            self.resume(slot, gen, Resume::Shutdown);
                        }
                        metrics::gauge!(rampart_core::telemetry::MQTT_SESSIONS_IDLE).set(0.0);
                        return;
                    }
                }
            }
            let now = Instant::now();
            let now_ms = self.ms(now);
            while let Some(Reverse((at, slot, gen))) = self.timers.peek().copied() {
                if at > now_ms {
                    break;
                }
                self.timers.pop();
                let deadline = self
                    .slots
                    .get(slot as usize)
                    .filter(|s| s.gen == gen)
                    .and_then(|s| s.idle.as_ref())
                    .and_then(|idle| idle.deadline());
                match deadline {
                    Some(d) if d <= now => self.resume(slot, gen, Resume::KeepAlive),
                    // Pings answered here moved the deadline on.
                    Some(d) => {
                        let t = self.timer(d, slot, gen);
                        self.timers.push(t);
                    }
                    None => {}
                }
            }
            if self.timers.len() > 2 * self.parked + 1024 {
                // Drop the deadlines of sessions that have left, and the memory they held.
                let slots = &self.slots;
                self.timers.retain(|Reverse((_, s, g))| {
                    slots
                        .get(*s as usize)
                        .is_some_and(|x| x.gen == *g && x.idle.is_some())
                });
                self.timers.shrink_to(2 * self.timers.len() + 1024);
            }
        }
    }

    fn park(&mut self, io: std::net::TcpStream, idle: Box<Idle>) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let Ok(s) = u32::try_from(self.slots.len()) else {
                    self.spawn(io, idle, Resume::Message);
                    return;
                };
                self.slots.push(Slot {
                    gen: 0,
                    io: None,
                    idle: None,
                });
                s
            }
        };
        let gen = {
            let s = &mut self.slots[slot as usize];
            s.gen = s.gen.wrapping_add(1);
            s.gen
        };
        let fd = io.as_raw_fd();
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(slot as usize),
            Interest::READABLE,
        ) {
            tracing::warn!(error = %e, "idle pool could not watch a socket");
            self.free.push(slot);
            self.spawn(io, idle, Resume::Message);
            return;
        }
        let deadline = idle.deadline();
        let pool: Arc<dyn TagWake> = self.pool.clone();
        let pending = idle
            .inbox()
            .wake_on_push(Waiter::Tagged(pool, u64::from(slot) << 32 | u64::from(gen)));
        let s = &mut self.slots[slot as usize];
        s.io = Some(io);
        s.idle = Some(idle);
        self.parked += 1;
        metrics::gauge!(rampart_core::telemetry::MQTT_SESSIONS_IDLE).increment(1.0);
        if let Some(at) = deadline {
            let t = self.timer(at, slot, gen);
            self.timers.push(t);
        }
        if pending {
            self.resume(slot, gen, Resume::Message);
        }
    }

    /// A parked socket is readable. Keepalive pings are answered here, the session staying
    /// parked; anything else (or the end of the stream) sends the session back with what was read.
    fn readable(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let gen = s.gen;
        let (Some(io), Some(idle)) = (s.io.as_mut(), s.idle.as_mut()) else {
            return;
        };
        // Read until the socket is drained (the registration is edge-triggered).
        let mut got = [0u8; 64];
        let mut n = 0;
        let mut wake = false;
        loop {
            if n == got.len() {
                // More than pings: the session decodes it and reads the rest itself (the pool
                // thread never keeps reading for a client that goes on sending).
                wake = true;
                break;
            }
            match io.read(&mut got[n..]) {
                Ok(0) => {
                    wake = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    wake = true;
                    break;
                }
            }
        }
        let pings = !wake && n > 0 && got[..n].chunks(2).all(|c| c == PINGREQ);
        if !pings {
            idle.push_input(&got[..n]);
            self.resume(slot, gen, Resume::Readable);
            return;
        }
        // PINGREQ (the same two bytes in MQTT 3.1.1 and 5.0): answer, keep the session parked.
        let mut out = [0u8; 64];
        let replies = n / 2;
        for r in out.chunks_mut(2).take(replies) {
            r.copy_from_slice(&PINGRESP);
        }
        let out = &out[..replies * 2];
        let written = match io.write(out) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                self.resume(slot, gen, Resume::Readable);
                return;
            }
        };
        metrics::counter!(rampart_core::telemetry::MQTT_IDLE_PINGS).increment(replies as u64);
        idle.touch();
        if written < out.len() {
            // The socket's send buffer is full: the session writes the rest itself.
            idle.push_output(&out[written..]);
            self.resume(slot, gen, Resume::Readable);
        }
    }

    fn resume(&mut self, slot: u32, gen: u32, why: Resume) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.gen != gen {
            return;
        }
        let Some((io, idle)) = s.take() else {
            return;
        };
        self.free.push(slot);
        self.parked -= 1;
        metrics::gauge!(rampart_core::telemetry::MQTT_SESSIONS_IDLE).decrement(1.0);
        let fd = io.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        idle.inbox().clear_waker();
        self.spawn(io, idle, why);
    }

    /// Give a session back to the runtime as a new task.
    fn spawn(&self, io: std::net::TcpStream, idle: Box<Idle>, why: Resume) {
        let _rt = self.rt.enter();
        let gw = self.gw.clone();
        match tokio::net::TcpStream::from_std(io) {
            Ok(io) => {
                self.rt.spawn(session::resume(io, idle, why, gw));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a parked session back");
                self.rt.spawn(session::abandon(idle, gw));
            }
        }
    }
}
