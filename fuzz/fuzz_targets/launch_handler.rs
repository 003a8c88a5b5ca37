//! Raw HTTP/1 bytes into the real server (routing, header and body limits, the whole launch flow over
//! SQLite), responses out. The server must never panic, hang or answer 500: every failure a client
//! can cause is a 4xx, and the only 5xx is 503, the honest answer while Docker is unreachable (here it
//! always is: the only Docker host's endpoint is a closed port).
//!
//! An input starting with `SIGNED\n` is not sent as it is: its rest is read loosely as form
//! parameters, signed now with a fresh nonce for the registered consumer, and posted to
//! `/lti/launch`, so arbitrary parameter sets reach the code behind the signature check. The raw seeds
//! carry fixed timestamps; the fuzz deployment's 100-year timestamp window keeps them valid.

#![no_main]

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mooc_lti::app::App;
use mooc_lti::config::Config;
use mooc_lti::lti;
use mooc_lti::secret::Secret;
use mooc_lti::server;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
const PUBLIC_URL: &str = "http://lti.fuzz.test";
/// How long the process must be idle, with all input read, before the client half-closes.
const QUIET: Duration = Duration::from_millis(5);
/// CPU time other threads may use in one 0.5 ms poll of an idle process (timer wake-ups and the like).
const BUSY_CPU: Duration = Duration::from_micros(50);
/// Longer than any honest answer (the launch wait is 1 s): past it the connection hangs.
const HANG: Duration = Duration::from_secs(10);

struct Harness {
    runtime: Runtime,
    app: Arc<App>,
    /// Holds the database. Never dropped (libFuzzer exits without running destructors), so
    /// scripts/fuzz.sh points TMPDIR into fuzz/target and clears it.
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("mooc-lti-fuzz-")
            .tempdir()
            .expect("temp dir");
        // A 1 ms header timeout ends each input's connection as soon as the server waits for another
        // request head; the input is all there at once, so no honest request is cut by it.
        let yaml = format!(
            "
server:
  public_url: {PUBLIC_URL}
  timestamp_window: 36500d
  launch_wait: 1s
  header_read_timeout: 1ms
  body_limit: 8192
database_url: sqlite://{db}
docker_hosts:
  - name: unreachable
    endpoint: http://127.0.0.1:1
    public_host: 127.0.0.1
    capacity: 20
pools:
  - name: course
    image: mooc-lti/notebook:test
    max: 5
    courses: [course-1]
  - name: default
    image: mooc-lti/notebook:test
    max: 10
",
            db = dir.path().join("fuzz.db").display()
        );
        let config = Config::from_yaml(&yaml, Path::new("fuzz.yaml")).expect("fuzz config parses");
        config.validate().expect("fuzz config is valid");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let app = runtime.block_on(async {
            let app = App::open(config, "fuzz").await.expect("open app");
            app.store
                .add_consumer(KEY, &Secret::new(SECRET), Some("fuzz"), mooc_lti::now())
                .await
                .expect("add consumer");
            Arc::new(app)
        });
        Harness {
            runtime,
            app,
            _dir: dir,
        }
    })
}

/// A launch signed now, for parameters read loosely (`name=value` pieces, undecoded) from `raw`.
fn signed_request(raw: &[u8]) -> Vec<u8> {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let params: Vec<(String, String)> = String::from_utf8_lossy(raw)
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let url = url::Url::parse(&format!("{PUBLIC_URL}/lti/launch")).unwrap();
    let nonce = format!("fuzz-{}", NONCE.fetch_add(1, Ordering::Relaxed));
    let body = lti::sign_launch(&url, KEY, SECRET, &params, mooc_lti::now(), &nonce);
    let mut request = format!(
        "POST /lti/launch HTTP/1.1\r\nHost: lti.fuzz.test\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// The client's side of the connection, as the server sees it.
#[derive(Default)]
struct Wire {
    input: Vec<u8>,
    read: usize,
    /// Set by the client to half-close: reads past the input then see end of stream.
    eof: bool,
    read_waker: Option<Waker>,
    output: Vec<u8>,
}

/// The server's end: reads the input, then waits (or sees end of stream once the client closed);
/// writes are collected.
#[derive(Clone)]
struct ServerIo(Arc<Mutex<Wire>>);

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut wire = self.0.lock().unwrap();
        let rest = &wire.input[wire.read..];
        if !rest.is_empty() {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            wire.read += n;
            Poll::Ready(Ok(()))
        } else if wire.eof {
            Poll::Ready(Ok(()))
        } else {
            wire.read_waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = self.0.lock().unwrap();
        wire.output.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves one connection that sends `request`, and returns what the server wrote.
///
/// The server closes the connection itself when it waits for a request head (the header timeout).
/// When it waits for the rest of a body instead, the client must half-close, but not sooner: hyper
/// drops a response in progress on a half-close, which would hide the answers to complete requests.
/// So the client half-closes once all input is read and the process has done no work besides this
/// loop for [`QUIET`]: the server then waits for bytes that will never come.
fn exchange(h: &Harness, request: Vec<u8>) -> Vec<u8> {
    let wire = Arc::new(Mutex::new(Wire {
        input: request,
        ..Wire::default()
    }));
    let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let served = h.runtime.spawn(server::serve_connection(
        h.app.clone(),
        ServerIo(wire.clone()),
        peer,
    ));
    let started = Instant::now();
    let mut idle_since = None;
    let mut last = cpu_times();
    while !served.is_finished() {
        assert!(
            started.elapsed() < HANG,
            "connection still open after {HANG:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
        let now = cpu_times();
        let others = (now.0 - last.0).saturating_sub(now.1 - last.1);
        last = now;
        let mut w = wire.lock().unwrap();
        if others > BUSY_CPU || w.read < w.input.len() {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= QUIET && !w.eof {
            w.eof = true;
            if let Some(waker) = w.read_waker.take() {
                waker.wake();
            }
        }
    }
    let _ = h
        .runtime
        .block_on(served)
        .expect("connection task panicked");
    std::mem::take(&mut wire.lock().unwrap().output)
}

/// CPU time used so far by the whole process and by the calling thread (std has no API for these).
fn cpu_times() -> (Duration, Duration) {
    fn clock(id: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes only to the timespec it is given.
        unsafe { libc::clock_gettime(id, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
    (
        clock(libc::CLOCK_PROCESS_CPUTIME_ID),
        clock(libc::CLOCK_THREAD_CPUTIME_ID),
    )
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let request = match data.strip_prefix(b"SIGNED\n") {
        Some(raw) => signed_request(raw),
        None => data.to_vec(),
    };
    let response = exchange(h, request.clone());
    if std::env::var_os("FUZZ_PRINT").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&response));
    }
    for line in response.split(|&b| b == b'\n') {
        let Some(status) = line
            .strip_prefix(b"HTTP/1.1 ")
            .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        else {
            continue;
        };
        let code = status.get(..3).unwrap_or_default();
        assert!(
            !code.starts_with(b"5") || code == b"503",
            "status {} for request {:?}:\n{}",
            String::from_utf8_lossy(code),
            String::from_utf8_lossy(&request),
            String::from_utf8_lossy(&response)
        );
    }
});
