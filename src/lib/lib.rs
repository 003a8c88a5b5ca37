//! mooc-lti-jupyter: LTI 1.1 launches from learning platforms into per-learner Jupyter notebook
//! containers. The library holds everything; the binaries `mooc-lti` (launch server) and `moocctl`
//! (admin CLI) are thin shells over it.
//!
//! Reading order: [`lti`] (verification), [`launch`] (the hot path), [`pool`] (containers),
//! [`store`] (database), [`docker`] (engines), [`server`] (HTTP).

pub mod app;
pub mod cli;
pub mod config;
pub mod docker;
pub mod http;
pub mod jupyter;
pub mod launch;
pub mod lti;
pub mod maintenance;
pub mod pages;
pub mod pool;
pub mod reconcile;
pub mod secret;
pub mod server;
pub mod store;

/// Current UTC time in seconds since the Unix epoch, the unit of every stored time.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
