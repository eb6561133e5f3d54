//! Interoperability with implementations we did not write: `oathtool` (GNU OATH Toolkit), `pyotp`
//! (Python) and `zbarimg` (ZBar, reading our QR codes back).
//!
//! Each test needs its peer installed. Without it the test passes with a printed reason, unless
//! `MFA_REQUIRE_INTEROP=1` (set by `.ci/run`), which turns the skip into a failure.

use std::io::Write;
use std::process::{Command, Stdio};

use mfa_core::{
    UnixTime,
    otp::{Algorithm, Digits, Period, Secret, Totp, Window, hotp},
    uri::KeyUri,
};
use rand::RngExt;

const CASES: usize = 200;

/// Whether `program` runs; a missing peer is a skip, or a failure under `MFA_REQUIRE_INTEROP=1`.
fn peer(program: &str, probe: &[&str]) -> bool {
    let found = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("MFA_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{program} is not installed, and MFA_REQUIRE_INTEROP=1 requires it");
        }
        // Written to the real stderr, past the test harness's capture, so the skip is visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {program} is not installed (set MFA_REQUIRE_INTEROP=1 to fail instead)"
        );
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random case: algorithm, digits, period, a secret of the algorithm's length, a time up to year 2603.
fn random_case(rng: &mut impl rand::Rng) -> (Totp, Secret, u64) {
    let algorithm = Algorithm::ALL[rng.random_range(0..3)];
    let digits = Digits::new(rng.random_range(6..=8)).unwrap();
    let period = Period::new(
        *[30, 60, rng.random_range(1..=120)]
            .get(rng.random_range(0..3))
            .unwrap(),
    )
    .unwrap();
    let secret = Secret::generate(algorithm, &mut rand::rng());
    (
        Totp::new(algorithm, digits, period),
        secret,
        rng.random_range(0..=20_000_000_000),
    )
}

#[test]
fn oathtool_agrees_on_totp_and_hotp_codes() {
    if !peer("oathtool", &["--version"]) {
        return;
    }
    let mut rng = rand::rng();
    for _ in 0..CASES / 4 {
        let (totp, secret, time) = random_case(&mut rng);
        let ours = totp
            .generate(&secret, UnixTime::from_secs(time))
            .unwrap()
            .to_string();
        let out = Command::new("oathtool")
            .arg(format!("--totp={}", totp.algorithm().name().to_lowercase()))
            .arg(format!("--digits={}", totp.digits()))
            .arg(format!("--time-step-size={}s", totp.period().as_secs()))
            .arg(format!("--now=@{time}"))
            .arg(hex(secret.as_bytes()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = String::from_utf8(out.stdout).unwrap();
        assert_eq!(theirs.trim(), ours, "{totp:?} at {time}");
        // And ours verifies theirs.
        assert!(
            totp.verify(
                &secret,
                theirs.trim(),
                UnixTime::from_secs(time),
                Window::STRICT
            )
            .is_ok()
        );
    }
    for _ in 0..CASES / 8 {
        let secret = Secret::generate(Algorithm::Sha1, &mut rng);
        let counter: u64 = rng.random();
        let ours = hotp(Algorithm::Sha1, Digits::SIX, &secret, counter).to_string();
        let out = Command::new("oathtool")
            .arg(format!("--counter={counter}"))
            .arg(hex(secret.as_bytes()))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            ours,
            "HOTP at {counter}"
        );
    }
}

/// Runs a Python program with `pyotp`, feeding it one JSON case per line and reading one line back each.
fn pyotp(program: &str, lines: &[String]) -> Vec<String> {
    let mut child = Command::new("python3")
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn has_pyotp() -> bool {
    if !peer("python3", &["--version"]) {
        return false;
    }
    let found = Command::new("python3")
        .args(["-c", "import pyotp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("MFA_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("pyotp is not installed, and MFA_REQUIRE_INTEROP=1 requires it");
        }
        let _ = writeln!(
            std::io::stderr(),
            "skipped: pyotp is not installed (pip install pyotp)"
        );
    }
    found
}

#[test]
fn pyotp_agrees_on_codes_for_random_secrets_times_and_algorithms() {
    if !has_pyotp() {
        return;
    }
    let program = r#"
import hashlib, json, sys, pyotp
for line in sys.stdin:
    c = json.loads(line)
    totp = pyotp.TOTP(c["secret"], digits=c["digits"], digest=getattr(hashlib, c["algorithm"]), interval=c["period"])
    print(totp.at(c["time"]))
"#;
    let mut rng = rand::rng();
    let cases: Vec<(Totp, Secret, u64)> = (0..CASES).map(|_| random_case(&mut rng)).collect();
    let lines: Vec<String> = cases
        .iter()
        .map(|(totp, secret, time)| {
            serde_json::json!({
                "secret": secret.to_base32().as_str(), "digits": totp.digits().get(),
                "algorithm": totp.algorithm().name().to_lowercase(), "period": totp.period().as_secs(), "time": time,
            })
            .to_string()
        })
        .collect();
    let theirs = pyotp(program, &lines);
    assert_eq!(theirs.len(), cases.len());
    for ((totp, secret, time), theirs) in cases.iter().zip(theirs) {
        let ours = totp
            .generate(secret, UnixTime::from_secs(*time))
            .unwrap()
            .to_string();
        assert_eq!(theirs, ours, "{totp:?} at {time}");
    }
}

#[test]
fn pyotp_reads_the_uris_we_emit_and_yields_the_same_codes() {
    if !has_pyotp() {
        return;
    }
    let program = r#"
import json, sys, pyotp
for line in sys.stdin:
    c = json.loads(line)
    otp = pyotp.parse_uri(c["uri"])
    print(json.dumps({"code": otp.at(c["time"]), "issuer": otp.issuer, "name": otp.name}))
"#;
    let mut rng = rand::rng();
    let names = [
        "alice@acme.test",
        "Bob Smith",
        "ünïcödé",
        "x+y@z",
        "50% off",
    ];
    let mut cases = Vec::new();
    for i in 0..CASES / 4 {
        let (totp, secret, time) = random_case(&mut rng);
        let uri = KeyUri::totp("Acme Billing", names[i % names.len()], secret, &totp).unwrap();
        cases.push((uri, totp, time));
    }
    let lines: Vec<String> = cases
        .iter()
        .map(|(uri, _, time)| {
            serde_json::json!({"uri": uri.to_uri_string().as_str(), "time": time}).to_string()
        })
        .collect();
    for ((uri, totp, time), theirs) in cases.iter().zip(pyotp(program, &lines)) {
        let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
        let ours = totp
            .generate(uri.secret(), UnixTime::from_secs(*time))
            .unwrap()
            .to_string();
        assert_eq!(
            theirs["code"],
            ours.as_str(),
            "{}",
            uri.to_uri_string().as_str()
        );
        assert_eq!(theirs["issuer"], "Acme Billing");
        assert_eq!(theirs["name"], uri.account());
    }
}

#[test]
fn zbarimg_reads_our_png_qr_codes_back_to_the_same_uri() {
    if !peer("zbarimg", &["--version"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mfa-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rng();
    for (i, account) in [
        "alice@acme.test",
        "Jürgen Müller",
        "a very long account name at a very long domain.example",
    ]
    .iter()
    .enumerate()
    {
        let (totp, secret, _) = random_case(&mut rng);
        let uri = KeyUri::totp("Acme Billing", account, secret, &totp)
            .unwrap()
            .to_uri_string();
        let png = dir.join(format!("qr-{i}.png"));
        let status = Command::new(env!("CARGO_BIN_EXE_mfa"))
            .args(["qr", uri.as_str(), "--output"])
            .arg(&png)
            .status()
            .unwrap();
        assert!(status.success());
        // zbarimg prints harmless D-Bus noise on stderr; only stdout matters.
        let out = Command::new("zbarimg")
            .args(["--raw", "--quiet"])
            .arg(&png)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zbarimg could not read {}",
            png.display()
        );
        assert_eq!(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end_matches('\n'),
            uri.as_str()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
