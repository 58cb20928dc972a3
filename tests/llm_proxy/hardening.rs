//! Issue 8, item 5: the example's server on the open internet. Idle half-open connections
//! cannot starve it (the built `llm_proxy serve` binary, as a child process, so its memory
//! is its own), and SIGTERM mid-stream ends the stream cleanly, commits and releases its
//! usage, and settles on chain what was delivered.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate::Amount;

use crate::demo::client::{Event, Flow, PayingClient};
use crate::demo::stack::{Options, Stack};
use crate::proxy::Proxy;
use crate::proxy::server::{self, Limits};
use crate::proxy::simulated::Simulator;
use crate::support::*;

const IDLE: usize = 5_000;

/// The example's binary, built (its build is cached once the tests' is done).
pub fn example_binary() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--features", "full", "--example", "llm_proxy"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the example builds");
    // Where cargo put it: `CARGO_TARGET_DIR` when set, else the crate's own `target/`.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug/examples/llm_proxy")
}

/// `llm_proxy serve` on a free port with a file limit of 20,000, and its address.
fn serve_child(dir: &std::path::Path) -> (Child, String) {
    let config = dir.join("llm_proxy.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:0"
realm = "llm-proxy.test"
[payment]
rpc_url = "http://127.0.0.1:9"
chain_id = 4242
escrow = "0x00000000000000000000000000000000e5c70001"
payee_key_env = "LLM_PROXY_TEST_PAYEE"
secret_env = "LLM_PROXY_TEST_SECRET"
suggested_deposit = 1.0
[simulated]
model = "tollgate-sim"
input_per_1m = 2.50
output_per_1m = 10.00
tokens_per_second = 0
"#,
    )
    .unwrap();
    let binary = example_binary();
    let script = r#"ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" serve --config "$1""#;
    let mut child = Command::new("sh")
        .args(["-c", script])
        .arg(&binary)
        .arg(&config)
        .env("LLM_PROXY_TEST_PAYEE", alloy::hex::encode_prefixed(PrivateKeySigner::random().to_bytes()))
        .env("LLM_PROXY_TEST_SECRET", "llm-proxy-test-secret-of-32-bytes!!")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server says where it listens").unwrap();
        if let Some(rest) = line.strip_prefix("llm_proxy listening on http://") {
            break rest.split(',').next().unwrap().to_owned();
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `GET /health` on a new connection: its status line.
async fn health(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_05_idle_half_open_connections_neither_starve_health_nor_keep_memory() {
    let dir = std::env::temp_dir().join(format!("llm_proxy_hardening_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut child, addr) = serve_child(&dir);
    for _ in 0..20 {
        assert_eq!(health(&addr).await, "HTTP/1.1 200 OK");
    }
    let start = rss_kib(child.id());

    // 5,000 clients each send half a request line and go silent.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut stream = TcpStream::connect(&addr).await.expect("connect (is the test's file limit 20,000?)");
        stream.write_all(b"GET /v1/chat/comp").await.unwrap();
        idle.push(stream);
    }
    let peak = rss_kib(child.id());
    let asked = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(5), health(&addr)).await;
    let took = asked.elapsed();
    assert_eq!(answered.expect("/health answers despite the idle connections"), "HTTP/1.1 200 OK");

    drop(idle);
    // The server notices the closes at once; give the allocator a moment.
    let mut after = rss_kib(child.id());
    for _ in 0..100 {
        if after * 5 <= start * 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_kib(child.id());
    }
    eprintln!(
        "VmRSS: {start} KiB at start, {peak} KiB with {IDLE} idle connections, {after} KiB after; /health took {took:?}"
    );
    assert_eq!(health(&addr).await, "HTTP/1.1 200 OK");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let exited = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(after * 5 <= start * 6, "memory back within 20% of its start: {start} KiB -> {after} KiB");
    assert!(exited.success(), "SIGTERM is a clean exit: {exited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_05_sigterm_mid_stream_ends_it_cleanly_commits_releases_and_settles() {
    // The signal is caught from here on (tokio's handler replaces the default exit).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let options = Options {
        simulated: true,
        simulator: Some(Simulator { delay: Duration::from_millis(30), fault: None }),
        voucher_window: 16,
        pause_deadline: Duration::from_secs(10),
        keep_alive: Duration::from_secs(15),
    };
    let stack = Stack::start(&config(""), options).await.unwrap();
    let proxy = Proxy {
        router: stack.proxy.router.clone(),
        catalog: stack.proxy.catalog.clone(),
        layer: stack.proxy.layer.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let limits = Limits { shutdown_grace_secs: 20, ..Limits::default() };
    let served =
        tokio::spawn(async move { server::run(&proxy, listener, &limits, |_| None, server::shutdown_signal()).await });

    let price = stack.proxy.catalog.get("tollgate-sim").unwrap().price.clone();
    let request = chat("tollgate-sim", "Tell me about shutdowns.");
    let mut client = PayingClient::new(url.clone(), stack.devnet.signer(2));
    stack.open(&mut client, &request, 100_000).await.unwrap();
    // Settling moves tokens out of the escrow (the payee's own balance also pays gas).
    let escrow_before = stack.devnet.balance(crate::demo::devnet::ESCROW).await.unwrap();
    let pid = std::process::id().to_string();
    let (mut events, mut signalled) = (Vec::new(), false);
    let streamed = client
        .stream(&request, |event| {
            events.push(event.clone());
            if !signalled && matches!(event, Event::Chunk(_)) && received_output(&events) >= 5 {
                signalled = true;
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
            }
            Flow::Continue
        })
        .await
        .unwrap();
    assert!(signalled, "SIGTERM was sent mid-stream");
    assert!(term.recv().await.is_some());
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(streamed.error.is_none(), "no error frame: {:?}", streamed.error);
    assert!(events.iter().any(|e| matches!(e, Event::Done)), "the stream ended with [DONE]");
    let receipt = streamed.receipt.expect("the payment receipt ends the stream");
    let usage = streamed.usage.expect("the usage chunk");
    let output = usage["completion_tokens"].as_u64().unwrap();
    let expected = cost(&price, usage["prompt_tokens"].as_u64().unwrap(), output);
    assert_eq!(receipt["spent"], expected.to_string());

    // New connections are refused once the server stops accepting.
    tokio::time::timeout(Duration::from_secs(30), served).await.expect("the server stops").unwrap().unwrap();
    assert!(TcpStream::connect(url.trim_start_matches("http://")).await.is_err(), "no longer accepting");
    let state = stack.state(client.channel().unwrap()).await.unwrap();
    assert_eq!((state.spent, state.reserved), (Amount::new(expected), Amount::ZERO), "committed and released");
    // The final settlement pass captured delivered value, never more.
    let settled = escrow_before - stack.devnet.balance(crate::demo::devnet::ESCROW).await.unwrap();
    eprintln!("delivered {expected}, accepted {}, settled on chain at shutdown {settled}", state.accepted);
    assert!(settled <= expected, "never more than delivered");
    assert!(settled > 0, "the final pass settled what was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue8_05_silent_headers_and_silent_bodies_are_cut_by_the_read_timeouts() {
    let (_unused, proxy) = offline(&config("")).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits { header_read_timeout_secs: 1, body_read_timeout_secs: 1, ..Limits::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        server::serve(listener, proxy.router, &limits, async {
            let _ = stopped.await;
        })
        .await
    });
    // Half a request line, then silence: the connection is closed, unanswered.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /hea").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), half.read_to_end(&mut answer)).await;
    assert!(read.expect("closed by the header read timeout").is_ok());
    // Headers promising a body that never comes: answered with an error, not held forever.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut answer)).await;
    assert!(read.expect("the body read timeout ends the request").is_ok());
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    eprintln!("a silent body got: {status:?}");
    assert!(!status.starts_with("HTTP/1.1 2"), "{status}");
    // A kept-alive connection idle past the header timeout is closed too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: proxy\r\n\r\n").await.unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), kept.read_to_end(&mut rest)).await;
    assert!(read.expect("an idle kept-alive connection is closed").is_ok());
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), served).await.expect("the server stops").unwrap();
}
