//! OAuth 1.0a verification of launches.
//!
//! The input is text in three parts separated by the first two newlines: the launch URL's query
//! (empty for none), the `Authorization` header (empty for none) and the form body, so the seeds are
//! readable requests. Two things are checked:
//!
//! 1. Any request: parsing, the OAuth field checks and signature verification never panic.
//! 2. The parts, read loosely as parameters, signed by `sign_launch` then parsed and verified, always
//!    verify (with the query on the launch URL); and one byte of that signed body changed verifies
//!    exactly when the decoded parameters are the same multiset. That is the precise condition: the
//!    base string sorts the encoded pairs, so it is a one-to-one function of the multiset, and the
//!    signature is decoded canonically; a change like `%2F` to `%2f` keeps every parameter and must
//!    still verify, any other change must not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mooc_lti::lti::{self, LtiError, SignedRequest};

const NOW: i64 = 1_700_000_000;
const WINDOW_SECS: i64 = 300;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let query = parts.next().unwrap_or_default();
    let authorization = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let query = std::str::from_utf8(query).ok().filter(|q| !q.is_empty());
    let authorization = std::str::from_utf8(authorization)
        .ok()
        .filter(|a| !a.is_empty());
    let secret = authorization.unwrap_or("secret");

    if let Ok(req) = SignedRequest::from_parts(query, body, authorization) {
        let _ = req.check_oauth_fields(NOW, WINDOW_SECS);
        let _ = req.verify_signature("https://lti.example.edu/lti/launch", secret);
        let _ = lti::launch_from_params(&req.params, "key");
    }

    round_trip(query, body, secret, data);
});

fn round_trip(query: Option<&str>, body: &[u8], secret: &str, data: &[u8]) {
    let mut url = url::Url::parse("https://LTI.example.edu/lti/launch").unwrap();
    url.set_query(query);
    // The launch URL's own query must be form data, or the server refuses every launch to it.
    let Ok(query_params) = url
        .query()
        .map_or(Ok(Vec::new()), |q| lti::parse_form(q.as_bytes()))
    else {
        assert!(matches!(
            SignedRequest::from_parts(url.query(), b"", None),
            Err(LtiError::Malformed(_))
        ));
        return;
    };
    if query_params.iter().any(|(k, _)| k.starts_with("oauth_")) {
        return;
    }
    // Raw `name=value` pieces, not decoded: `%`, `+` and any unicode reach the signer as they are.
    let params: Vec<(String, String)> = String::from_utf8_lossy(body)
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .filter(|(k, _)| !k.starts_with("oauth_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let nonce = format!("n{}", fnv(data));
    let signed = lti::sign_launch(&url, "key", secret, &params, NOW, &nonce);
    let base_uri = lti::base_string_uri(&url);
    let verify = |body: &[u8]| -> Result<Vec<(String, String)>, LtiError> {
        let req = SignedRequest::from_parts(url.query(), body, None)?;
        req.check_oauth_fields(NOW, WINDOW_SECS)?;
        req.verify_signature(&base_uri, secret)?;
        Ok(req.params.0)
    };
    let decoded = |body: &[u8]| {
        SignedRequest::from_parts(url.query(), body, None)
            .ok()
            .map(|r| {
                let mut p = r.params.0;
                p.sort();
                p
            })
    };

    let got = verify(signed.as_bytes())
        .unwrap_or_else(|e| panic!("signed launch does not verify ({e}): {signed:?}"));
    let mut expected = query_params;
    expected.extend(params);
    let got: Vec<_> = got
        .into_iter()
        .filter(|(k, _)| !k.starts_with("oauth_"))
        .collect();
    assert_eq!(
        got, expected,
        "verifier saw other parameters than were signed"
    );

    let original = decoded(signed.as_bytes()).unwrap();
    let h = fnv(data);
    let mut changed = signed.clone().into_bytes();
    let at = (h % changed.len() as u64) as usize;
    changed[at] ^= 1 + ((h >> 32) % 255) as u8;
    let unchanged = decoded(&changed).as_ref() == Some(&original);
    let result = verify(&changed);
    assert_eq!(
        result.is_ok(),
        unchanged,
        "byte {at} of {signed:?} changed to {:?}: {result:?}",
        changed[at] as char
    );
}

/// FNV-1a, to pick the byte to change and the nonce from the input deterministically.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}
