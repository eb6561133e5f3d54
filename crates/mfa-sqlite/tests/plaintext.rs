//! No secret and no backup code rests in plaintext in the database: the raw bytes of the database
//! file and of its write-ahead log are searched for them, before and after a checkpoint.

use std::sync::Arc;

use mfa_core::{
    Actor, Clock, CustomerId, KeyId, KeyRing, ManualClock, OrgId, OrgMfa, SealingKey, Service,
    Settings, UnixTime, backup::BackupHashParams,
};
use mfa_sqlite::SqliteStore;
use mfa_store_tests::TempDb;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Every file SQLite keeps for the database, concatenated with a separator no needle holds.
fn every_file(db: &TempDb) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in db.files() {
        if let Ok(content) = std::fs::read(&file) {
            bytes.extend_from_slice(&content);
            bytes.push(0);
        }
    }
    bytes
}

#[tokio::test]
async fn neither_the_secret_nor_a_backup_code_appears_in_the_files() {
    let db = TempDb::new("plaintext");
    // Shared, so the store can be closed once the service is done with it.
    let store = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let clock = ManualClock::new(UnixTime::from_secs(1_767_225_600));
    let keys = KeyRing::new(SealingKey::new(KeyId::new(1), [7; 32]));
    let mfa = Service::new(
        Arc::clone(&store),
        clock.clone(),
        keys,
        ChaCha20Rng::seed_from_u64(3),
    );
    let (acme, alice) = (
        OrgId::new("acme").unwrap(),
        CustomerId::new("alice").unwrap(),
    );
    let mut settings = Settings::default();
    settings.backup_hash = BackupHashParams::danger_insecure_fast();
    mfa.update_settings(&acme, settings, &Actor::new("admin").unwrap())
        .await
        .unwrap();
    mfa.set_org_mfa(&acme, OrgMfa::On, &Actor::new("admin").unwrap())
        .await
        .unwrap();

    let session = mfa.login_step(&acme, &alice).await.unwrap().session();
    let enrollment = mfa.start_enrollment(&acme, &alice, &session).await.unwrap();
    let secret = enrollment.uri.secret().clone();
    let totp = enrollment.uri.as_totp().unwrap();
    let code = totp.generate(&secret, clock.now()).unwrap().to_string();
    let session = mfa
        .confirm_enrollment(&acme, &alice, &session, &code)
        .await
        .unwrap()
        .session();
    let issued = mfa
        .generate_backup_codes(&acme, &alice, &session)
        .await
        .unwrap();
    let (codes, session) = (issued.codes, issued.passed.session());
    assert_eq!(codes.len(), 5);
    // One used, so the store has also rewritten the set after a use.
    let _ = mfa
        .verify_backup_code(&acme, &alice, &session, codes[1].as_str())
        .await
        .unwrap();

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("raw secret".into(), secret.as_bytes().to_vec()),
        (
            "base32 secret".into(),
            secret.to_base32().as_bytes().to_vec(),
        ),
        (
            "lower-case base32 secret".into(),
            secret.to_base32().to_ascii_lowercase().into_bytes(),
        ),
        (
            "grouped base32 secret".into(),
            secret.to_base32_grouped().as_bytes().to_vec(),
        ),
        (
            "key URI".into(),
            enrollment.uri.to_uri_string().as_bytes().to_vec(),
        ),
    ];
    for (i, code) in codes.iter().enumerate() {
        let text = code.as_str();
        assert!(text.contains('-'), "codes are grouped with dashes");
        needles.push((format!("backup code {i}"), text.as_bytes().to_vec()));
        let bare = text.replace('-', "");
        needles.push((
            format!("backup code {i} without dashes"),
            bare.clone().into_bytes(),
        ));
        needles.push((
            format!("backup code {i} in lower case"),
            bare.to_ascii_lowercase().into_bytes(),
        ));
    }

    // While the store is open, recent writes sit in the write-ahead log.
    assert!(
        db.files()[1].exists(),
        "the database runs in WAL mode, so the log exists while it is open"
    );
    let open_files = every_file(&db);
    // Closing checkpoints the log into the database file.
    drop(mfa);
    let store = Arc::into_inner(store).expect("the service is gone");
    store.close().await.unwrap();
    let closed_files = every_file(&db);
    assert!(!closed_files.is_empty());

    for (name, needle) in &needles {
        assert!(
            !contains(&open_files, needle),
            "{name} found in the files of the open database"
        );
        assert!(
            !contains(&closed_files, needle),
            "{name} found in the database file after a checkpoint"
        );
    }
    // The search itself works: what the store does keep is found.
    assert!(contains(&closed_files, b"alice") && contains(&open_files, b"alice"));
}
