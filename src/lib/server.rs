//! The HTTP server of `mooc-lti` (hyper 1, no framework): `POST /lti/launch`, `GET /lti/config.xml`
//! and `GET /healthz`, nothing else. Every protection is visible here: a header-read timeout, a
//! header size cap (431), a body limit (413) and graceful shutdown with a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::launch::{self, LaunchError, LaunchRequest};
use crate::lti::LtiError;
use crate::pages;

/// Largest request head (request line and headers) read; bigger ones get 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

type Body = Full<Bytes>;

/// Serves until `shutdown` completes, then lets launches in flight finish for up to
/// `server.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.server.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    let grace = app.config.server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still open after {grace:?}, closing them");
    }
    Ok(())
}

/// The HTTP/1 settings every connection gets: header-read timeout and head size cap.
fn http1_builder(app: &App) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.server.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .keep_alive(true);
    builder
}

/// Serves one connection over any byte stream, with the same settings and routes as [`serve`]. For
/// fuzzing and tests that feed raw request bytes.
pub async fn serve_connection<I>(app: Arc<App>, io: I, peer: SocketAddr) -> Result<(), hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let builder = http1_builder(&app);
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
    });
    builder.serve_connection(TokioIo::new(io), service).await
}

/// Routes one request. Paths are matched after the `public_url` path prefix, when a proxy forwards
/// them with it.
pub async fn handle(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let prefix = app.config.server.public_url.path_prefix();
    let path = req.uri().path();
    let path = if !prefix.is_empty() {
        path.strip_prefix(prefix)
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path)
    } else {
        path
    };
    match path {
        "/lti/launch" => match *req.method() {
            Method::POST => launch(app, req, peer).await,
            _ => method_not_allowed("POST"),
        },
        "/lti/config.xml" => match *req.method() {
            Method::GET | Method::HEAD => xml(pages::config_xml(
                &app.config.server.title,
                app.config.server.public_url.launch_url().as_str(),
            )),
            _ => method_not_allowed("GET, HEAD"),
        },
        p if p.starts_with("/lti/wait/") => match *req.method() {
            Method::GET | Method::HEAD => wait(app, &p["/lti/wait/".len()..]).await,
            _ => method_not_allowed("GET, HEAD"),
        },
        "/healthz" => match *req.method() {
            Method::GET | Method::HEAD => match app.store.ping().await {
                Ok(()) => text(StatusCode::OK, "ok\n"),
                Err(e) => {
                    tracing::warn!("health check: {e}");
                    text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
                }
            },
            _ => method_not_allowed("GET, HEAD"),
        },
        _ => html(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing here. Open your notebook from your course page.",
        ),
    }
}

async fn launch(app: &Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let limit = app.config.server.body_limit;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    // The head's read timeout does not cover the body: a client that declares a body and stalls
    // would hold its connection for ever.
    let read = tokio::time::timeout(
        app.config.server.body_read_timeout,
        Limited::new(body, limit).collect(),
    );
    let body = match read.await {
        Err(_) => return timed_out(),
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(_)) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The launch request could not be read.",
            );
        }
    };
    let request = LaunchRequest {
        query: parts.uri.query(),
        body: &body,
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        remote_addr: Some(peer.ip()),
    };
    let result = launch::launch(app, request).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(redirect) => {
            tracing::info!(
                outcome = redirect.outcome,
                container = redirect.container_id,
                elapsed_ms,
                "launch"
            );
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::FOUND;
            match HeaderValue::from_str(&redirect.url) {
                Ok(v) => {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                Err(_) => {
                    return html(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "Your notebook address could not be formed. Please tell the course staff.",
                    );
                }
            }
            no_store(&mut resp);
            resp
        }
        Err(LaunchError::StillStarting {
            ticket: Some(ticket),
            ..
        }) => {
            tracing::info!(outcome = "starting", elapsed_ms, "launch");
            starting_page(app, &ticket)
        }
        Err(e) => {
            let (status, title, message) = error_page(&e);
            // The error's text is safe to log: it never carries secrets, and identities only after
            // verification (as internal row ids).
            match status {
                s if s.is_server_error() => {
                    tracing::warn!(status = s.as_u16(), elapsed_ms, "launch failed: {e}")
                }
                s => tracing::info!(status = s.as_u16(), elapsed_ms, "launch refused: {e}"),
            }
            let mut resp = html(status, title, message);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let retry = if matches!(e, LaunchError::StillStarting { .. }) {
                    "5"
                } else {
                    "30"
                };
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(retry));
            }
            resp
        }
    }
}

/// "Starting your notebook": a 200 page that refreshes to its wait ticket every few seconds.
fn starting_page(app: &App, ticket: &str) -> Response<Body> {
    let url = format!(
        "{}/lti/wait/{ticket}",
        app.config.server.public_url.path_prefix()
    );
    let mut resp = Response::new(Full::new(Bytes::from(pages::refreshing_page(
        "Starting your notebook",
        "Your notebook is starting. This page opens it as soon as it is ready.",
        &url,
        WAIT_REFRESH_SECS,
    ))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut resp);
    resp
}

/// Seconds between refreshes of a "starting your notebook" page.
const WAIT_REFRESH_SECS: u32 = 3;

async fn wait(app: &Arc<App>, ticket: &str) -> Response<Body> {
    match launch::wait(app, ticket).await {
        Ok(launch::Waited::Ready(url)) => match HeaderValue::from_str(&url) {
            Ok(v) => {
                let mut resp = Response::new(Full::new(Bytes::new()));
                *resp.status_mut() = StatusCode::FOUND;
                resp.headers_mut().insert(header::LOCATION, v);
                no_store(&mut resp);
                resp
            }
            Err(_) => html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Your notebook address could not be formed. Please tell the course staff.",
            ),
        },
        Ok(launch::Waited::Starting) => starting_page(app, ticket),
        Ok(launch::Waited::Expired) => html(
            StatusCode::NOT_FOUND,
            "Link expired",
            "This page has expired. Please open the notebook again from your course page.",
        ),
        Ok(launch::Waited::Failed) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your notebook could not start",
            "Please open the notebook again from your course page. If this keeps happening, tell the course staff.",
        ),
        Err(e) => {
            tracing::warn!("wait page: {e}");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Notebooks are temporarily unavailable. Please try again in a few minutes.",
            )
        }
    }
}

/// Status, title and text of the page a learner sees for a failed launch.
fn error_page(e: &LaunchError) -> (StatusCode, &'static str, &'static str) {
    const RELAUNCH: &str = "Please go back to your course and open the notebook again. \
                            If this keeps happening, tell the course staff.";
    match e {
        LaunchError::Lti(LtiError::Replay) => (
            StatusCode::UNAUTHORIZED,
            "Launch already used",
            "This launch link was already used. Please open the notebook again from your course page.",
        ),
        LaunchError::Lti(LtiError::Timestamp(_)) => (
            StatusCode::UNAUTHORIZED,
            "Launch expired",
            "This launch is too old or its clock is wrong. Please open the notebook again from your course page.",
        ),
        LaunchError::Lti(l) if l.is_unauthorized() => (
            StatusCode::UNAUTHORIZED,
            "Launch not accepted",
            "The launch could not be verified. Please open the notebook again from your course page; \
             if this keeps happening, tell the course staff.",
        ),
        LaunchError::Lti(_) => (
            StatusCode::BAD_REQUEST,
            "Incomplete launch",
            "The launch from your course was missing information this tool needs. Please tell the course staff.",
        ),
        LaunchError::NoPool => (
            StatusCode::NOT_FOUND,
            "No notebooks for this course",
            "This course is not set up for notebooks yet. Please tell the course staff.",
        ),
        LaunchError::NoCapacity(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "All notebooks are busy",
            "Every notebook server is in use right now. Please try again in a few minutes.",
        ),
        LaunchError::StillStarting { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Starting your notebook",
            "Your notebook is starting. Please open it again from your course page in a few seconds.",
        ),
        LaunchError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "Notebooks are temporarily unavailable. Please try again in a few minutes.",
        ),
        LaunchError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            RELAUNCH,
        ),
    }
}

fn html(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(pages::page(title, message))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut resp);
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    no_store(&mut resp);
    resp
}

fn xml(body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    resp
}

fn too_large() -> Response<Body> {
    let mut resp = html(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Launch too large",
        "The launch request was larger than this tool accepts. Please tell the course staff.",
    );
    // The unread rest of the body would otherwise be parsed as the next request.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn timed_out() -> Response<Body> {
    let mut resp = html(
        StatusCode::REQUEST_TIMEOUT,
        "Launch too slow",
        "The launch request took too long to arrive. Please open the notebook again from your course page.",
    );
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = html(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "Open your notebook from your course page.",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn no_store(resp: &mut Response<Body>) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}
