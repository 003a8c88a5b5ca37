//! `pool.yaml` as an operator might mistype it: loading and validation never panic, and a config that
//! validates yields the URLs the server derives from it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mooc_lti::config::Config;
use mooc_lti::lti;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_yaml(text, Path::new("pool.yaml")) else {
        return;
    };
    if config.validate().is_ok() {
        let launch_url = config.server.public_url.launch_url();
        let _ = lti::base_string_uri(&launch_url);
        let _ = config.pool_for_course(Some("course"));
        let _ = config.database_url.redacted();
    }
});
