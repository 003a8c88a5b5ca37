//! The command line of `mooc-lti`, here rather than in the binary so that `moocctl generate man`
//! renders its man page from the same definition as its `--help`.

use std::path::PathBuf;

use clap::Parser;

/// Serves LTI 1.1 launches: verifies each signed launch and redirects the learner to their own
/// Jupyter notebook container.
///
/// Routes: POST /lti/launch (the LTI launch URL), GET /lti/wait/TICKET (the "starting your
/// notebook" page's refresh), GET /lti/config.xml (IMS tool configuration for LMSs), GET /healthz
/// (200 when the database answers). Stops on SIGTERM or SIGINT, letting launches
/// in flight finish for server.shutdown_grace. Logs go to stderr; RUST_LOG sets the level
/// (default info).
#[derive(Debug, Parser)]
#[command(name = "mooc-lti", version, max_term_width = 100)]
pub struct ServerArgs {
    /// Configuration file [default: $MOOC_CONFIG, else ./pool.yaml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}
