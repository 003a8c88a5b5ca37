//! Form bodies and `Authorization: OAuth` headers from anyone on the internet: parsing never panics,
//! and whatever parses survives our own encoder unchanged (so signing what we parsed is faithful).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mooc_lti::lti;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = lti::parse_form(data) {
        let again =
            lti::parse_form(lti::form_encode(&pairs).as_bytes()).expect("our own encoding parses");
        assert_eq!(
            again, pairs,
            "form_encode then parse_form changed the parameters"
        );
    }
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = lti::parse_authorization(header);
        let _ = lti::SignedRequest::from_parts(Some(header), data, Some(header));
    }
});
