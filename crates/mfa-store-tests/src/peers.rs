//! Implementations we did not write, run as the tests' peers (`oathtool`, `pyotp`, `zbarimg`):
//! [`peer`] says whether one is installed. A missing peer is a skip the test says it took, or a
//! failure under `MFA_REQUIRE_INTEROP=1` (set by `.ci/run`).

use std::io::Write as _;
use std::process::{Command, Stdio};

/// The variable that turns a missing peer into a failure.
pub const REQUIRE_INTEROP: &str = "MFA_REQUIRE_INTEROP";

/// Whether `program` runs (with `probe` as its arguments, exiting 0).
///
/// # Panics
/// When it does not and [`REQUIRE_INTEROP`] is `1`.
#[must_use]
pub fn peer(program: &str, probe: &[&str]) -> bool {
    let found = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var(REQUIRE_INTEROP).as_deref() != Ok("1"),
            "{program} is not installed, and {REQUIRE_INTEROP}=1 requires it"
        );
        // Written to the real stderr, past the test harness's capture, so the skip is visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {program} is not installed (set {REQUIRE_INTEROP}=1 to fail instead)"
        );
    }
    found
}

/// The TOTP code `oathtool` computes for the base32 `secret` at `unix` seconds (SHA-1, 6 digits,
/// 30 s: what a key URI without parameters means).
///
/// # Panics
/// When `oathtool` fails.
#[must_use]
pub fn oathtool_totp(secret: &str, unix: u64) -> String {
    let output = Command::new("oathtool")
        .args(["--totp", "-b", "--now", &format!("@{unix}"), secret])
        .output()
        .expect("run oathtool");
    assert!(output.status.success(), "oathtool: {output:?}");
    String::from_utf8(output.stdout)
        .expect("digits")
        .trim()
        .to_owned()
}

/// The TOTP code `pyotp` computes for the key URI `uri` at `unix` seconds.
///
/// # Panics
/// When Python or `pyotp` fails.
#[must_use]
pub fn pyotp_totp(uri: &str, unix: u64) -> String {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.parse_uri(sys.argv[1]).at(int(sys.argv[2])))",
            uri,
            &unix.to_string(),
        ])
        .output()
        .expect("run python3");
    assert!(output.status.success(), "pyotp: {output:?}");
    String::from_utf8(output.stdout)
        .expect("digits")
        .trim()
        .to_owned()
}
