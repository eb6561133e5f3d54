//! No secret and no backup code rests in plaintext in the database: every row of every table in the
//! store's schema is read back, in text form and as raw bytes, and searched for them.

mod common;

use std::sync::Arc;

use common::{raw_client, test_store};
use mfa_core::{
    Actor, Clock, CustomerId, KeyId, KeyRing, ManualClock, OrgId, OrgMfa, SealingKey, Service,
    Settings, UnixTime, backup::BackupHashParams,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn neither_the_secret_nor_a_backup_code_appears_in_any_row() {
    let Some(store) = test_store("plaintext").await else {
        return;
    };
    let store = Arc::new(store);
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
    let _ = mfa
        .verify_backup_code(&acme, &alice, &session, codes[1].as_str())
        .await
        .unwrap();

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("raw secret".into(), secret.as_bytes().to_vec()),
        ("hex secret".into(), hex(secret.as_bytes()).into_bytes()),
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
        let bare = code.as_str().replace('-', "");
        needles.push((
            format!("backup code {i}"),
            code.as_str().as_bytes().to_vec(),
        ));
        needles.push((format!("backup code {i} bare"), bare.clone().into_bytes()));
        needles.push((
            format!("backup code {i} in lower case"),
            bare.to_ascii_lowercase().into_bytes(),
        ));
        needles.push((
            format!("backup code {i} in hex"),
            hex(bare.as_bytes()).into_bytes(),
        ));
    }

    // Every table of the schema, each row as PostgreSQL prints it (bytea as hex) and each bytea
    // column as raw bytes.
    let client = raw_client(&store.hooks.url).await;
    let schema = store.store.schema();
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.len() >= 5, "{tables:?}");
    let mut everything = Vec::new();
    for table in &tables {
        for row in client
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t"),
                &[],
            )
            .await
            .unwrap()
        {
            everything.extend_from_slice(row.get::<_, String>(0).as_bytes());
            everything.push(0);
        }
    }
    for (table, column) in [
        ("orgs", "policy"),
        ("customers", "record"),
        ("events", "event"),
    ] {
        for row in client
            .query(&format!("SELECT {column} FROM \"{schema}\".{table}"), &[])
            .await
            .unwrap()
        {
            everything.extend_from_slice(row.get::<_, &[u8]>(0));
            everything.push(0);
        }
    }
    for (name, needle) in &needles {
        assert!(
            !contains(&everything, needle),
            "{name} found in the database"
        );
    }
    // The search itself works: what the store does keep is found, in both forms.
    assert!(contains(&everything, b"alice"));
    assert!(contains(&everything, b"backup_code_accepted"));
}
