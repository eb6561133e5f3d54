//! The otpauth key URI that authenticator apps read from a QR code (Google Authenticator's
//! "Key Uri Format": `otpauth://TYPE/LABEL?PARAMETERS`).

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use core::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::ascii::{find_ignore_ascii_case, strip_prefix_ignore_ascii_case};
use crate::{Algorithm, Digits, Period, Secret, SecretError, Totp, UnixTime};

/// Everything but RFC 3986's unreserved characters is percent-encoded, so a space becomes `%20`
/// (never `+`, which Google Authenticator shows literally: pyotp#47), `@` becomes `%40` and `:` `%3A`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Time-based or counter-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(
    clippy::exhaustive_enums,
    reason = "the Key Uri Format has these two kinds, and a key of any other is refused"
)]
pub enum OtpKind {
    /// TOTP with its period (the `period` parameter; 30 s when absent).
    Totp {
        /// The time step.
        period: Period,
    },
    /// HOTP with the counter to start from (the `counter` parameter, required for HOTP).
    Hotp {
        /// The next counter value.
        counter: u64,
    },
}

/// A parsed or ready-to-emit otpauth key URI.
///
/// Build one with [`KeyUri::totp`] (or [`KeyUri::new`]), emit it with [`KeyUri::to_uri_string`], read
/// one with [`KeyUri::parse`]. What we emit survives parse and emit again unchanged. The secret is
/// redacted from `Debug`, and the emitted text is [`Zeroizing`], because the URI contains the secret.
///
/// Emitted URIs follow what every app accepts: the issuer both as a label prefix and as the `issuer`
/// parameter, `%20` for spaces, base32 without padding, and only the parameters that differ from the
/// defaults (SHA1, 6 digits, 30 s), since several apps ignore them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUri {
    kind: OtpKind,
    issuer: Option<String>,
    account: String,
    secret: Secret,
    algorithm: Algorithm,
    digits: Digits,
}

impl KeyUri {
    /// A TOTP key URI for `account` at `issuer` (the name the app shows above the code).
    ///
    /// # Errors
    /// As [`KeyUri::new`], and [`UriError::NonZeroT0`] when `totp` has a T0 other than the epoch,
    /// which no URI can carry.
    pub fn totp(
        issuer: &str,
        account: &str,
        secret: Secret,
        totp: &Totp,
    ) -> Result<Self, UriError> {
        if totp.t0() != UnixTime::EPOCH {
            return Err(UriError::NonZeroT0);
        }
        Self::new(
            OtpKind::Totp {
                period: totp.period(),
            },
            Some(issuer),
            account,
            secret,
            totp.algorithm(),
            totp.digits(),
        )
    }

    /// A key URI from its parts, for enrolling `secret` in an app. Leading and trailing spaces of the
    /// issuer and account are dropped; an empty issuer counts as none.
    ///
    /// # Errors
    /// [`UriError::InvalidSecret`] with [`SecretError::TooShort`] for a secret under 128 bits
    /// (RFC 4226 section 4 R6): such a key can still be read with [`KeyUri::parse`], but we never hand
    /// one out. [`UriError::MissingAccount`] for an empty account; [`UriError::IssuerContainsColon`] for an
    /// issuer with a `:`, which apps would split into issuer and account (the format forbids it);
    /// [`UriError::AccountContainsColon`] for an account with a `:` and no issuer, which would read
    /// back as an issuer prefix. (After an issuer, the account may contain colons: parsers split the
    /// label at the first one.)
    pub fn new(
        kind: OtpKind,
        issuer: Option<&str>,
        account: &str,
        secret: Secret,
        algorithm: Algorithm,
        digits: Digits,
    ) -> Result<Self, UriError> {
        secret.check_enrollable().map_err(UriError::InvalidSecret)?;
        Self::from_parts(kind, issuer, account, secret, algorithm, digits)
    }

    /// [`KeyUri::new`] without the secret's length check, for URIs read from elsewhere.
    fn from_parts(
        kind: OtpKind,
        issuer: Option<&str>,
        account: &str,
        secret: Secret,
        algorithm: Algorithm,
        digits: Digits,
    ) -> Result<Self, UriError> {
        let issuer = issuer.map(str::trim).filter(|issuer| !issuer.is_empty());
        if issuer.is_some_and(|issuer| issuer.contains(':')) {
            return Err(UriError::IssuerContainsColon);
        }
        let account = account.trim();
        if account.is_empty() {
            return Err(UriError::MissingAccount);
        }
        // Without an issuer prefix, a colon in the account would be read back as the separator.
        if issuer.is_none() && account.contains(':') {
            return Err(UriError::AccountContainsColon);
        }
        Ok(Self {
            kind,
            issuer: issuer.map(ToString::to_string),
            account: account.to_string(),
            secret,
            algorithm,
            digits,
        })
    }

    /// Reads a key URI as real apps and services write them: `otpauth://` in any case; `totp` or
    /// `hotp`; the issuer prefix separated by `:` or `%3A`, followed by any number of spaces, or
    /// absent; the issuer in the label, in the `issuer` parameter or both (then they must agree);
    /// parameters in any order and case, unknown ones (such as `image`) ignored; `+` or `%20` for
    /// spaces in parameters; the secret in any case, spaced, dashed or padded.
    ///
    /// # Errors
    /// A [`UriError`] naming the first thing that is wrong.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let rest =
            strip_prefix_ignore_ascii_case(uri.trim(), "otpauth://").ok_or(UriError::NotOtpauth)?;
        let rest = rest
            .split_once('#')
            .map_or(rest, |(before, _fragment)| before);
        let (kind, rest) = rest.split_once('/').ok_or(UriError::MissingAccount)?;
        let (label, query) = rest.split_once('?').unwrap_or((rest, ""));
        let is_totp = if kind.eq_ignore_ascii_case("totp") {
            true
        } else if kind.eq_ignore_ascii_case("hotp") {
            false
        } else {
            return Err(UriError::UnsupportedType);
        };

        let (label_issuer, account) = split_label(label);
        let label_issuer = label_issuer
            .map(|raw| decode(raw, Part::Label))
            .transpose()?;
        let account = decode(account, Part::Label)?;

        let params = Params::parse(query)?;
        let param_issuer = params
            .issuer
            .map(|raw| decode_param(raw, Part::Issuer))
            .transpose()?;
        let label_issuer = label_issuer
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let param_issuer = param_issuer
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let issuer = match (label_issuer, param_issuer) {
            (Some(label), Some(param)) if label != param => return Err(UriError::IssuerMismatch),
            (label, param) => param.or(label),
        };

        let secret = params.secret.ok_or(UriError::MissingSecret)?;
        let secret = Zeroizing::new(decode(secret, Part::Secret)?.into_owned());
        let secret = Secret::from_base32(&secret).map_err(UriError::InvalidSecret)?;
        let algorithm = match params.algorithm {
            Some(raw) => decode(raw, Part::Algorithm)?
                .parse()
                .map_err(|_| UriError::InvalidAlgorithm)?,
            None => Algorithm::Sha1,
        };
        let digits = match params.digits {
            Some(raw) => raw
                .parse()
                .ok()
                .and_then(|n| Digits::new(n).ok())
                .ok_or(UriError::InvalidDigits)?,
            None => Digits::SIX,
        };
        let kind = if is_totp {
            let period = match params.period {
                Some(raw) => raw
                    .parse()
                    .ok()
                    .and_then(|secs| Period::new(secs).ok())
                    .ok_or(UriError::InvalidPeriod)?,
                None => Period::DEFAULT,
            };
            OtpKind::Totp { period }
        } else {
            let counter = params.counter.ok_or(UriError::MissingCounter)?;
            OtpKind::Hotp {
                counter: counter.parse().map_err(|_| UriError::InvalidCounter)?,
            }
        };
        Self::from_parts(kind, issuer, &account, secret, algorithm, digits)
    }

    /// The URI text, ready for a QR code. It contains the secret, hence [`Zeroizing`].
    #[must_use]
    pub fn to_uri_string(&self) -> Zeroizing<String> {
        let encoded_len = |s: &str| s.len().saturating_mul(3);
        let issuer_len = self.issuer.as_deref().map_or(0, encoded_len);
        // Reserve enough up front that the string never reallocates (and so never leaves a copy of the
        // secret in freed memory): the fixed text and numbers fit in 96 bytes.
        let capacity = 96usize
            .saturating_add(issuer_len.saturating_mul(2))
            .saturating_add(encoded_len(&self.account))
            .saturating_add(self.secret.as_bytes().len().saturating_mul(2));
        let mut uri = Zeroizing::new(String::with_capacity(capacity));
        uri.push_str(match self.kind {
            OtpKind::Totp { .. } => "otpauth://totp/",
            OtpKind::Hotp { .. } => "otpauth://hotp/",
        });
        if let Some(issuer) = &self.issuer {
            uri.extend(utf8_percent_encode(issuer, COMPONENT));
            uri.push(':');
        }
        uri.extend(utf8_percent_encode(&self.account, COMPONENT));
        uri.push_str("?secret=");
        uri.push_str(&self.secret.to_base32());
        if let Some(issuer) = &self.issuer {
            uri.push_str("&issuer=");
            uri.extend(utf8_percent_encode(issuer, COMPONENT));
        }
        if self.algorithm != Algorithm::Sha1 {
            uri.push_str("&algorithm=");
            uri.push_str(self.algorithm.name());
        }
        // Writing to a `String` cannot fail.
        if self.digits != Digits::SIX {
            let _ = write!(uri, "&digits={}", self.digits);
        }
        match self.kind {
            OtpKind::Totp { period } if period != Period::DEFAULT => {
                let _ = write!(uri, "&period={}", period.as_secs());
            }
            OtpKind::Totp { .. } => {}
            OtpKind::Hotp { counter } => {
                let _ = write!(uri, "&counter={counter}");
            }
        }
        uri
    }

    /// TOTP or HOTP, with the period or counter.
    #[must_use]
    pub const fn kind(&self) -> OtpKind {
        self.kind
    }

    /// The issuer (service name), if any.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The account name (usually the customer's email).
    #[must_use]
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The shared secret.
    #[must_use]
    pub const fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The HMAC algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The number of digits.
    #[must_use]
    pub const fn digits(&self) -> Digits {
        self.digits
    }

    /// The TOTP parameters, or `None` for an HOTP URI.
    #[must_use]
    pub const fn as_totp(&self) -> Option<Totp> {
        match self.kind {
            OtpKind::Totp { period } => Some(Totp::new(self.algorithm, self.digits, period)),
            OtpKind::Hotp { .. } => None,
        }
    }
}

/// Splits a raw label at its first separator, `:` or `%3A`, into the raw issuer prefix and account.
fn split_label(label: &str) -> (Option<&str>, &str) {
    let colon = label.find(':').map(|at| (at, 1));
    let encoded = find_ignore_ascii_case(label, "%3A").map(|at| (at, 3));
    let separator = match (colon, encoded) {
        (Some(colon), Some(encoded)) => Some(if colon.0 < encoded.0 { colon } else { encoded }),
        (colon, encoded) => colon.or(encoded),
    };
    let split = separator.and_then(|(at, len)| {
        let (issuer, rest) = label.split_at_checked(at)?;
        Some((issuer, rest.get(len..)?))
    });
    match split {
        Some((issuer, account)) => (Some(issuer), account),
        None => (None, label),
    }
}

/// Which part of the URI a decoding error was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The label (issuer prefix and account).
    Label,
    /// The `issuer` parameter.
    Issuer,
    /// The `secret` parameter.
    Secret,
    /// The `algorithm` parameter.
    Algorithm,
}

impl Part {
    const fn name(self) -> &'static str {
        match self {
            Self::Label => "label",
            Self::Issuer => "issuer parameter",
            Self::Secret => "secret parameter",
            Self::Algorithm => "algorithm parameter",
        }
    }
}

impl core::fmt::Display for Part {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Percent-decodes a URI component into UTF-8.
fn decode(raw: &str, part: Part) -> Result<Cow<'_, str>, UriError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| UriError::InvalidUtf8(part))
}

/// Percent-decodes a query parameter, where form-encoding writers put `+` for a space. Our own output
/// never has a literal `+` (it is `%2B`), so reading `+` as a space loses nothing.
fn decode_param(raw: &str, part: Part) -> Result<String, UriError> {
    let spaced = raw.replace('+', " ");
    decode(&spaced, part).map(Cow::into_owned)
}

/// The raw (still percent-encoded) values of the parameters we understand.
#[derive(Default)]
struct Params<'a> {
    secret: Option<&'a str>,
    issuer: Option<&'a str>,
    algorithm: Option<&'a str>,
    digits: Option<&'a str>,
    period: Option<&'a str>,
    counter: Option<&'a str>,
}

impl<'a> Params<'a> {
    fn parse(query: &'a str) -> Result<Self, UriError> {
        let mut params = Self::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (slot, name) = match name.to_ascii_lowercase().as_str() {
                "secret" => (&mut params.secret, "secret"),
                "issuer" => (&mut params.issuer, "issuer"),
                "algorithm" => (&mut params.algorithm, "algorithm"),
                "digits" => (&mut params.digits, "digits"),
                "period" => (&mut params.period, "period"),
                "counter" => (&mut params.counter, "counter"),
                // Apps add their own (`image`, `color`, `lock`...): not ours to refuse.
                _ => continue,
            };
            // Two values for one parameter is ambiguous, and apps would disagree on which one wins.
            if slot.replace(value).is_some() {
                return Err(UriError::DuplicateParameter(name));
            }
        }
        Ok(params)
    }
}

/// Why text is not a key URI we accept. Never contains the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The text does not start with `otpauth://`.
    #[error("not an otpauth:// URI")]
    NotOtpauth,
    /// The type is neither `totp` nor `hotp`.
    #[error("unsupported OTP type: expected totp or hotp")]
    UnsupportedType,
    /// The label has no account name.
    #[error("the label has no account name")]
    MissingAccount,
    /// Percent-decoding a part gave bytes that are not UTF-8.
    #[error("the {0} is not valid UTF-8 once percent-decoded")]
    InvalidUtf8(Part),
    /// There is no `secret` parameter.
    #[error("the secret parameter is missing")]
    MissingSecret,
    /// The `secret` parameter is not a usable secret.
    #[error("the secret parameter is invalid")]
    InvalidSecret(#[source] SecretError),
    /// The `algorithm` parameter is not SHA1, SHA256 or SHA512.
    #[error("the algorithm parameter must be SHA1, SHA256 or SHA512")]
    InvalidAlgorithm,
    /// The `digits` parameter is not 6, 7 or 8.
    #[error("the digits parameter must be 6, 7 or 8")]
    InvalidDigits,
    /// The `period` parameter is not a number of seconds from 1 to 120.
    #[error("the period parameter must be between 1 and 120 seconds")]
    InvalidPeriod,
    /// An HOTP URI has no `counter` parameter.
    #[error("the counter parameter is required for hotp")]
    MissingCounter,
    /// The `counter` parameter is not a 64-bit unsigned number.
    #[error("the counter parameter must be a non-negative 64-bit number")]
    InvalidCounter,
    /// A parameter appears twice.
    #[error("the {0} parameter appears more than once")]
    DuplicateParameter(&'static str),
    /// The label's issuer prefix and the `issuer` parameter differ.
    #[error("the issuer in the label differs from the issuer parameter")]
    IssuerMismatch,
    /// The issuer contains a `:`, which the format forbids.
    #[error("the issuer must not contain ':'")]
    IssuerContainsColon,
    /// The account contains a `:` and there is no issuer, so it would read back as issuer and account.
    #[error("without an issuer, the account must not contain ':'")]
    AccountContainsColon,
    /// The TOTP parameters have a T0 other than the Unix epoch, which a URI cannot carry.
    #[error("a key URI cannot carry a T0 other than the Unix epoch")]
    NonZeroT0,
}
