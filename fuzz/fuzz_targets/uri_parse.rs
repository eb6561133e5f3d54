//! `KeyUri::parse` on any text: it must never panic, and what it accepts must be stable under
//! build → parse → build: `to_uri_string()` parses again to an equal `KeyUri`, and emitting that one
//! gives the identical string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa_core::uri::KeyUri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = KeyUri::parse(text) else { return };

    let emitted = uri.to_uri_string();
    let reparsed = match KeyUri::parse(&emitted) {
        Ok(reparsed) => reparsed,
        Err(e) => panic!(
            "our own output {:?} does not parse: {e:?} ({e})",
            emitted.as_str()
        ),
    };
    assert!(
        reparsed == uri,
        "{:?} parses to {:?}, but it was emitted from {:?}",
        emitted.as_str(),
        describe(&reparsed),
        describe(&uri)
    );
    let emitted_again = reparsed.to_uri_string();
    assert_eq!(
        emitted.as_str(),
        emitted_again.as_str(),
        "emitting is not stable"
    );
});

/// Every field, the secret included (as base32), since `Debug` redacts it and a fuzz report needs it.
fn describe(uri: &KeyUri) -> String {
    format!(
        "kind={:?} issuer={:?} account={:?} secret={} algorithm={} digits={}",
        uri.kind(),
        uri.issuer(),
        uri.account(),
        uri.secret().to_base32().as_str(),
        uri.algorithm(),
        uri.digits()
    )
}
