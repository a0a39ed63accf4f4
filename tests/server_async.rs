//! The server's use of tokio: the store's calls leave the async workers
//! free, and a stop lets the requests in flight finish.

#![cfg(feature = "server")]

mod server_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use server_support::{parse, request_bytes, Server, Target};
use sessionstore::server::ServerConfig;
use sessionstore::{AsyncSessionStore, NewMessage, SessionStore};

/// Ticks of a task on a runtime of one worker while `work` runs there.
fn ticks_during(store: &AsyncSessionStore, work: impl AsyncFnOnce(&AsyncSessionStore)) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let counted = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                counted.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        tokio::task::yield_now().await;
        let before = ticks.load(Ordering::Relaxed);
        work(store).await;
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        during
    })
}

/// On a runtime of one worker, a task keeps ticking while durable appends
/// (each waiting on a sync) and a check run through the async store: they
/// wait on the blocking pool, not on the worker. The same calls made
/// blocking stop the ticks.
#[test]
fn store_calls_leave_the_async_worker_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = AsyncSessionStore::new(SessionStore::open(dir.path().join("s.redb")).unwrap());
    let id = store.blocking().create_session(None).unwrap();
    let freed = ticks_during(&store, async |store| {
        for n in 0..30 {
            store
                .add_message(id, NewMessage::user(format!("m{n}")))
                .await
                .unwrap();
        }
        store.check().await.unwrap();
    });
    let blocked = ticks_during(&store, async |store| {
        for n in 0..30 {
            store
                .blocking()
                .add_message(id, NewMessage::user(format!("m{n}")))
                .unwrap();
        }
        store.blocking().check(&mut |_, _| {}).unwrap();
    });
    // The ticker sleeps 1 ms a tick: 30 synced appends and a check take
    // several, however fast the disk (7 seen on a loaded machine).
    assert!(
        freed >= 3 && blocked <= 1,
        "ticks: {freed} through the async store, {blocked} blocking"
    );
}

/// A stop while a long answer is being sent: the answer is sent whole,
/// and no new connection is taken.
#[test]
fn a_stop_finishes_the_requests_in_flight() {
    let mut server = Server::start(ServerConfig::default());
    let id = server.store.create_session(None).unwrap();
    let text = "x".repeat(1000);
    for _ in 0..100 {
        let turn = (0..100).map(|_| NewMessage::user(text.clone())).collect();
        server.store.add_messages(id, turn).unwrap();
    }
    let Target::Tcp(address) = server.client.target.clone() else {
        unreachable!()
    };
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(&request_bytes("GET", "/v1/admin/snapshot", &[], None))
        .unwrap();
    let mut raw = vec![0u8; 4096];
    let n = stream.read(&mut raw).unwrap();
    raw.truncate(n);
    server.stop();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "a stopping server takes no new connection"
    );
    stream.read_to_end(&mut raw).unwrap();
    let reply = parse(&raw);
    assert_eq!(reply.status, 200);
    let text = reply.text();
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        r#"{"end":{"sessions":1,"messages":10000,"next_message_id":10001}}"#
    );
    server.join();
}
