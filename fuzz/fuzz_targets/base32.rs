//! `Secret::from_base32` on any text: it must never panic, and a secret it reads must survive its own
//! encodings: `from_base32(to_base32())` and `from_base32(to_base32_grouped())` both give it back, and
//! `to_base32()` is canonical (unpadded RFC 4648 alphabet, `ceil(8 * len / 5)` characters).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa_core::otp::Secret;

fuzz_target!(|text: &str| {
    let Ok(secret) = Secret::from_base32(text) else {
        return;
    };
    assert!(
        !secret.as_bytes().is_empty(),
        "from_base32 returned an empty secret"
    );

    let plain = secret.to_base32();
    assert_eq!(
        plain.len(),
        (secret.as_bytes().len() * 8).div_ceil(5),
        "unexpected length of {:?}",
        plain.as_str()
    );
    assert!(
        plain
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "not canonical base32: {:?}",
        plain.as_str()
    );
    match Secret::from_base32(&plain) {
        Ok(back) => assert!(
            back == secret,
            "{:?} reads back as another secret",
            plain.as_str()
        ),
        Err(e) => panic!(
            "to_base32 output {:?} does not parse: {e:?}",
            plain.as_str()
        ),
    }

    let grouped = secret.to_base32_grouped();
    match Secret::from_base32(&grouped) {
        Ok(back) => assert!(
            back == secret,
            "{:?} reads back as another secret",
            grouped.as_str()
        ),
        Err(e) => panic!(
            "to_base32_grouped output {:?} does not parse: {e:?}",
            grouped.as_str()
        ),
    }
});
