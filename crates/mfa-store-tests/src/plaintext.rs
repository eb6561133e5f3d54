//! No secret and no backup code rests in plaintext: a store's raw bytes, as someone with its files
//! or a superuser's `SELECT` sees them, never hold the TOTP secret (raw, hex, base32 in any
//! spelling, the key URI) nor a backup code (as shown, bare, lower case, hex).
//!
//! [`secrets_written`] enrolls a customer through the service on the store, makes and uses backup
//! codes, and returns what must not be found; the adapter then searches every byte it can dump
//! ([`Plaintexts::assert_absent`]), at every moment that matters to it (an SQLite file before and
//! after a checkpoint, say).

use std::sync::Arc;

use mfa_core::Store;

use crate::{configured, customer, org, service};

/// What must never be found in a store's bytes, by name.
pub struct Plaintexts {
    needles: Vec<(String, Vec<u8>)>,
    /// A customer id the store does keep: the search is checked to find it.
    kept: Vec<u8>,
}

impl core::fmt::Debug for Plaintexts {
    // The names only: the needles are the secrets.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Plaintexts")
            .field("needles", &self.needles.len())
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

impl Plaintexts {
    /// Panics, naming the needle and `place`, if `bytes` holds any of them; and if it does not
    /// hold the customer's id, which the store keeps (a search that finds nothing proves nothing).
    ///
    /// # Panics
    /// As said: that is the check.
    pub fn assert_absent(&self, bytes: &[u8], place: &str) {
        assert!(
            contains(bytes, &self.kept),
            "the search finds nothing in {place}, not even the customer's id: a wrong dump"
        );
        for (name, needle) in &self.needles {
            assert!(!contains(bytes, needle), "{name} found in {place}");
        }
    }
}

/// Enrolls a customer through a service on `store`, makes a set of backup codes and uses one (so
/// the store has written the set after a use too), and returns what must not be found.
///
/// # Panics
/// When a step of the flow fails.
pub async fn secrets_written<S: Store>(store: Arc<S>) -> Plaintexts {
    let (mfa, clock) = service(store).await;
    let (uri, session) = configured(&mfa, &clock).await;
    let (o, alice) = (org("acme"), customer("alice"));
    let issued = mfa
        .generate_backup_codes(&o, &alice, &session)
        .await
        .expect("backup codes");
    let session = issued.passed.session();
    let _used = mfa
        .verify_backup_code(&o, &alice, &session, issued.codes[1].as_str())
        .await
        .expect("a backup code");
    let secret = uri.secret();
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("the raw secret".into(), secret.as_bytes().to_vec()),
        (
            "the secret in hex".into(),
            hex(secret.as_bytes()).into_bytes(),
        ),
        (
            "the base32 secret".into(),
            secret.to_base32().as_bytes().to_vec(),
        ),
        (
            "the lower-case base32 secret".into(),
            secret.to_base32().to_ascii_lowercase().into_bytes(),
        ),
        (
            "the grouped base32 secret".into(),
            secret.to_base32_grouped().as_bytes().to_vec(),
        ),
        (
            "the key URI".into(),
            uri.to_uri_string().as_bytes().to_vec(),
        ),
    ];
    for (i, code) in issued.codes.iter().enumerate() {
        let shown = code.as_str();
        assert!(shown.contains('-'), "codes are grouped with dashes");
        let bare = shown.replace('-', "");
        needles.push((format!("backup code {i}"), shown.as_bytes().to_vec()));
        needles.push((
            format!("backup code {i} without dashes"),
            bare.clone().into_bytes(),
        ));
        needles.push((
            format!("backup code {i} in lower case"),
            bare.to_ascii_lowercase().into_bytes(),
        ));
        needles.push((
            format!("backup code {i} in hex"),
            hex(bare.as_bytes()).into_bytes(),
        ));
    }
    Plaintexts {
        needles,
        kept: b"alice".to_vec(),
    }
}
