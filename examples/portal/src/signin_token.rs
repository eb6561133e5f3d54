//! The sign-in form's CSRF token, with no state on the server.
//!
//! A visitor who loads `/signin` has no session yet, and keeping one for each form would let anyone
//! fill the session store (and push real visitors' forms out of it) just by loading the page. So
//! the form is protected the stateless way, with a signed double-submit token (OWASP CSRF
//! Prevention Cheat Sheet, "Signed Double-Submit Cookie"): the browser gets a random 256-bit value
//! in a cookie of its own (`portal_signin`; `__Host-portal_signin` behind TLS; `HttpOnly`,
//! `SameSite=Strict`), and the form carries an HMAC-SHA256, under a key drawn at random when the
//! process starts, of that value and the time the form was made. A post is accepted only with the
//! cookie and a form token made for it, not older than a session's longest life, checked in
//! constant time. Another site can neither read the cookie nor make a token for it; a token seen
//! elsewhere is worth nothing without its browser's cookie; a restart (a new key) expires every
//! form, as it signed out every session before.
//!
//! The cookie is reused for as long as the browser keeps it, so forms open in several tabs all
//! work; each form's token has its own time.

use axum::http::{HeaderMap, HeaderValue};
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::sessions::{cookie_values, token};

type HmacSha256 = Hmac<Sha256>;

/// What the MAC covers before the cookie's value: no other use of the key can make a token.
const DOMAIN: &[u8] = b"portal sign-in form v1\0";
/// A form token: the time it was made (8 bytes) and the MAC (32).
const TOKEN_BYTES: usize = 8 + 32;

/// Makes and checks the sign-in form's tokens.
pub(crate) struct SignInTokens {
    key: Zeroizing<[u8; 32]>,
    secure: bool,
    life_secs: u64,
}

impl std::fmt::Debug for SignInTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInTokens")
            .field("secure", &self.secure)
            .field("life_secs", &self.life_secs)
            .finish_non_exhaustive()
    }
}

impl SignInTokens {
    /// Tokens under a fresh random key, valid for `life_secs`; `secure` as for the session cookie.
    pub(crate) fn new(secure: bool, life_secs: u64) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(&mut key[..]);
        Self {
            key,
            secure,
            life_secs,
        }
    }

    /// The cookie's name.
    pub(crate) const fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-portal_signin"
        } else {
            "portal_signin"
        }
    }

    fn mac(&self, cookie: &str, made: [u8; 8]) -> HmacSha256 {
        #[allow(
            clippy::expect_used,
            reason = "HMAC accepts keys of any length (RFC 2104 section 2)"
        )]
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key[..])
            .expect("HMAC accepts keys of any length");
        mac.update(DOMAIN);
        mac.update(cookie.as_bytes());
        mac.update(&made);
        mac
    }

    /// A form token for the request's browser at `now`, with the `Set-Cookie` value to send when the
    /// browser has no cookie for it yet.
    pub(crate) fn issue(&self, headers: &HeaderMap, now: u64) -> (String, Option<HeaderValue>) {
        let (cookie, set) = match cookie_values(headers, self.cookie_name()).next() {
            Some(value) => (value.to_owned(), None),
            None => {
                let value = token();
                let set = self.set_cookie(&value);
                (value, Some(set))
            }
        };
        let made = now.to_be_bytes();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.extend_from_slice(&made);
        bytes.extend_from_slice(&self.mac(&cookie, made).finalize().into_bytes());
        (BASE64URL_NOPAD.encode(&bytes), set)
    }

    /// Whether `form_token` was made at most a life ago for one of the request's cookies.
    pub(crate) fn verify(&self, headers: &HeaderMap, form_token: &str, now: u64) -> bool {
        let Ok(bytes) = BASE64URL_NOPAD.decode(form_token.as_bytes()) else {
            return false;
        };
        let Some((made, tag)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        if bytes.len() != TOKEN_BYTES || u64::from_be_bytes(*made).abs_diff(now) >= self.life_secs {
            return false;
        }
        // Every cookie of the name is tried, as for the session: a subdomain may have set another.
        cookie_values(headers, self.cookie_name())
            .any(|cookie| self.mac(cookie, *made).verify_slice(tag).is_ok())
    }

    fn set_cookie(&self, value: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        );
        // A token is base64url and the rest is fixed ASCII: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn with_cookie(line: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(line).unwrap());
        headers
    }

    /// The cookie line a browser sends back after `set`.
    fn sent(set: &HeaderValue) -> String {
        set.to_str().unwrap().split(';').next().unwrap().to_owned()
    }

    #[test]
    fn a_token_works_with_its_cookie_only_and_for_a_life() {
        let tokens = SignInTokens::new(false, 100);
        let (form, set) = tokens.issue(&HeaderMap::new(), 1_000);
        let set = set.expect("a browser without the cookie gets one");
        assert!(
            set.to_str()
                .unwrap()
                .ends_with("; Path=/; HttpOnly; SameSite=Strict")
        );
        let browser = with_cookie(&sent(&set));
        assert!(tokens.verify(&browser, &form, 1_000));
        assert!(tokens.verify(&browser, &form, 1_099));
        assert!(!tokens.verify(&browser, &form, 1_100), "too old");
        assert!(!tokens.verify(&HeaderMap::new(), &form, 1_000), "no cookie");
        // The same browser again: the cookie is kept, and both forms work (two tabs).
        let (second, again) = tokens.issue(&browser, 1_050);
        assert!(again.is_none());
        assert!(tokens.verify(&browser, &form, 1_050));
        assert!(tokens.verify(&browser, &second, 1_050));
        // Another browser's token, a forged or altered one, another process's: refused.
        let (_, other) = tokens.issue(&HeaderMap::new(), 1_000);
        let other = with_cookie(&sent(&other.unwrap()));
        assert!(!tokens.verify(&other, &form, 1_000));
        let mut altered = form.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in ["", "x", &form[1..], &altered, &"A".repeat(form.len())] {
            assert!(!tokens.verify(&browser, bad, 1_000), "{bad}");
        }
        let restarted = SignInTokens::new(false, 100);
        assert!(!restarted.verify(&browser, &form, 1_000));
        // Behind TLS the cookie has the __Host- prefix, and the plain name means nothing.
        let secure = SignInTokens::new(true, 100);
        let (form, set) = secure.issue(&browser, 1_000);
        let set = set.expect("the plain name is not the cookie");
        assert!(set.to_str().unwrap().starts_with("__Host-portal_signin="));
        assert!(set.to_str().unwrap().ends_with("; Secure"));
        assert!(secure.verify(&with_cookie(&sent(&set)), &form, 1_000));
        assert!(!secure.verify(&browser, &form, 1_000));
    }
}
