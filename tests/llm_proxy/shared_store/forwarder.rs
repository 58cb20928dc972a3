//! A TCP forwarder on 127.0.0.1 between a proxy instance and its store server, which a test
//! cuts (every connection dropped, new ones refused) and restores: a store outage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Forwards every connection to `to`; stops when dropped.
pub struct Forwarder {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    pipes: Mutex<Vec<AbortHandle>>,
}

impl Forwarder {
    /// Starts forwarding to `to` (`host:port`).
    pub async fn start(to: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if state.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let to = to.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut pipes = state.pipes.lock().unwrap();
                pipes.retain(|p| !p.is_finished());
                pipes.push(pipe.abort_handle());
            }
        });
        Forwarder { addr, shared, task }
    }

    /// The outage: drops every forwarded connection and refuses new ones until
    /// [`restore`](Forwarder::restore).
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for pipe in self.shared.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Ends the outage.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
