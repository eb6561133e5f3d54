//! The `mfa` command through its real binary: outputs, files and exit statuses (0 success, 1 a
//! rejected code, 2 bad usage or input with a one-line error).

use std::path::PathBuf;
use std::process::{Command, Output};

const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn mfa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(args)
        .output()
        .unwrap()
}

/// The command with `input` on its stdin.
fn mfa_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Dropped at the end of the statement: the command sees the end of its input.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_status(output: &Output, status: i32) {
    assert_eq!(
        output.status.code(),
        Some(status),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mfa-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn code_prints_the_rfc_vectors() {
    let cases = [
        ("sha1", SEED.to_string(), "59", "94287082"),
        ("sha1", SEED.to_string(), "1111111109", "07081804"),
        (
            "sha256",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA".to_string(),
            "20000000000",
            "77737706",
        ),
    ];
    for (algorithm, secret, time, want) in cases {
        let out = mfa(&[
            "code",
            "--secret",
            &secret,
            "--time",
            time,
            "--algorithm",
            algorithm,
            "--digits",
            "8",
        ]);
        assert_status(&out, 0);
        assert_eq!(stdout(&out), format!("{want}\n"));
    }
    // HOTP, RFC 4226 Appendix D count 5.
    let out = mfa(&["code", "--secret", SEED, "--counter", "5"]);
    assert_eq!(stdout(&out), "254676\n");
}

#[test]
fn code_takes_every_parameter_from_a_uri() {
    let uri = format!("otpauth://totp/Acme:alice?secret={SEED}&issuer=Acme&digits=8");
    let out = mfa(&["code", "--uri", &uri, "--time", "1234567890"]);
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "89005924\n");
    let hotp = format!("otpauth://hotp/Acme:alice?secret={SEED}&counter=9");
    assert_eq!(stdout(&mfa(&["code", "--uri", &hotp])), "520489\n");
    // A URI and loose parameters together are ambiguous.
    assert_status(&mfa(&["code", "--uri", &uri, "--digits", "6"]), 2);
}

#[test]
fn code_reads_the_secret_from_stdin() {
    let out = mfa_with_stdin(
        &["code", "--secret", "-", "--time", "59"],
        &format!("{}\n", SEED.to_lowercase()),
    );
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "287082\n");
}

/// `-` for a key URI reads it from stdin, so the secret it carries need not show in `ps`: `code`,
/// `verify` and `qr` print the same as with the URI as an argument; empty stdin is bad input.
#[test]
fn code_verify_and_qr_read_the_uri_from_stdin() {
    let uri = format!("otpauth://totp/Acme:alice?secret={SEED}&issuer=Acme&digits=8");
    let line = format!("{uri}\r\n");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["code", "--uri", &uri, "--time", "1234567890"],
            &["code", "--uri", "-", "--time", "1234567890"],
        ),
        (
            &[
                "verify",
                "--uri",
                &uri,
                "--code",
                "89005924",
                "--time",
                "1234567890",
            ],
            &[
                "verify",
                "--uri",
                "-",
                "--code",
                "89005924",
                "--time",
                "1234567890",
            ],
        ),
        (&["qr", &uri, "--terminal"], &["qr", "-", "--terminal"]),
    ];
    for (given, piped) in cases {
        let want = mfa(given);
        assert_status(&want, 0);
        let got = mfa_with_stdin(piped, &line);
        assert_status(&got, 0);
        assert_eq!(stdout(&got), stdout(&want), "{piped:?}");

        let empty = mfa_with_stdin(piped, "");
        assert_status(&empty, 2);
        assert_eq!(stderr(&empty).lines().count(), 1, "{}", stderr(&empty));
        assert!(stderr(&empty).contains("stdin"), "{}", stderr(&empty));
    }
    assert_eq!(
        stdout(&mfa_with_stdin(
            &["code", "--uri", "-", "--time", "1234567890"],
            &line
        )),
        "89005924\n"
    );
    // The file `qr - --output` writes is the same as with the URI as an argument.
    let dir = tempfile::tempdir().unwrap();
    let (given, piped) = (dir.path().join("given.svg"), dir.path().join("piped.svg"));
    assert_status(&mfa(&["qr", &uri, "--output", given.to_str().unwrap()]), 0);
    let out = mfa_with_stdin(&["qr", "-", "--output", piped.to_str().unwrap()], &line);
    assert_status(&out, 0);
    assert_eq!(
        std::fs::read(&piped).unwrap(),
        std::fs::read(&given).unwrap()
    );
}

#[test]
fn verify_exits_0_with_the_step_1_when_rejected_2_on_bad_input() {
    let ok = mfa(&[
        "verify",
        "--secret",
        SEED,
        "--code",
        "9428 7082",
        "--digits",
        "8",
        "--time",
        "89",
    ]);
    assert_status(&ok, 0);
    assert_eq!(stdout(&ok), "matched step 1 (offset -1)\n");

    let strict = mfa(&[
        "verify", "--secret", SEED, "--code", "94287082", "--digits", "8", "--time", "89",
        "--window", "0",
    ]);
    assert_status(&strict, 1);
    for code in ["000000", "12345", "12a456"] {
        let out = mfa(&["verify", "--secret", SEED, "--code", code, "--time", "59"]);
        assert_status(&out, 1);
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    for bad in [
        vec!["verify", "--secret", "not base32!", "--code", "123456"],
        vec![
            "verify", "--secret", SEED, "--code", "123456", "--window", "11",
        ],
        vec![
            "verify", "--secret", SEED, "--code", "123456", "--digits", "9",
        ],
        vec![
            "verify", "--secret", SEED, "--code", "123456", "--period", "0",
        ],
        vec!["verify", "--secret", SEED],
        vec!["verify", "--uri", "https://example.com", "--code", "123456"],
    ] {
        assert_status(&mfa(&bad), 2);
    }
    let out = mfa(&["verify", "--secret", "not base32!", "--code", "123456"]);
    assert_eq!(
        stderr(&out),
        "mfa: error: the secret is not valid base32 (at character 10)\n"
    );
}

#[test]
fn uri_builds_with_a_fresh_or_given_secret_and_parses_to_json() {
    let out = mfa(&[
        "uri",
        "--issuer",
        "Acme Billing",
        "--account",
        "alice@acme.test",
        "--secret",
        SEED,
    ]);
    assert_status(&out, 0);
    let uri = stdout(&out).trim().to_string();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Acme%20Billing:alice%40acme.test?secret={SEED}&issuer=Acme%20Billing"
        )
    );

    let parsed = mfa(&["uri", "--parse", &uri]);
    assert_status(&parsed, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&parsed)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "totp", "issuer": "Acme Billing", "account": "alice@acme.test",
            "secret": SEED, "algorithm": "SHA1", "digits": 6, "period": 30})
    );

    let a = stdout(&mfa(&[
        "uri",
        "--issuer",
        "Acme",
        "--account",
        "bob",
        "--algorithm",
        "sha512",
    ]));
    let b = stdout(&mfa(&[
        "uri",
        "--issuer",
        "Acme",
        "--account",
        "bob",
        "--algorithm",
        "sha512",
    ]));
    assert_ne!(a, b, "each run draws a fresh secret");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&mfa(&["uri", "--parse", a.trim()]))).unwrap();
    assert_eq!(
        json["secret"].as_str().unwrap().len(),
        103,
        "64 bytes for SHA-512"
    );
    assert_eq!(json["algorithm"], "SHA512");

    assert_status(
        &mfa(&[
            "uri",
            "--issuer",
            "Acme",
            "--account",
            "bob",
            "--secret",
            "JBSWY3DPEHPK3PXP",
        ]),
        2,
    );
    assert_status(&mfa(&["uri", "--issuer", "A:B", "--account", "bob"]), 2);
    assert_status(&mfa(&["uri", "--parse", "otpauth://totp/a?issuer=x"]), 2);
    assert_status(&mfa(&["uri", "--issuer", "Acme"]), 2);
}

#[test]
fn qr_writes_svg_and_png_files_private_to_the_owner() {
    let uri = format!("otpauth://totp/Acme:alice?secret={SEED}&issuer=Acme");
    let svg = scratch("code.svg");
    assert_status(&mfa(&["qr", &uri, "--output", svg.to_str().unwrap()]), 0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let png = scratch("code.png");
    assert_status(&mfa(&["qr", &uri, "--output", png.to_str().unwrap()]), 0);
    assert!(
        std::fs::read(&png)
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&png).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let terminal = mfa(&["qr", &uri, "--terminal"]);
    assert_status(&terminal, 0);
    assert!(stdout(&terminal).contains('█'));

    assert_status(
        &mfa(&[
            "qr",
            &uri,
            "--output",
            scratch("code.gif").to_str().unwrap(),
        ]),
        2,
    );
    assert_status(&mfa(&["qr", "otpauth://totp/Acme:alice", "--terminal"]), 2);
    assert_status(&mfa(&["qr", &uri]), 2);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The names in `dir`, sorted: no temporary file is left behind.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// An existing file is refused (exit 2, named) and left as it was; `--force` replaces it with a new
/// file of mode 0600 rather than writing the secret into a file others may read. A fresh path is
/// created 0600, with or without `--force`.
#[cfg(unix)]
#[test]
fn qr_refuses_an_existing_file_unless_forced_and_replaces_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let uri = format!("otpauth://totp/Acme:alice?secret={SEED}&issuer=Acme");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("code.svg");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shown = path.to_str().unwrap();

    let refused = mfa(&["qr", &uri, "--output", shown]);
    assert_status(&refused, 2);
    assert_eq!(
        stderr(&refused),
        format!("mfa: error: {shown} exists: refusing to overwrite it without --force\n")
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(mode(&path), 0o644);

    assert_status(&mfa(&["qr", &uri, "--output", shown, "--force"]), 0);
    assert!(std::fs::read_to_string(&path).unwrap().contains("<svg"));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(names(dir.path()), ["code.svg"]);

    let fresh = dir.path().join("fresh.png");
    assert_status(&mfa(&["qr", &uri, "--output", fresh.to_str().unwrap()]), 0);
    assert_eq!(mode(&fresh), 0o600);
    let forced = dir.path().join("forced.png");
    let out = mfa(&["qr", &uri, "-o", forced.to_str().unwrap(), "--force"]);
    assert_status(&out, 0);
    assert_eq!(mode(&forced), 0o600);
    assert!(std::fs::read(&forced).unwrap().starts_with(b"\x89PNG"));
    assert_eq!(names(dir.path()), ["code.svg", "forced.png", "fresh.png"]);
    // `--force` is for a file only.
    assert_status(&mfa(&["qr", &uri, "--terminal", "--force"]), 2);
}

/// A symlink at the output path is never followed: refused without `--force` (the file it points at
/// untouched, a dangling link's target not created); with `--force` the link itself is replaced by a
/// regular file of mode 0600, and the file it pointed at is still untouched.
#[cfg(unix)]
#[test]
fn qr_never_writes_through_a_symlink() {
    let uri = format!("otpauth://totp/Acme:alice?secret={SEED}&issuer=Acme");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.txt");
    std::fs::write(&target, "precious").unwrap();
    let link = dir.path().join("code.svg");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let shown = link.to_str().unwrap();

    let refused = mfa(&["qr", &uri, "--output", shown]);
    assert_status(&refused, 2);
    assert!(stderr(&refused).contains(shown), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

    assert_status(&mfa(&["qr", &uri, "--output", shown, "--force"]), 0);
    let metadata = std::fs::symlink_metadata(&link).unwrap();
    assert!(metadata.is_file(), "{metadata:?}");
    assert_eq!(mode(&link), 0o600);
    assert!(std::fs::read_to_string(&link).unwrap().contains("<svg"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(names(dir.path()), ["code.svg", "target.txt"]);

    let dangling = dir.path().join("dangling.png");
    let nowhere = dir.path().join("nowhere.png");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    assert_status(
        &mfa(&["qr", &uri, "--output", dangling.to_str().unwrap()]),
        2,
    );
    assert!(!nowhere.exists());
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        &["--help"][..],
        &["code", "--help"],
        &["verify", "--help"],
        &["uri", "--help"],
        &["qr", "--help"],
    ] {
        let out = mfa(sub);
        assert_status(&out, 0);
        assert!(stdout(&out).contains("Usage: mfa"), "{sub:?}");
    }
    assert_status(&mfa(&["frobnicate"]), 2);
}

/// A reader that went away (`mfa ... | head -0`) ends the command quietly: no panic, status 0.
#[test]
fn a_closed_pipe_on_stdout_is_not_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the command starts, so its first write fails with a broken pipe.
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_mfa"))
        .args(["uri", "--issuer", "Acme", "--account", "alice@acme.test"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}
