//! Property tests: round trips that must hold for every input, and inputs that must never panic.

use mfa_core::{
    UnixTime,
    otp::{Algorithm, Digits, Period, Secret, Totp, VerifyError, Window},
    uri::{KeyUri, OtpKind, UriError},
};
use proptest::prelude::*;

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Sha1),
        Just(Algorithm::Sha256),
        Just(Algorithm::Sha512)
    ]
}

fn totp() -> impl Strategy<Value = Totp> {
    (algorithm(), 6u8..=8, 1u64..=120).prop_map(|(algorithm, digits, period)| {
        Totp::new(
            algorithm,
            Digits::new(digits).unwrap(),
            Period::new(period).unwrap(),
        )
    })
}

fn secret() -> impl Strategy<Value = Secret> {
    prop::collection::vec(any::<u8>(), 1..=64).prop_map(|bytes| Secret::from_bytes(&bytes).unwrap())
}

/// Secrets long enough to enroll (128 bits and more).
fn enrollable_secret() -> impl Strategy<Value = Secret> {
    prop::collection::vec(any::<u8>(), 16..=64)
        .prop_map(|bytes| Secret::from_bytes(&bytes).unwrap())
}

fn window() -> impl Strategy<Value = Window> {
    (0..=Window::MAX_SKEW, 0..=Window::MAX_SKEW)
        .prop_map(|(behind, ahead)| Window::new(behind, ahead).unwrap())
}

/// Times spread over the whole range, with the two ends well represented.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..1_000,
        (u64::MAX - 1_000)..=u64::MAX,
        1_000_000_000u64..5_000_000_000
    ]
}

/// Names as people write them: unicode, spaces, colons, `@`, `%`, `+`, `&`, `=`, `?`, `#`, `/`.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ a-zA-Z0-9:@%+&=?#/._~-]{0,24}",
        "\\PC{0,16}",
        "[ é漢😀:%]{0,8}"
    ]
}

proptest! {
    #[test]
    fn a_generated_code_verifies_exactly_inside_the_window(
        totp in totp(), secret in secret(), now in time(), window in window(), offset in -12i64..=12,
    ) {
        let current = totp.step_at(UnixTime::from_secs(now)).unwrap();
        let Some(step) = current.checked_add_signed(offset) else { return Ok(()) };
        let code = totp.generate_at_step(&secret, step);
        let inside = (-i64::from(window.behind())..=i64::from(window.ahead())).contains(&offset);
        match totp.verify(&secret, &code.to_string(), UnixTime::from_secs(now), window) {
            Ok(matched) => {
                // Whatever matched is a step of the window whose code this is. Only a collision (two
                // steps sharing a code, odds 10^-digits per step) can make it another step than ours,
                // and then an earlier one inside the window.
                prop_assert!((-i64::from(window.behind())..=i64::from(window.ahead())).contains(&matched.offset));
                prop_assert_eq!(current.checked_add_signed(matched.offset), Some(matched.step));
                prop_assert_eq!(totp.generate_at_step(&secret, matched.step), code);
                if inside {
                    prop_assert!(matched.offset <= offset);
                }
            }
            Err(error) => {
                prop_assert!(!inside, "a code {offset} steps away was refused in {window:?}: {error}");
                prop_assert_eq!(error, VerifyError::NoMatch);
            }
        }
    }

    #[test]
    fn spaces_anywhere_in_a_typed_code_are_ignored(secret in secret(), now in time(), spaces in prop::collection::vec(0usize..8, 0..4)) {
        let totp = Totp::default();
        let mut typed = totp.generate(&secret, UnixTime::from_secs(now)).unwrap().to_string();
        for at in spaces {
            typed.insert(at.min(typed.len()), ' ');
        }
        prop_assert!(totp.verify(&secret, &typed, UnixTime::from_secs(now), Window::STRICT).is_ok());
    }

    #[test]
    fn verification_never_panics_on_any_text(
        totp in totp(), secret in secret(), typed in any::<String>(), now in time(), window in window(),
    ) {
        let _ = totp.verify(&secret, &typed, UnixTime::from_secs(now), window);
    }

    #[test]
    fn key_uris_round_trip_for_any_names(issuer in name(), account in name(), secret in enrollable_secret(), totp in totp()) {
        let built = KeyUri::totp(&issuer, &account, secret.clone(), &totp);
        let issuer = issuer.trim();
        if issuer.contains(':') {
            prop_assert_eq!(built, Err(UriError::IssuerContainsColon));
            return Ok(());
        }
        if account.trim().is_empty() {
            prop_assert_eq!(built, Err(UriError::MissingAccount));
            return Ok(());
        }
        if issuer.is_empty() && account.contains(':') {
            prop_assert_eq!(built, Err(UriError::AccountContainsColon));
            return Ok(());
        }
        let built = built.unwrap();
        let text = built.to_uri_string();
        // Spaces travel as %20 and a literal `+` as %2B, never as `+` or a raw space.
        prop_assert!(!text.contains(' ') && !text.contains('+'));
        let parsed = KeyUri::parse(&text).unwrap();
        prop_assert_eq!(parsed.issuer(), (!issuer.is_empty()).then_some(issuer));
        prop_assert_eq!(parsed.account(), account.trim());
        prop_assert_eq!(parsed.secret(), &secret);
        prop_assert_eq!(parsed.as_totp(), Some(totp));
        let again = parsed.to_uri_string();
        prop_assert_eq!(again.as_str(), text.as_str());
    }

    #[test]
    fn hotp_uris_round_trip(counter in any::<u64>(), secret in enrollable_secret(), algorithm in algorithm(), digits in 6u8..=8) {
        let kind = OtpKind::Hotp { counter };
        let uri = KeyUri::new(kind, Some("Acme"), "alice", secret, algorithm, Digits::new(digits).unwrap()).unwrap();
        prop_assert_eq!(KeyUri::parse(&uri.to_uri_string()).unwrap(), uri);
    }

    #[test]
    fn uri_parsing_never_panics(text in any::<String>(), tail in "[a-zA-Z0-9%:=&?+ ]{0,40}") {
        let _ = KeyUri::parse(&text);
        let _ = KeyUri::parse(&format!("otpauth://totp/{text}"));
        let _ = KeyUri::parse(&format!("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&{tail}"));
    }

    #[test]
    fn base32_round_trips_in_every_accepted_form(bytes in prop::collection::vec(any::<u8>(), 1..=100)) {
        let secret = Secret::from_bytes(&bytes).unwrap();
        let text = secret.to_base32();
        prop_assert!(!text.contains('='));
        for form in [text.to_string(), text.to_lowercase(), secret.to_base32_grouped().to_string(), format!("{}====", text.as_str())] {
            let back = Secret::from_base32(&form).unwrap();
            prop_assert_eq!(back.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn base32_parsing_never_panics(text in any::<String>()) {
        let _ = Secret::from_base32(&text);
    }
}
