//! Unit tests of the session: its future's size and the steps that need no socket.

use super::opening::open;
use super::*;

/// The session future is allocated once per connection and lives as long as the connection, so
/// its size is memory per idle device. Rare, large steps are boxed to keep it small.
#[tokio::test]
async fn session_future_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let store = rampart_store::Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .unwrap();
    let core = rampart_core::Core::new(
        store,
        rampart_core::secret::MasterKey::from_bytes(&[1; 32]),
        Default::default(),
    );
    let shared = Arc::new(Shared {
        core,
        config: crate::GatewayConfig::default(),
        retained: Default::default(),
        idle: None,
        stop: watch::channel(false).1,
        carried: Default::default(),
        listener: "mqtt",
    });
    let (a, _b) = tokio::io::duplex(64);
    let (_tx, rx) = watch::channel(false);
    let opening = open(
        a,
        "127.0.0.1:1".parse().unwrap(),
        &shared,
        ConnGuard::detached(),
    );
    println!("opening future: {} bytes", std::mem::size_of_val(&opening));
    drop(opening);
    let (a, _b) = tokio::io::duplex(64);
    let fut = run(
        a,
        "127.0.0.1:1".parse().unwrap(),
        shared,
        rx,
        ConnGuard::detached(),
    );
    let size = std::mem::size_of_val(&fut);
    println!(
        "Opened<TcpStream>: {} bytes; Close: {}",
        std::mem::size_of::<Opened<tokio::net::TcpStream>>(),
        std::mem::size_of::<Close>()
    );
    println!(
        "session future: {size} bytes; Session<TcpStream>: {} bytes; TlsStream: {} bytes; Packet: {} bytes",
        std::mem::size_of::<Session<tokio::net::TcpStream>>(),
        std::mem::size_of::<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>(),
        std::mem::size_of::<Packet>()
    );
    let idle = std::mem::size_of::<Idle>();
    println!("Idle: {idle} bytes");
    // A parked session is this one box (plus its inbox and the pool's slot and timer): it
    // must stay within the allocator's 160-byte size class (jemalloc has one; the next is 192).
    assert!(idle <= 160, "Idle is {idle} bytes");
    // An active session (TLS, or plain before it parks) holds this future; a parked one holds
    // only its `Idle` box. ~1,050 before the idle pool and pipelined acks, 1,616 with them,
    // 1,280 once the rarely used state moved into its own box.
    assert!(size <= 1400, "session future is {size} bytes");
}
