//! LTI 1.1 launch verification: strict form parsing, the OAuth 1.0a signature base string (RFC 5849
//! section 3.4.1), HMAC-SHA1 signing and verification, and the LTI parameter checks.
//!
//! Everything here is pure: no I/O and no clock. The caller looks up the consumer's secret, passes the
//! current time, and stores the nonce only after [`verify_signature`] succeeded.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// RFC 5849 section 3.6: everything except the unreserved characters `A-Za-z0-9-._~` is encoded.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The only message type and version this tool accepts (LTI 1.1 basic launch).
pub const MESSAGE_TYPE: &str = "basic-lti-launch-request";
pub const LTI_VERSION: &str = "LTI-1p0";

/// Why a launch was refused. Each kind maps to one HTTP status in the server.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LtiError {
    /// The body or a parameter is not well-formed (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// A required OAuth parameter is missing or repeated (400: the request cannot be a valid launch).
    #[error("OAuth parameter {0} is missing or repeated")]
    OAuthParam(&'static str),
    /// A required LTI parameter is missing, empty, repeated or has the wrong value (400).
    #[error("LTI parameter {name}: {problem}")]
    LtiParam { name: &'static str, problem: String },
    /// `oauth_signature_method` is not HMAC-SHA1 (401).
    #[error("unsupported signature method {0:?}")]
    SignatureMethod(String),
    /// `oauth_version` is present and not 1.0 (401).
    #[error("unsupported OAuth version {0:?}")]
    Version(String),
    /// The consumer key is not registered or disabled (401).
    #[error("unknown consumer")]
    UnknownConsumer,
    /// The timestamp is not a number, or outside the window (401).
    #[error("timestamp {0}")]
    Timestamp(&'static str),
    /// The signature does not match (401).
    #[error("signature mismatch")]
    Signature,
    /// The nonce was already used by this consumer within the window (401).
    #[error("nonce already used")]
    Replay,
}

impl LtiError {
    /// True when the launch is refused as unauthenticated (401) rather than malformed (400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            LtiError::SignatureMethod(_)
                | LtiError::Version(_)
                | LtiError::UnknownConsumer
                | LtiError::Timestamp(_)
                | LtiError::Signature
                | LtiError::Replay
        )
    }
}

/// Decoded parameters in arrival order, duplicates and empty values kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Every value sent under `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when it was sent exactly once.
    pub fn single(&self, name: &str) -> Result<Option<&str>, usize> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(2 + values.count()),
        }
    }

    /// The value of `name` when sent exactly once and not empty; `None` otherwise.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.single(name) {
            Ok(Some(v)) if !v.is_empty() => Some(v),
            _ => None,
        }
    }
}

/// Parses `application/x-www-form-urlencoded` strictly: `+` is a space, escapes must be valid and the
/// decoded bytes must be UTF-8. Order, duplicates and empty values are kept; empty segments (`a=1&&b=2`)
/// are skipped, as browsers and LMSs never send them on purpose.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, LtiError> {
    let text =
        std::str::from_utf8(input).map_err(|_| LtiError::Malformed("body is not UTF-8".into()))?;
    let mut out = Vec::new();
    for segment in text.split('&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
        out.push((form_decode(name)?, form_decode(value)?));
    }
    Ok(out)
}

fn form_decode(raw: &str) -> Result<String, LtiError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let valid = i + 2 < bytes.len()
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit();
                if !valid {
                    return Err(LtiError::Malformed("invalid percent escape".into()));
                }
                i += 3;
            }
            b if b.is_ascii_control() => {
                return Err(LtiError::Malformed("control character in form data".into()));
            }
            _ => i += 1,
        }
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| LtiError::Malformed("form value is not UTF-8".into()))
}

/// Parses the parameters of an `Authorization: OAuth ...` header (RFC 5849 section 3.5.1). `realm` is
/// dropped because it is not signed.
pub fn parse_authorization(header: &str) -> Result<Vec<(String, String)>, LtiError> {
    let rest = header.trim_start();
    let Some(rest) = rest
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("oauth "))
        .map(|_| &rest[6..])
    else {
        // Not an OAuth header (e.g. a Basic header added by a proxy): it carries no signed parameters.
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| LtiError::Malformed("Authorization parameter without value".into()))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| LtiError::Malformed("Authorization value not quoted".into()))?;
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| LtiError::Malformed("Authorization value is not UTF-8".into()))
        };
        let name = decode(name.trim())?;
        if name == "realm" {
            continue;
        }
        out.push((name, decode(value)?));
    }
    Ok(out)
}

/// RFC 3986 percent-encoding as OAuth requires it (section 3.6), upper-case hex.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// The base string URI (RFC 5849 section 3.4.1.2): lower-case scheme and host, default port dropped,
/// path kept, query and fragment dropped.
pub fn base_string_uri(url: &url::Url) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(&url.scheme().to_ascii_lowercase());
    out.push_str("://");
    out.push_str(&url.host_str().unwrap_or("").to_ascii_lowercase());
    // `Url::port` is None for the scheme's default port.
    if let Some(port) = url.port() {
        let _ = write!(out, ":{port}");
    }
    out.push_str(url.path());
    out
}

/// The signature base string (RFC 5849 section 3.4.1): `METHOD&enc(uri)&enc(normalized params)`.
/// `params` are all decoded parameters (query, body, Authorization header), `oauth_signature` excluded.
pub fn base_string<'a>(
    method: &str,
    base_uri: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut encoded: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    // Sort by encoded name, then encoded value (section 3.4.1.3.2), not by the raw strings.
    encoded.sort_unstable();
    let mut normalized =
        String::with_capacity(encoded.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            normalized.push('&');
        }
        normalized.push_str(k);
        normalized.push('=');
        normalized.push_str(v);
    }
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        encode(&normalized)
    )
}

/// HMAC-SHA1 over the base string with key `enc(consumer_secret)&enc(token_secret)` (section 3.4.2).
pub fn hmac_sha1(base: &str, consumer_secret: &str, token_secret: &str) -> [u8; 20] {
    let key = format!("{}&{}", encode(consumer_secret), encode(token_secret));
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(base.as_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The base64 `oauth_signature` value for a base string.
pub fn signature(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    BASE64.encode(hmac_sha1(base, consumer_secret, token_secret))
}

/// Everything a launch request carries that the signature covers.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// All parameters: query string, then body, then Authorization-header `oauth_*` parameters.
    pub params: Params,
}

/// The OAuth fields a verified launch carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFields {
    pub consumer_key: String,
    pub nonce: String,
    pub timestamp: i64,
}

impl SignedRequest {
    /// Collects the parameters from the query string, the form body and the Authorization header.
    pub fn from_parts(
        query: Option<&str>,
        body: &[u8],
        authorization: Option<&str>,
    ) -> Result<SignedRequest, LtiError> {
        let mut params = match query {
            Some(q) => parse_form(q.as_bytes())?,
            None => Vec::new(),
        };
        params.extend(parse_form(body)?);
        if let Some(header) = authorization {
            params.extend(parse_authorization(header)?);
        }
        Ok(SignedRequest {
            params: Params(params),
        })
    }

    fn oauth_single(&self, name: &'static str) -> Result<&str, LtiError> {
        match self.params.single(name) {
            Ok(Some(v)) if !v.is_empty() => Ok(v),
            _ => Err(LtiError::OAuthParam(name)),
        }
    }

    /// Checks the OAuth fields that need no secret: presence, method, version and timestamp window.
    /// Returns the consumer key, nonce and timestamp for the secret look-up and the nonce store.
    pub fn check_oauth_fields(&self, now: i64, window_secs: i64) -> Result<OAuthFields, LtiError> {
        let consumer_key = self.oauth_single("oauth_consumer_key")?.to_owned();
        self.oauth_single("oauth_signature")?;
        let nonce = self.oauth_single("oauth_nonce")?.to_owned();
        let method = self.oauth_single("oauth_signature_method")?;
        if method != "HMAC-SHA1" {
            return Err(LtiError::SignatureMethod(method.to_owned()));
        }
        match self.params.single("oauth_version") {
            Ok(None) => {}
            Ok(Some("1.0")) => {}
            Ok(Some(v)) => return Err(LtiError::Version(v.to_owned())),
            Err(_) => return Err(LtiError::OAuthParam("oauth_version")),
        }
        let timestamp: i64 = self
            .oauth_single("oauth_timestamp")?
            .parse()
            .map_err(|_| LtiError::Timestamp("is not a number"))?;
        if timestamp < now.saturating_sub(window_secs) {
            return Err(LtiError::Timestamp("is too old"));
        }
        if timestamp > now.saturating_add(window_secs) {
            return Err(LtiError::Timestamp("is in the future"));
        }
        Ok(OAuthFields {
            consumer_key,
            nonce,
            timestamp,
        })
    }

    /// Verifies `oauth_signature` against the consumer secret, in constant time.
    pub fn verify_signature(&self, base_uri: &str, secret: &str) -> Result<(), LtiError> {
        let sent = self.oauth_single("oauth_signature")?;
        let sent = BASE64.decode(sent).map_err(|_| LtiError::Signature)?;
        let base = base_string(
            "POST",
            base_uri,
            self.params
                .0
                .iter()
                .filter(|(k, _)| k != "oauth_signature")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let expected = hmac_sha1(&base, secret, "");
        if sent.len() == expected.len() && bool::from(sent.as_slice().ct_eq(&expected)) {
            Ok(())
        } else {
            Err(LtiError::Signature)
        }
    }
}

/// The launch parameters this tool uses, taken from a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub consumer_key: String,
    pub user_id: String,
    pub resource_link_id: String,
    pub context_id: Option<String>,
    pub roles: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub return_url: Option<String>,
}

/// Longest identifier we store (Coursera's are 32 hex characters; other LMSs use longer opaque ids).
const MAX_ID_LEN: usize = 255;

/// Checks the LTI 1.1 launch parameters (message type, version, required ids) of a verified request.
pub fn launch_from_params(params: &Params, consumer_key: &str) -> Result<Launch, LtiError> {
    fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, LtiError> {
        match params.single(name) {
            Ok(Some(v)) if !v.trim().is_empty() => Ok(v),
            Ok(_) => Err(LtiError::LtiParam {
                name,
                problem: "is missing or empty".into(),
            }),
            Err(n) => Err(LtiError::LtiParam {
                name,
                problem: format!("was sent {n} times"),
            }),
        }
    }
    fn optional(params: &Params, name: &'static str) -> Result<Option<String>, LtiError> {
        match params.single(name) {
            Ok(v) => Ok(v
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)),
            Err(n) => Err(LtiError::LtiParam {
                name,
                problem: format!("was sent {n} times"),
            }),
        }
    }
    let message_type = required(params, "lti_message_type")?;
    if message_type != MESSAGE_TYPE {
        return Err(LtiError::LtiParam {
            name: "lti_message_type",
            problem: format!("must be {MESSAGE_TYPE}"),
        });
    }
    let version = required(params, "lti_version")?;
    if version != LTI_VERSION {
        return Err(LtiError::LtiParam {
            name: "lti_version",
            problem: format!("must be {LTI_VERSION}"),
        });
    }
    let user_id = required(params, "user_id")?;
    let resource_link_id = required(params, "resource_link_id")?;
    for (name, value) in [("user_id", user_id), ("resource_link_id", resource_link_id)] {
        if value.len() > MAX_ID_LEN {
            return Err(LtiError::LtiParam {
                name: if name == "user_id" {
                    "user_id"
                } else {
                    "resource_link_id"
                },
                problem: format!("is longer than {MAX_ID_LEN} bytes"),
            });
        }
    }
    let name = optional(params, "lis_person_name_full")?.or(
        match (
            optional(params, "lis_person_name_given")?,
            optional(params, "lis_person_name_family")?,
        ) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (g, f) => g.or(f),
        },
    );
    Ok(Launch {
        consumer_key: consumer_key.to_owned(),
        user_id: user_id.to_owned(),
        resource_link_id: resource_link_id.to_owned(),
        context_id: optional(params, "context_id")?,
        roles: optional(params, "roles")?,
        name: name.map(|n| truncate(&n, 200)),
        email: optional(params, "lis_person_contact_email_primary")?.map(|e| truncate(&e, 254)),
        return_url: optional(params, "launch_presentation_return_url")?,
    })
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// Signs a launch as an LMS would: adds the `oauth_*` parameters (keeping any the caller set, such as
/// `oauth_callback`) and returns the form body. Used by `moocctl launch`, the tests and the benchmarks.
pub fn sign_launch(
    launch_url: &url::Url,
    consumer_key: &str,
    secret: &str,
    params: &[(String, String)],
    timestamp: i64,
    nonce: &str,
) -> String {
    let mut all: Vec<(String, String)> = params.to_vec();
    all.push(("oauth_consumer_key".into(), consumer_key.into()));
    all.push(("oauth_nonce".into(), nonce.into()));
    all.push(("oauth_signature_method".into(), "HMAC-SHA1".into()));
    all.push(("oauth_timestamp".into(), timestamp.to_string()));
    all.push(("oauth_version".into(), "1.0".into()));
    let query = match launch_url.query() {
        Some(q) => parse_form(q.as_bytes()).unwrap_or_default(),
        None => Vec::new(),
    };
    let base = base_string(
        "POST",
        &base_string_uri(launch_url),
        query
            .iter()
            .chain(all.iter())
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    all.push(("oauth_signature".into(), signature(&base, secret, "")));
    form_encode(&all)
}

/// Encodes pairs as a form body (`application/x-www-form-urlencoded`, spaces as `%20`).
pub fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5849 section 3.4.1.1: the worked example of a signature base string.
    #[test]
    fn base_string_matches_rfc5849_section_3_4_1_1() {
        let url =
            url::Url::parse("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
        let req = SignedRequest::from_parts(
            url.query(),
            b"c2&a3=2+q",
            Some(
                "OAuth realm=\"Example\", oauth_consumer_key=\"9djdj82h48djs9d2\", \
                 oauth_token=\"kkk9d7dh3k39sjv7\", oauth_signature_method=\"HMAC-SHA1\", \
                 oauth_timestamp=\"137131201\", oauth_nonce=\"7d8f3e4a\", \
                 oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"",
            ),
        )
        .unwrap();
        let base = base_string(
            "POST",
            &base_string_uri(&url),
            req.params
                .0
                .iter()
                .filter(|(k, _)| k != "oauth_signature")
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            base,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
             %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
             key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
             ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
             9d7dh3k39sjv7"
        );
    }

    /// RFC 5849 section 3.4.1.2: scheme and host lower-cased, default port dropped, other ports kept.
    #[test]
    fn base_string_uri_matches_rfc5849_section_3_4_1_2() {
        let u = |s| base_string_uri(&url::Url::parse(s).unwrap());
        assert_eq!(
            u("HTTP://EXAMPLE.COM:80/r%20v/X?id=123"),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            u("https://www.example.net:8080/?q=1"),
            "https://www.example.net:8080/"
        );
        assert_eq!(
            u("https://lti.example.edu:443/lti/launch"),
            "https://lti.example.edu/lti/launch"
        );
    }

    /// RFC 5849 section 1.2: the photos example, HMAC-SHA1 with a token secret.
    #[test]
    fn signature_matches_rfc5849_section_1_2() {
        let url =
            url::Url::parse("http://photos.example.net/photos?file=vacation.jpg&size=original")
                .unwrap();
        let req = SignedRequest::from_parts(
            url.query(),
            b"",
            Some(
                "OAuth realm=\"Photos\", oauth_consumer_key=\"dpf43f3p2l4k3l03\", \
                 oauth_token=\"nnch734d00sl2jdk\", oauth_signature_method=\"HMAC-SHA1\", \
                 oauth_timestamp=\"137131202\", oauth_nonce=\"chapoH\"",
            ),
        )
        .unwrap();
        let base = base_string(
            "GET",
            &base_string_uri(&url),
            req.params.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
        );
        assert_eq!(
            signature(&base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00"),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );
    }

    #[test]
    fn encoding_is_rfc3986_with_upper_case_hex() {
        assert_eq!(encode("a b+c/~é*"), "a%20b%2Bc%2F~%C3%A9%2A");
        assert_eq!(encode("Ladies + Gentlemen"), "Ladies%20%2B%20Gentlemen");
        assert_eq!(encode("An encoded string!"), "An%20encoded%20string%21");
    }

    /// Sorting must use the encoded names: `a_b` sorts after `a%2Fb` only once encoded (`_` > `%`).
    #[test]
    fn parameters_sort_by_encoded_name_then_value() {
        let base = base_string(
            "POST",
            "https://x/",
            [
                ("z", "1"),
                ("a_b", "2"),
                ("a/b", "3"),
                ("a", "2"),
                ("a", "10"),
            ],
        );
        assert!(
            base.ends_with(&encode("a=10&a=2&a%2Fb=3&a_b=2&z=1")),
            "{base}"
        );
    }

    #[test]
    fn form_parsing_keeps_order_duplicates_and_empty_values() {
        let p = parse_form(b"roles=&a=1&a=2&name=J%C3%BCrgen+M&flag").unwrap();
        assert_eq!(
            p,
            vec![
                ("roles".into(), "".into()),
                ("a".into(), "1".into()),
                ("a".into(), "2".into()),
                ("name".into(), "Jürgen M".into()),
                ("flag".into(), "".into()),
            ]
        );
    }

    #[test]
    fn malformed_form_data_is_rejected() {
        for bad in [
            &b"a=%zz"[..],
            b"a=%4",
            b"a=%",
            b"a=\xff",
            b"a=%ff%fe",
            b"a=\x01",
        ] {
            assert!(
                matches!(parse_form(bad), Err(LtiError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    fn signed(params: &[(&str, &str)], secret: &str, ts: i64, url: &str) -> SignedRequest {
        let url = url::Url::parse(url).unwrap();
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = sign_launch(&url, "key", secret, &owned, ts, "n-1");
        SignedRequest::from_parts(url.query(), body.as_bytes(), None).unwrap()
    }

    const LAUNCH: &[(&str, &str)] = &[
        ("lti_message_type", "basic-lti-launch-request"),
        ("lti_version", "LTI-1p0"),
        ("resource_link_id", "r1"),
        ("user_id", "0123456789abcdef0123456789abcdef"),
        ("roles", ""),
        ("a", "2"),
        ("a", "1"),
    ];

    #[test]
    fn signed_launch_verifies_and_yields_the_launch() {
        let req = signed(
            LAUNCH,
            "s3cret",
            1000,
            "https://LTI.example.edu:443/lti/launch?x=1",
        );
        let f = req.check_oauth_fields(1000, 300).unwrap();
        assert_eq!(f.consumer_key, "key");
        req.verify_signature("https://lti.example.edu/lti/launch", "s3cret")
            .unwrap();
        let launch = launch_from_params(&req.params, "key").unwrap();
        assert_eq!(launch.user_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(launch.roles, None);
    }

    #[test]
    fn wrong_secret_and_tampering_are_rejected() {
        let req = signed(LAUNCH, "s3cret", 1000, "https://lti.example.edu/lti/launch");
        assert_eq!(
            req.verify_signature("https://lti.example.edu/lti/launch", "other"),
            Err(LtiError::Signature)
        );
        let mut tampered = req.clone();
        tampered.params.0[3].1.push('x');
        assert_eq!(
            tampered.verify_signature("https://lti.example.edu/lti/launch", "s3cret"),
            Err(LtiError::Signature)
        );
        // A different launch URL (host header games) does not verify either.
        assert_eq!(
            req.verify_signature("https://evil.example.com/lti/launch", "s3cret"),
            Err(LtiError::Signature)
        );
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected_both_ways() {
        let req = signed(LAUNCH, "s", 1000, "https://x/lti/launch");
        assert_eq!(
            req.check_oauth_fields(1301, 300),
            Err(LtiError::Timestamp("is too old"))
        );
        assert_eq!(
            req.check_oauth_fields(699, 300),
            Err(LtiError::Timestamp("is in the future"))
        );
        assert!(req.check_oauth_fields(1300, 300).is_ok());
        assert!(req.check_oauth_fields(700, 300).is_ok());
    }

    #[test]
    fn repeated_or_missing_oauth_fields_are_malformed() {
        let req = signed(LAUNCH, "s", 1000, "https://x/lti/launch");
        let mut twice = req.clone();
        twice.params.0.push(("oauth_nonce".into(), "again".into()));
        assert_eq!(
            twice.check_oauth_fields(1000, 300),
            Err(LtiError::OAuthParam("oauth_nonce"))
        );
        let mut missing = req.clone();
        missing.params.0.retain(|(k, _)| k != "oauth_consumer_key");
        assert_eq!(
            missing.check_oauth_fields(1000, 300),
            Err(LtiError::OAuthParam("oauth_consumer_key"))
        );
        let mut plaintext = req;
        for (k, v) in plaintext.params.0.iter_mut() {
            if k == "oauth_signature_method" {
                *v = "PLAINTEXT".into();
            }
        }
        assert!(matches!(
            plaintext.check_oauth_fields(1000, 300),
            Err(LtiError::SignatureMethod(_))
        ));
    }

    #[test]
    fn launch_parameters_are_checked() {
        let mut p = Params(
            LAUNCH
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert!(launch_from_params(&p, "k").is_ok());
        p.0.retain(|(k, _)| k != "user_id");
        assert!(matches!(
            launch_from_params(&p, "k"),
            Err(LtiError::LtiParam {
                name: "user_id",
                ..
            })
        ));
        p.0.push(("user_id".into(), "u".into()));
        p.0.push(("user_id".into(), "v".into()));
        assert!(matches!(
            launch_from_params(&p, "k"),
            Err(LtiError::LtiParam {
                name: "user_id",
                ..
            })
        ));
        let mut wrong_type = Params(
            LAUNCH
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        wrong_type.0[0].1 = "ContentItemSelectionRequest".into();
        assert!(launch_from_params(&wrong_type, "k").is_err());
    }

    #[test]
    fn authorization_header_parameters_are_collected_without_realm() {
        let p = parse_authorization(
            "OAuth realm=\"x\", oauth_nonce=\"a%20b\",oauth_consumer_key=\"k\"",
        )
        .unwrap();
        assert_eq!(
            p,
            vec![
                ("oauth_nonce".into(), "a b".into()),
                ("oauth_consumer_key".into(), "k".into())
            ]
        );
        assert!(
            parse_authorization("Basic Zm9vOmJhcg==")
                .unwrap()
                .is_empty()
        );
    }
}
