//! Talking to a notebook's Jupyter server over its published port: readiness (`GET {base_url}api`,
//! no token needed) and activity (`GET {base_url}api/status` with the token, which reads
//! `last_activity` without resetting it).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::http::{HttpClient, HttpError};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum JupyterError {
    #[error("jupyter at {url} did not answer within {waited:?}")]
    NotReady { url: String, waited: Duration },
    #[error("jupyter status at {url}: {message}")]
    Status { url: String, message: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Waits until `GET {base}api` answers 200, polling quickly at first (a notebook starts in about a
/// second) and backing off to 250 ms.
pub async fn wait_ready(
    http: &HttpClient,
    base: &str,
    timeout: Duration,
) -> Result<(), JupyterError> {
    let url = format!("{base}api");
    let started = Instant::now();
    let mut delay = Duration::from_millis(25);
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(JupyterError::NotReady {
                url,
                waited: started.elapsed(),
            });
        }
        if let Ok(resp) = http.get(&url, &[], left.min(Duration::from_secs(2))).await
            && resp.status.is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    last_activity: Option<String>,
}

/// The notebook's `last_activity` as UTC seconds.
pub async fn last_activity(
    http: &HttpClient,
    base: &str,
    token: &Secret,
) -> Result<Option<i64>, JupyterError> {
    let url = format!("{base}api/status");
    let auth = format!("token {}", token.expose());
    let resp = http
        .get(
            &url,
            &[("authorization", auth.as_str())],
            Duration::from_secs(5),
        )
        .await?;
    if !resp.status.is_success() {
        return Err(JupyterError::Status {
            url,
            message: format!("HTTP {}", resp.status),
        });
    }
    let status: Status = serde_json::from_slice(&resp.body).map_err(|e| JupyterError::Status {
        url: url.clone(),
        message: e.to_string(),
    })?;
    Ok(status.last_activity.and_then(|t| parse_rfc3339(&t)))
}

/// Parses Jupyter's timestamps (`2026-12-03T17:01:56.122521Z`, or with `+00:00`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim().replace("+00:00", "Z");
    humantime::parse_rfc3339_weak(&s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jupyter_timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00.5Z"), Some(60));
        assert_eq!(parse_rfc3339("1970-01-01T00:01:00+00:00"), Some(60));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
