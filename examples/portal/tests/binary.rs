//! The `portal` command itself, as the README runs it: from an empty directory it creates the
//! database and the key file (both mode 0600), prints the demo accounts, serves the pages and the
//! API, and on a second start finds everything again. A malformed key is refused without being
//! repeated.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `portal`, killed when dropped.
struct Running {
    child: Child,
    address: SocketAddr,
    banner: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portal"));
    command
        .current_dir(dir)
        .args(["--listen", "127.0.0.1:0", "--danger-insecure-fast-hashes"])
        .env_remove("MFA_SEALING_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts the portal in `dir` and reads its banner up to the last line.
fn start(dir: &Path) -> Running {
    let mut child = command(dir).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    // Reads to the end, so that the portal never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut banner = String::new();
    let mut address = None;
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .expect("the portal printed its banner");
        if let Some(rest) = line.strip_prefix("Acme Billing customer portal: http://") {
            address = Some(rest.trim().parse().unwrap());
        }
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("stop with Ctrl+C") {
            break;
        }
    }
    Running {
        child,
        address: address.expect("the banner names the address"),
        banner,
    }
}

/// One HTTP/1.1 request; the whole answer as text.
fn http(address: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_readme_command_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    for expected in [
        "database     sqlite://portal.db",
        "sealing key  created in portal.key (mode 0600)",
        "first start: created the organisation \"acme\" with MFA off",
        "admin@acme.test    admin-pass",
        "alice@acme.test    alice-pass",
        "bob@acme.test      bob-pass",
        "WARNING: --danger-insecure-fast-hashes is on",
    ] {
        assert!(
            running.banner.contains(expected),
            "{expected}\n{}",
            running.banner
        );
    }
    let key = std::fs::read_to_string(dir.path().join("portal.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(
        !running.banner.contains(key.trim()),
        "the key is never printed"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.path().join("portal.key")), 0o600);
        assert_eq!(mode(&dir.path().join("portal.db")), 0o600);
    }

    let page = http(
        running.address,
        "GET /signin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains(r#"id="sign-in""#));
    let body = r#"{"email":"alice@acme.test","password":"alice-pass"}"#;
    let signed_in = http(
        running.address,
        &format!(
            "POST /api/session HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(signed_in.starts_with("HTTP/1.1 200 OK\r\n"), "{signed_in}");
    assert!(signed_in.ends_with(r#"{"next":"done"}"#), "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: portal_session="))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    let me = http(
        running.address,
        &format!(
            "GET /api/me HTTP/1.1\r\nHost: localhost\r\nCookie: portal_session={cookie}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(me.ends_with(r#"{"email":"alice@acme.test"}"#), "{me}");
    drop(running);

    // A second start finds the database, the accounts and the key.
    let again = start(dir.path());
    assert!(
        again.banner.contains("sealing key  from portal.key"),
        "{}",
        again.banner
    );
    assert!(
        again
            .banner
            .contains("demo accounts (created at the first start)")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("portal.key")).unwrap(),
        key
    );
}

#[test]
fn a_malformed_key_is_refused_and_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "not-a-key-but-secret-looking-0123456789";
    let output = command(dir.path())
        .env("MFA_SEALING_KEY", secret)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MFA_SEALING_KEY must be 32 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(secret));
    assert!(
        !dir.path().join("portal.db").exists(),
        "nothing was created"
    );

    let output = command(dir.path())
        .args(["--database-url", "mysql://localhost/x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("sqlite:// or postgres://"));
}

/// A request with a JSON body (if any) and the session cookie (if any).
fn api(address: SocketAddr, method: &str, path: &str, cookie: Option<&str>, body: &str) -> String {
    let cookie = cookie.map_or_else(String::new, |id| format!("Cookie: portal_session={id}\r\n"));
    http(
        address,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The session cookie an answer sets.
fn session_cookie(answer: &str) -> String {
    answer
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: portal_session="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {answer}"))
        .to_owned()
}

/// Starts the portal in `dir` with `args`, expecting it to refuse: its stderr. A portal that starts
/// instead is stopped, and the test fails.
fn refused(dir: &Path, args: &[&str]) -> String {
    let mut child = command(dir).args(args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut banner = String::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(line) = received.recv_timeout(Duration::from_millis(50)) {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("stop with Ctrl+C") {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the portal started:\n{banner}");
            }
        }
    };
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

#[test]
fn a_missing_or_wrong_key_file_is_refused_once_secrets_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    // MFA on, and Alice starts an enrollment: her secret is sealed under key id 1.
    let admin = session_cookie(&api(
        running.address,
        "POST",
        "/api/session",
        None,
        r#"{"email":"admin@acme.test","password":"admin-pass"}"#,
    ));
    let on = api(
        running.address,
        "PUT",
        "/api/admin/mfa",
        Some(&admin),
        r#"{"enabled":true}"#,
    );
    assert!(on.starts_with("HTTP/1.1 200 OK\r\n"), "{on}");
    let alice = session_cookie(&api(
        running.address,
        "POST",
        "/api/session",
        None,
        r#"{"email":"alice@acme.test","password":"alice-pass"}"#,
    ));
    let started = api(
        running.address,
        "POST",
        "/api/mfa/enrollment",
        Some(&alice),
        "{}",
    );
    assert!(started.starts_with("HTTP/1.1 201 Created\r\n"), "{started}");
    drop(running);

    // Started without its key file (another directory, a mistyped --key-file): refused, and no
    // key is made up.
    let key_file = dir.path().join("portal.key");
    let kept = dir.path().join("kept.key");
    std::fs::rename(&key_file, &kept).unwrap();
    let stderr = refused(dir.path(), &[]);
    for expected in ["portal.key", "1 sealed secret", "key id 1"] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(!key_file.exists(), "no key file was created");
    let stderr = refused(dir.path(), &["--key-file", "portl.key"]);
    assert!(stderr.contains("portl.key"), "{stderr}");
    assert!(!dir.path().join("portl.key").exists());

    // Another key under id 1: refused, naming the key id.
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let stderr = refused(dir.path(), &[]);
    assert!(stderr.contains("key id 1"), "{stderr}");
    assert!(stderr.contains("does not open"), "{stderr}");

    // The right key: it starts.
    std::fs::rename(&kept, &key_file).unwrap();
    let again = start(dir.path());
    assert!(
        again.banner.contains("sealing key  from portal.key"),
        "{}",
        again.banner
    );
}
