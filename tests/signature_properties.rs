//! Properties of launch signing and verification through the public API: whatever parameters an LMS
//! sends (unicode, reserved characters, duplicates, empty values) and whatever query the launch URL
//! carries, our signer and our verifier agree; and a signed body changed in any single byte verifies
//! exactly when the decoded parameters are unchanged (a hex digit's case in an escape, say).
//!
//! `PROPTEST_CASES` raises the case count for a longer run.

use mooc_lti::lti::{self, LtiError, SignedRequest};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

const WINDOW_SECS: i64 = 300;

/// Text that exercises the encoder: reserved characters, `%` with and without hex after it, spaces,
/// `+`, controls and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_]{0,8}",
        3 => "[&=+%/?#;:, a-zA-Z0-9~._\\-]{0,12}",
        2 => "(%[0-9a-fA-F]{2}|[%+ a])*",
        2 => "\\PC{0,10}",
        1 => prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
    ]
}

/// A parameter name an LMS may send: any text, often a common name (so duplicates are frequent), never
/// `oauth_*` (those are the signer's).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["a", "user_id", "roles", "", "a b", "é"]).prop_map(String::from),
        3 => text(),
    ]
    .prop_map(|n| {
        if n.starts_with("oauth_") {
            format!("x{n}")
        } else {
            n
        }
    })
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((name(), text()), 0..8)
}

/// A launch URL, with no query, a form-encoded query, or raw text the URL parser normalises (which
/// may not be valid form data).
fn launch_url() -> impl Strategy<Value = url::Url> {
    let query = prop_oneof![
        Just(None),
        params().prop_map(|p| Some(lti::form_encode(&p))),
        // `+` for spaces, as an HTML form would write them.
        params().prop_map(|p| Some(lti::form_encode(&p).replace("%20", "+"))),
        text().prop_map(Some),
    ];
    (
        prop::sample::select(vec![
            "https://lti.example.edu/lti/launch",
            "HTTP://LTI.Example.EDU:80/mooc/lti/launch",
            "http://127.0.0.1:8080/lti/launch",
        ]),
        query,
    )
        .prop_map(|(base, query)| {
            let mut url = url::Url::parse(base).unwrap();
            if let Some(q) = query {
                url.set_query(Some(&q));
            }
            url
        })
}

/// Everything needed to sign one launch.
#[derive(Debug, Clone)]
struct Launch {
    url: url::Url,
    key: String,
    secret: String,
    params: Vec<(String, String)>,
    timestamp: i64,
    nonce: String,
}

fn launch() -> impl Strategy<Value = Launch> {
    launch_with(launch_url().boxed())
}

/// A launch whose URL query is valid form data, as every real launch URL's is.
fn well_formed_launch() -> impl Strategy<Value = Launch> {
    launch_with(
        launch_url()
            .prop_filter("query is form data", query_is_well_formed)
            .boxed(),
    )
}

fn launch_with(url: BoxedStrategy<url::Url>) -> impl Strategy<Value = Launch> {
    (
        url,
        "\\PC{1,12}",
        text(),
        params(),
        any::<i64>(),
        "[!-~]{1,16}|\\PC{1,8}",
    )
        .prop_map(|(url, key, secret, params, timestamp, nonce)| Launch {
            url,
            key,
            secret,
            params,
            timestamp,
            nonce,
        })
}

fn sign(l: &Launch) -> String {
    lti::sign_launch(&l.url, &l.key, &l.secret, &l.params, l.timestamp, &l.nonce)
}

/// What the server does with a launch: parse, check the OAuth fields, verify the signature.
fn verify(l: &Launch, body: &[u8]) -> Result<SignedRequest, LtiError> {
    let req = SignedRequest::from_parts(l.url.query(), body, None)?;
    req.check_oauth_fields(l.timestamp, WINDOW_SECS)?;
    req.verify_signature(&lti::base_string_uri(&l.url), &l.secret)?;
    Ok(req)
}

/// The decoded parameters of query and body as a multiset (sorted), which is all the signature covers.
fn decoded(l: &Launch, body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut all = SignedRequest::from_parts(l.url.query(), body, None)
        .ok()?
        .params
        .0;
    all.sort();
    Some(all)
}

fn query_is_well_formed(url: &url::Url) -> bool {
    url.query()
        .is_none_or(|q| lti::parse_form(q.as_bytes()).is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn signed_launches_verify(l in launch()) {
        let body = sign(&l);
        let result = verify(&l, body.as_bytes());
        if !query_is_well_formed(&l.url) {
            // The server refuses a launch URL whose own query is not valid form data, whatever the
            // signature says.
            prop_assert!(matches!(result, Err(LtiError::Malformed(_))), "{result:?}");
            return Ok(());
        }
        let req = result.map_err(|e| TestCaseError::fail(format!("{e} for body {body:?}")))?;
        // The verifier sees exactly the caller's parameters, plus the query and the oauth_* ones.
        let fields = req.check_oauth_fields(l.timestamp, WINDOW_SECS).unwrap();
        prop_assert_eq!(&fields.consumer_key, &l.key);
        prop_assert_eq!(&fields.nonce, &l.nonce);
        let theirs: Vec<_> = req
            .params
            .0
            .iter()
            .filter(|(k, _)| !k.starts_with("oauth_"))
            .cloned()
            .collect();
        let mut ours = match l.url.query() {
            Some(q) => lti::parse_form(q.as_bytes()).unwrap(),
            None => Vec::new(),
        };
        ours.extend(l.params.iter().cloned());
        prop_assert_eq!(theirs, ours);
    }

    #[test]
    fn signature_does_not_verify_with_another_secret_or_url(
        l in well_formed_launch(),
        other in text(),
    ) {
        prop_assume!(other != l.secret);
        let body = sign(&l);
        let req = SignedRequest::from_parts(l.url.query(), body.as_bytes(), None).unwrap();
        prop_assert_eq!(
            req.verify_signature(&lti::base_string_uri(&l.url), &other),
            Err(LtiError::Signature)
        );
        prop_assert_eq!(
            req.verify_signature("https://evil.example.com/lti/launch", &l.secret),
            Err(LtiError::Signature)
        );
    }

    /// Any single-byte change is accepted exactly when the decoded parameters are the same multiset:
    /// the base string sorts the encoded pairs, so it is a one-to-one function of that multiset, and
    /// `oauth_signature` decodes canonically (standard base64 with its padding and zero trailing bits).
    #[test]
    fn single_byte_change_verifies_only_when_decoded_parameters_are_unchanged(
        l in well_formed_launch(),
        at in any::<Index>(),
        delta in 1u8..=255,
    ) {
        let body = sign(&l).into_bytes();
        let original = decoded(&l, &body).unwrap();
        let mut changed = body.clone();
        let i = at.index(changed.len());
        changed[i] ^= delta;
        let unchanged = decoded(&l, &changed).as_ref() == Some(&original);
        let result = verify(&l, &changed);
        prop_assert_eq!(
            result.is_ok(),
            unchanged,
            "byte {} {:?} -> {:?}: {:?}",
            i,
            body[i] as char,
            changed[i] as char,
            result.err()
        );
    }

    /// The one single-byte change that keeps every parameter: the case of a hex digit in an escape.
    #[test]
    fn hex_digit_case_in_an_escape_does_not_matter(
        l in well_formed_launch(),
        which in any::<Index>(),
    ) {
        let body = sign(&l).into_bytes();
        let letters: Vec<usize> = (0..body.len())
            .filter(|&i| {
                body[i].is_ascii_hexdigit()
                    && body[i].is_ascii_alphabetic()
                    && (body.get(i.wrapping_sub(1)) == Some(&b'%')
                        || body.get(i.wrapping_sub(2)) == Some(&b'%'))
            })
            .collect();
        // Never empty: a 20-byte HMAC-SHA1 in base64 ends in one `=`, sent as `%3D`.
        prop_assert!(!letters.is_empty(), "no hex letter in {:?}", String::from_utf8_lossy(&body));
        let mut changed = body.clone();
        changed[letters[which.index(letters.len())]] ^= 0x20;
        prop_assert!(verify(&l, &changed).is_ok());
    }
}
