//! The otpauth key URI: what we emit, and what real apps and services emit that we must read.

use mfa_core::{
    UnixTime,
    otp::{Algorithm, Digits, Period, Secret, SecretError, Totp},
    uri::{KeyUri, OtpKind, Part, UriError},
};

const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn seed() -> Secret {
    Secret::from_base32(SEED).unwrap()
}

fn emit(issuer: &str, account: &str, totp: &Totp) -> String {
    KeyUri::totp(issuer, account, seed(), totp)
        .unwrap()
        .to_uri_string()
        .to_string()
}

#[test]
fn emits_defaults_without_parameters_and_spaces_as_percent_20() {
    assert_eq!(
        emit("Big Corporation", "alice@bigco.com", &Totp::default()),
        "otpauth://totp/Big%20Corporation:alice%40bigco.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Big%20Corporation"
    );
    let sha512 = Totp::new(Algorithm::Sha512, Digits::EIGHT, Period::new(60).unwrap());
    assert_eq!(
        emit("Acme+Co & Sons", "bob", &sha512),
        "otpauth://totp/Acme%2BCo%20%26%20Sons:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%2BCo%20%26%20Sons&algorithm=SHA512&digits=8&period=60"
    );
}

#[test]
fn emitted_secrets_never_carry_padding() {
    for (len, chars) in [(20, 32), (32, 52), (64, 103)] {
        let secret = Secret::from_bytes(&vec![0xa5; len]).unwrap();
        let uri = KeyUri::totp("Acme", "alice", secret, &Totp::default())
            .unwrap()
            .to_uri_string();
        let value = uri
            .split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert_eq!(value.len(), chars, "{len} bytes");
        assert!(
            !uri.contains('=') || uri.matches('=').count() == 2,
            "{}",
            uri.as_str()
        );
        assert!(!uri.contains("%3D"));
    }
}

#[test]
fn emits_hotp_with_its_counter() {
    let uri = KeyUri::new(
        OtpKind::Hotp { counter: 42 },
        Some("Acme"),
        "alice",
        seed(),
        Algorithm::Sha1,
        Digits::SIX,
    )
    .unwrap();
    assert_eq!(
        uri.to_uri_string().as_str(),
        "otpauth://hotp/Acme:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme&counter=42"
    );
    assert_eq!(KeyUri::parse(&uri.to_uri_string()).unwrap(), uri);
    assert_eq!(uri.as_totp(), None);
}

#[test]
fn reads_what_real_issuers_emit() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        // Google's own example.
        (
            "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
            Some("Example"),
            "alice@google.com",
        ),
        // Encoded colon and spaces after it, as in the Key Uri Format page.
        (
            "otpauth://totp/Big%20Corporation%3A%20alice%40bigco.com?secret=JBSWY3DPEHPK3PXP&issuer=Big%20Corporation",
            Some("Big Corporation"),
            "alice@bigco.com",
        ),
        // Issuer only in the label.
        (
            "otpauth://totp/GitHub:octocat?secret=JBSWY3DPEHPK3PXP",
            Some("GitHub"),
            "octocat",
        ),
        // Issuer only in the parameter, written with `+` by a form encoder.
        (
            "otpauth://totp/alice%40bigco.com?issuer=Big+Corporation&secret=JBSWY3DPEHPK3PXP",
            Some("Big Corporation"),
            "alice@bigco.com",
        ),
        // No issuer at all; upper-case scheme and type; parameter names in any case.
        (
            "OTPAUTH://TOTP/alice?SECRET=JBSWY3DPEHPK3PXP",
            None,
            "alice",
        ),
        // Every default spelled out, in another order, lower-case and padded secret, unknown parameters.
        (
            "otpauth://totp/ACME%20Co:john.doe@email.com?period=30&digits=6&algorithm=sha1&image=https%3A%2F%2Fx.test%2Fa.png&secret=jbswy3dpehpk3pxp%3D%3D%3D%3D%3D%3D&issuer=ACME%20Co",
            Some("ACME Co"),
            "john.doe@email.com",
        ),
        // Spaced secret (%20) and a fragment.
        (
            "otpauth://totp/Acme:alice?secret=JBSW%20Y3DP%20EHPK%203PXP&issuer=Acme#ignored",
            Some("Acme"),
            "alice",
        ),
        // Unicode in both parts.
        (
            "otpauth://totp/Z%C3%BCrich%20Bank:j%C3%BCrg?secret=JBSWY3DPEHPK3PXP&issuer=Z%C3%BCrich%20Bank",
            Some("Zürich Bank"),
            "jürg",
        ),
        // An account with a colon after the issuer prefix.
        (
            "otpauth://totp/Acme:user:42?secret=JBSWY3DPEHPK3PXP&issuer=Acme",
            Some("Acme"),
            "user:42",
        ),
    ];
    let want = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
    for &(text, issuer, account) in cases {
        let uri = KeyUri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((uri.issuer(), uri.account()), (issuer, account), "{text}");
        assert_eq!(uri.secret(), &want, "{text}");
        assert_eq!(uri.as_totp(), Some(Totp::default()), "{text}");
        // Whatever we read, what we emit from it reads back the same.
        assert_eq!(KeyUri::parse(&uri.to_uri_string()).unwrap(), uri, "{text}");
    }
}

#[test]
fn reads_non_default_parameters() {
    let uri = KeyUri::parse(
        "otpauth://totp/Acme:alice?algorithm=SHA256&digits=8&period=60&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme",
    )
    .unwrap();
    let totp = uri.as_totp().unwrap();
    assert_eq!(
        totp,
        Totp::new(Algorithm::Sha256, Digits::EIGHT, Period::new(60).unwrap())
    );
    let hotp = KeyUri::parse(
        "otpauth://hotp/Acme:alice?secret=JBSWY3DPEHPK3PXP&counter=18446744073709551615",
    )
    .unwrap();
    assert_eq!(hotp.kind(), OtpKind::Hotp { counter: u64::MAX });
}

#[test]
fn every_parse_failure_names_what_was_wrong() {
    let s = "secret=JBSWY3DPEHPK3PXP";
    let cases = [
        (
            "https://example.com/?secret=JBSWY3DPEHPK3PXP".to_string(),
            UriError::NotOtpauth,
        ),
        (
            format!("otpauth://motp/Acme:alice?{s}"),
            UriError::UnsupportedType,
        ),
        (format!("otpauth://totp?{s}"), UriError::MissingAccount),
        (format!("otpauth://totp/?{s}"), UriError::MissingAccount),
        (
            format!("otpauth://totp/Acme:%20?{s}"),
            UriError::MissingAccount,
        ),
        (
            "otpauth://totp/Acme:alice?issuer=Acme".to_string(),
            UriError::MissingSecret,
        ),
        (
            "otpauth://totp/Acme:alice".to_string(),
            UriError::MissingSecret,
        ),
        (
            "otpauth://totp/Acme:alice?secret=".to_string(),
            UriError::InvalidSecret(SecretError::Empty),
        ),
        (
            "otpauth://totp/Acme:alice?secret=JBSW1DPE".to_string(),
            UriError::InvalidSecret(SecretError::InvalidBase32 { position: 4 }),
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&algorithm=MD5"),
            UriError::InvalidAlgorithm,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&digits=10"),
            UriError::InvalidDigits,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&digits=six"),
            UriError::InvalidDigits,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&period=0"),
            UriError::InvalidPeriod,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&period=121"),
            UriError::InvalidPeriod,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&period=-30"),
            UriError::InvalidPeriod,
        ),
        (
            format!("otpauth://hotp/Acme:alice?{s}"),
            UriError::MissingCounter,
        ),
        (
            format!("otpauth://hotp/Acme:alice?{s}&counter=18446744073709551616"),
            UriError::InvalidCounter,
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&secret=GEZDGNBVGY3TQOJQ"),
            UriError::DuplicateParameter("secret"),
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&Issuer=Acme&issuer=Acme"),
            UriError::DuplicateParameter("issuer"),
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&issuer=Evil"),
            UriError::IssuerMismatch,
        ),
        (
            format!("otpauth://totp/alice?{s}&issuer=a:b"),
            UriError::IssuerContainsColon,
        ),
        (
            format!("otpauth://totp/Acme:%FF?{s}"),
            UriError::InvalidUtf8(Part::Label),
        ),
        (
            format!("otpauth://totp/Acme:alice?{s}&issuer=%C3"),
            UriError::InvalidUtf8(Part::Issuer),
        ),
    ];
    for (text, error) in cases {
        assert_eq!(KeyUri::parse(&text), Err(error), "{text}");
    }
}

#[test]
fn construction_refuses_what_apps_would_misread() {
    let totp = Totp::default();
    assert_eq!(
        KeyUri::totp("a:b", "alice", seed(), &totp),
        Err(UriError::IssuerContainsColon)
    );
    assert_eq!(
        KeyUri::totp("Acme", "  ", seed(), &totp),
        Err(UriError::MissingAccount)
    );
    assert_eq!(
        KeyUri::new(
            OtpKind::Totp {
                period: Period::DEFAULT
            },
            None,
            "a:b",
            seed(),
            Algorithm::Sha1,
            Digits::SIX
        ),
        Err(UriError::AccountContainsColon)
    );
    let short = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
    assert_eq!(
        KeyUri::totp("Acme", "alice", short, &totp),
        Err(UriError::InvalidSecret(SecretError::TooShort { bits: 80 }))
    );
    let shifted = Totp::default().with_t0(UnixTime::from_secs(1));
    assert_eq!(
        KeyUri::totp("Acme", "alice", seed(), &shifted),
        Err(UriError::NonZeroT0)
    );
    // An empty issuer is no issuer: the label is the account alone.
    let plain = KeyUri::totp(" ", "alice", seed(), &totp).unwrap();
    assert_eq!(
        plain.to_uri_string().as_str(),
        format!("otpauth://totp/alice?secret={SEED}")
    );
}

#[test]
fn debug_and_errors_never_show_the_secret() {
    let uri = KeyUri::totp("Acme", "alice", seed(), &Totp::default()).unwrap();
    let shown = format!("{uri:?}");
    assert!(!shown.contains(SEED) && !shown.contains("GEZD"), "{shown}");
    let error = KeyUri::parse("otpauth://totp/Acme:alice?secret=GEZDGNBVGY3TQOJQ1&issuer=Acme")
        .unwrap_err();
    assert!(!error.to_string().contains("GEZD"), "{error}");
}

#[cfg(feature = "qr")]
#[test]
fn qr_svg_is_rendered_locally() {
    let uri = KeyUri::totp("Acme", "alice", seed(), &Totp::default()).unwrap();
    let svg = uri.to_qr_svg().unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("<path"),
        "{}",
        &svg[..80]
    );
    assert!(
        !svg.contains("href") && !svg.contains("<image"),
        "no linked resources"
    );
    assert!(mfa_core::uri::qr_svg(&"x".repeat(5000)).is_err());
}
