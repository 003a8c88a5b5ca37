//! `loadgen`: replays pre-signed LTI 1.1 launches over a fixed number of HTTP/1.1 keep-alive
//! connections and prints one JSON object: rate, latency percentiles and status counts.
//!
//! Every request is signed before the clock starts (with `mooc_lti::lti::sign_launch`, the way an
//! LMS signs), each with its own nonce, so the measured part is only HTTP and the server. Request `i`
//! launches user `{user_prefix}{i % users}`; the first `--warmup` requests are sent but not measured.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// Where to send the launches: http://HOST:PORT/PATH
    #[arg(long)]
    target: String,
    /// The launch URL the signatures are made for (the server's `{public_url}/lti/launch`)
    #[arg(long)]
    sign_url: String,
    /// Consumer key
    #[arg(long)]
    key: String,
    /// Consumer secret
    #[arg(long)]
    secret: String,
    /// Distinct learners the requests cycle through
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Learner ids are this prefix and a number
    #[arg(long, default_value = "bench-user-")]
    user_prefix: String,
    /// Measured requests
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Unmeasured requests sent first over the same connections
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Keep-alive connections, each with one request in flight
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Per-request timeout
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// A name for this run, copied into the JSON
    #[arg(long, default_value = "")]
    name: String,
    /// Replayed launches mixed evenly into the measured ones: each resends the body of a warm-up
    /// launch (already answered, so its nonce is spent). The server must refuse every one with
    /// 401; they are counted apart (`replays`, `replays_refused`) and not in the latencies.
    #[arg(long, default_value_t = 0)]
    replays: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args))?;
    println!("{report}");
    Ok(())
}

/// Latencies and statuses seen by one connection.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// Statuses of the warm-up requests and of the replays, which are not measured.
    warmup_statuses: BTreeMap<u16, usize>,
    replay_statuses: BTreeMap<u16, usize>,
    statuses: BTreeMap<u16, usize>,
    locations: usize,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (mine, theirs) in [
            (&mut self.statuses, other.statuses),
            (&mut self.warmup_statuses, other.warmup_statuses),
            (&mut self.replay_statuses, other.replay_statuses),
        ] {
            for (s, n) in theirs {
                *mine.entry(s).or_default() += n;
            }
        }
        self.locations += other.locations;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<serde_json::Value> {
    let target = url::Url::parse(&args.target).context("--target")?;
    let sign_url = url::Url::parse(&args.sign_url).context("--sign-url")?;
    let addr: SocketAddr = tokio::net::lookup_host((
        target.host_str().unwrap_or("127.0.0.1"),
        target.port_or_known_default().unwrap_or(80),
    ))
    .await?
    .next()
    .context("target address")?;
    let host_header = format!("{}:{}", addr.ip(), addr.port());
    let path = match target.query() {
        Some(q) => format!("{}?{q}", target.path()),
        None => target.path().to_owned(),
    };
    if args.users == 0 || args.connections == 0 {
        bail!("--users and --connections must be at least 1");
    }
    if args.replays > 0 && (args.warmup == 0 || args.requests == 0) {
        bail!("--replays resend warm-up launches: it needs --warmup and --requests of at least 1");
    }

    let signing = Instant::now();
    let total = args.warmup + args.requests;
    let run_id = mooc_lti::secret::random_hex(4);
    let now = mooc_lti::now();
    let bodies: Vec<Bytes> = (0..total)
        .map(|i| {
            let user = format!("{}{:06}", args.user_prefix, i % args.users);
            let nonce = format!("{run_id}-{i}");
            Bytes::from(mooc_lti::lti::sign_launch(
                &sign_url,
                &args.key,
                &args.secret,
                &launch_params(&user),
                now,
                &nonce,
            ))
        })
        .collect();
    let signing_secs = signing.elapsed().as_secs_f64();
    let bodies = Arc::new(bodies);

    // What each slot sends: the warm-up launches, then the measured ones with a replay of a
    // warm-up launch after every `every` of them.
    let mut schedule: Vec<Slot> = (0..args.warmup).map(Slot::Warmup).collect();
    let every = args
        .requests
        .checked_div(args.replays)
        .map_or(usize::MAX, |n| n.max(1));
    let mut replayed = 0;
    for (n, i) in (args.warmup..total).enumerate() {
        schedule.push(Slot::Measured(i));
        if replayed < args.replays && (n + 1) % every == 0 {
            schedule.push(Slot::Replay(replayed % args.warmup));
            replayed += 1;
        }
    }
    while replayed < args.replays {
        schedule.push(Slot::Replay(replayed % args.warmup));
        replayed += 1;
    }

    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(connect(addr).await?);
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let job = Arc::new(Job {
        addr,
        host_header,
        path,
        bodies,
        schedule,
        timeout,
    });

    let (senders, warmup) = phase(&job, senders, 0, args.warmup).await;
    let started = Instant::now();
    let (_, mut tally) = phase(&job, senders, args.warmup, job.schedule.len()).await;
    tally.warmup_statuses = warmup.warmup_statuses;
    let elapsed = started.elapsed().as_secs_f64();

    tally.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if tally.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * tally.latencies_us.len() as f64).ceil() as usize;
        f64::from(tally.latencies_us[rank.clamp(1, tally.latencies_us.len()) - 1]) / 1000.0
    };
    let answered = tally.latencies_us.len();
    let statuses: serde_json::Map<String, serde_json::Value> = tally
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), serde_json::json!(n)))
        .collect();
    let mean_ms = if answered > 0 {
        tally
            .latencies_us
            .iter()
            .map(|&u| f64::from(u))
            .sum::<f64>()
            / answered as f64
            / 1000.0
    } else {
        0.0
    };
    Ok(serde_json::json!({
        "name": args.name,
        "target": args.target,
        "requests": args.requests,
        "warmup": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "users": args.users,
        "signing_secs": round3(signing_secs),
        "elapsed_secs": round3(elapsed),
        "answered": answered,
        "rate": round3(answered as f64 / elapsed),
        "mean_ms": round3(mean_ms),
        "p50_ms": round3(pct(50.0)),
        "p90_ms": round3(pct(90.0)),
        "p99_ms": round3(pct(99.0)),
        "max_ms": round3(pct(100.0)),
        "statuses": statuses,
        "count_302": tally.statuses.get(&302).copied().unwrap_or(0),
        "with_location": tally.locations,
        "warmup_302": tally.warmup_statuses.get(&302).copied().unwrap_or(0),
        "replays": args.replays,
        "replays_refused": tally.replay_statuses.get(&401).copied().unwrap_or(0),
        "replay_statuses": tally
            .replay_statuses
            .iter()
            .map(|(s, n)| (s.to_string(), serde_json::json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "errors": tally.errors,
        "first_error": tally.first_error,
        "loadgen_cpu_secs": own_cpu_secs(),
    }))
}

/// CPU time this process used so far (user + system), from /proc (Linux); the run script subtracts
/// it and the server's from the machine's to see whether anything else was busy during the run.
fn own_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on (getconf CLK_TCK).
    Some(round3(ticks / 100.0))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What every connection task shares.
struct Job {
    addr: SocketAddr,
    host_header: String,
    path: String,
    bodies: Arc<Vec<Bytes>>,
    schedule: Vec<Slot>,
    timeout: Duration,
}

/// One request of a run: the index of the body it sends, and how it is counted.
#[derive(Clone, Copy)]
enum Slot {
    Warmup(usize),
    Measured(usize),
    Replay(usize),
}

/// The parameters Coursera sends with privacy sharing on (as in tests/common).
fn launch_params(user: &str) -> Vec<(String, String)> {
    [
        ("lti_message_type", "basic-lti-launch-request"),
        ("lti_version", "LTI-1p0"),
        ("resource_link_id", "lab-1"),
        ("context_id", "ondemand~bench-course"),
        ("user_id", user),
        ("roles", "Learner"),
        ("lis_person_name_full", "Bench Learner"),
        ("lis_person_contact_email_primary", "learner@example.edu"),
        (
            "launch_presentation_return_url",
            "https://www.coursera.org/learn/bench",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends the schedule's slots `from..to` over the connections, each taking the next when free.
async fn phase(
    job: &Arc<Job>,
    senders: Vec<SendRequest<Full<Bytes>>>,
    from: usize,
    to: usize,
) -> (Vec<SendRequest<Full<Bytes>>>, Tally) {
    let next = Arc::new(AtomicUsize::new(from));
    let mut tasks = Vec::with_capacity(senders.len());
    for sender in senders {
        let job = job.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            connection_loop(&job, sender, &next, to).await
        }));
    }
    let mut kept = Vec::new();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok((sender, t)) => {
                kept.extend(sender);
                tally.merge(t);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (kept, tally)
}

async fn connection_loop(
    job: &Job,
    mut sender: SendRequest<Full<Bytes>>,
    next: &AtomicUsize,
    to: usize,
) -> (Option<SendRequest<Full<Bytes>>>, Tally) {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= to {
            return (Some(sender), tally);
        }
        let slot = job.schedule[i];
        let (Slot::Warmup(body) | Slot::Measured(body) | Slot::Replay(body)) = slot;
        let req = Request::builder()
            .method(Method::POST)
            .uri(job.path.as_str())
            .header(header::HOST, job.host_header.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(job.bodies[body].clone()))
            .expect("valid request");
        let sent = Instant::now();
        let result = tokio::time::timeout(job.timeout, async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let location = resp.headers().contains_key(header::LOCATION);
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, location))
        })
        .await;
        let took = sent.elapsed();
        match result {
            Ok(Ok((status, location))) => match slot {
                Slot::Measured(_) => {
                    tally
                        .latencies_us
                        .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    *tally.statuses.entry(status).or_default() += 1;
                    tally.locations += usize::from(location);
                }
                Slot::Warmup(_) => *tally.warmup_statuses.entry(status).or_default() += 1,
                Slot::Replay(_) => *tally.replay_statuses.entry(status).or_default() += 1,
            },
            Ok(Err(e)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| e.to_string());
                // The server closed the connection: open a new one and go on.
                match connect(job.addr).await {
                    Ok(s) => sender = s,
                    Err(_) => return (None, tally),
                }
            }
            Err(_) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| "timeout".into());
                match connect(job.addr).await {
                    Ok(s) => sender = s,
                    Err(_) => return (None, tally),
                }
            }
        }
    }
}
