//! Secrets (consumer secrets, notebook tokens): generation from the OS random source, and a wrapper
//! whose `Debug` and `Display` never show the value, so a stray `{:?}` cannot leak one into a log.

use std::fmt;

/// A secret string. Read it with [`Secret::expose`], only where it is needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `bytes` random bytes from the OS, hex-encoded (so 16 bytes give a 128-bit, 32-character token).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    let mut out = String::with_capacity(bytes * 2);
    for b in buf {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    out
}

/// A new notebook token: 192 bits.
pub fn new_token() -> Secret {
    Secret(random_hex(24))
}

/// A new consumer secret: 256 bits.
pub fn new_consumer_secret() -> Secret {
    Secret(random_hex(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.expose().len(), 48);
        assert_ne!(a, b);
    }
}
