//! `noop-server`: the HTTP ceiling of this machine and harness. A hyper 1 server set up like
//! `mooc-lti`'s (same HTTP/1 builder settings, multi-threaded runtime, TCP_NODELAY) that reads the
//! whole request body and answers `302` with a notebook-like `Location`, doing nothing else.
//!
//! Prints `listening on ADDR` on stdout once bound; runs until killed.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "noop-server")]
struct Args {
    /// Address to bind; port 0 picks a free one
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

/// The same shape as a real redirect: `http://127.0.0.1:PORT/user/NAME/?token=48 hex`.
const LOCATION: &str = "http://127.0.0.1:32768/user/mooc-default-0123456789/?token=0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = Limited::new(req.into_body(), 64 * 1024).collect().await;
    let mut resp = Response::new(Full::new(Bytes::new()));
    if body.is_ok() {
        *resp.status_mut() = StatusCode::FOUND;
        resp.headers_mut()
            .insert(header::LOCATION, header::HeaderValue::from_static(LOCATION));
    } else {
        *resp.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(resp)
}
