//! The whole story in a real browser: headless Chromium driven over WebDriver (chromedriver), clicking
//! the pages as a person would. The administrator switches MFA on; Alice is led to set it up, types
//! the key shown on the page into "her app" (`mfa-core` computing the code), confirms it, saves her
//! backup codes, signs in again with a code, changes the card on file (and, once her code is older
//! than the step-up age the administrator set, confirms it is her with a fresh code first, without
//! signing out; the same for a new set of backup codes), signs in with a backup code; the
//! administrator resets her and she is asked to set MFA up again.
//!
//! The portal runs on a manual clock that starts at the real time: the test moves it on 30 s before
//! each code the app shows (so every code is of a step of its own) and jumps it past the step-up
//! age, which a browser living in real time could not wait for.
//!
//! Every page is saved as a PNG under `target/browser-screenshots/NN-name.png`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`), or `chromium` and `chromedriver` on `PATH`. Without them the test says on stderr
//! that it was skipped and passes, unless `MFA_REQUIRE_BROWSER=1` makes that a failure (as in CI).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN, ALICE};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use mfa_core::{
    Clock, ManualClock, SystemClock,
    otp::{Secret, Totp},
    uri::KeyUri,
};
use mfa_sqlite::SqliteStore;
use portal::Portal;
use portal::accounts::Accounts;
use serde_json::json;

/// The variable that turns a missing browser into a failure.
const REQUIRE: &str = "MFA_REQUIRE_BROWSER";

/// The page's size in the browser (and so the screenshots'): wide enough for the administrator's
/// tables, tall enough for the set-up card.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 960;

/// How long any one page or element may take to show up.
const PATIENCE: Duration = Duration::from_secs(10);

/// The browser and its driver, or why the test cannot run.
fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| -> Option<PathBuf> {
        let standard = Path::new("/usr/bin").join(names[0]);
        if standard.is_file() {
            return Some(standard);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find(&["chromedriver"]);
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Ok((chromium, driver)),
        (None, None) => Err("neither chromium nor chromedriver is installed".to_owned()),
        (None, Some(_)) => Err("chromium is not installed".to_owned()),
        (Some(_), None) => Err("chromedriver is not installed".to_owned()),
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// chromedriver, started in a process group of its own with the browser it launches. Dropping it
/// (at the end of the test, or while a failed assertion unwinds) kills the whole group and every
/// process descended from the driver, so no browser outlives the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(path: &Path, log: &Path) -> Self {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", path.display()));
        let driver = Self { child, port };
        let deadline = Instant::now() + PATIENCE;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {address}; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The processes descended from `root`, read from `/proc` (Linux); empty elsewhere.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        found.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    found.remove(0);
    found
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The browser's processes, found before the driver dies and they are re-parented.
        let mut pids: Vec<String> = descendants(pid).iter().map(u32::to_string).collect();
        pids.push(format!("-{pid}")); // the process group: the driver and whatever stayed in it
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go: `target/browser-screenshots` of the workspace (or of
/// `CARGO_TARGET_DIR`, taken relative to the workspace root when it is relative).
fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // examples/portal -> the workspace root.
    let workspace = manifest.ancestors().nth(2).unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    target.join("browser-screenshots")
}

/// The browser, and the numbered screenshots it saves.
struct Browser {
    client: Client,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    async fn open(driver: &Driver, chromium: &Path, profile: &Path, downloads: &Path) -> Self {
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Root in a container has no user namespaces for the sandbox.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-sync",
                    "--password-store=basic",
                    "--lang=en-US",
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|error| panic!("no WebDriver session: {error}"));
        // The window's size counts the browser's frame, headless or not: size it, measure the page,
        // and grow the window by the difference.
        client.set_window_size(WIDTH, HEIGHT).await.unwrap();
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .unwrap();
        let side = |i: usize| u32::try_from(inner[i].as_u64().unwrap()).unwrap();
        let (width, height) = (2 * WIDTH - side(0), 2 * HEIGHT - side(1));
        client.set_window_size(width, height).await.unwrap();
        let shots = screenshot_dir();
        // Only this run's pictures.
        for entry in std::fs::read_dir(&shots).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "png") {
                std::fs::remove_file(path).unwrap();
            }
        }
        Self {
            client,
            shots,
            taken: 0,
        }
    }

    /// Saves the window as `NN-name.png`.
    async fn shot(&mut self, name: &str) {
        self.taken += 1;
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).unwrap();
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits until the page named `page` (`<body data-page>`) has loaded.
    #[track_caller]
    fn page<'a>(&'a self, page: &'a str) -> impl Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let selector = format!(r#"body[data-page="{page}"]"#);
            if let Err(error) = self
                .client
                .wait()
                .at_most(PATIENCE)
                .every(Duration::from_millis(50))
                .for_element(Locator::Css(&selector))
                .await
            {
                let url = self.client.current_url().await.map(String::from);
                panic!("{caller}: not on the {page} page ({url:?}): {error}");
            }
        }
    }

    /// The element with this id, once it is shown.
    #[track_caller]
    fn visible<'a>(&'a self, id: &'a str) -> impl Future<Output = Element> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = Instant::now() + PATIENCE;
            loop {
                if let Ok(element) = self.client.find(Locator::Id(id)).await
                    && element.is_displayed().await.unwrap_or(false)
                {
                    return element;
                }
                assert!(Instant::now() < deadline, "{caller}: #{id} never showed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn click(&self, id: &str) {
        self.visible(id).await.click().await.unwrap();
    }

    async fn text(&self, id: &str) -> String {
        self.visible(id).await.text().await.unwrap()
    }

    async fn type_into(&self, id: &str, text: &str) {
        let input = self.visible(id).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Signs in with the form, and waits for the page it leads to.
    async fn sign_in(&self, base: &str, email: &str, password: &str, lands_on: &str) {
        self.goto(&format!("{base}/signin")).await;
        self.page("signin").await;
        self.type_into("email", email).await;
        self.type_into("password", password).await;
        self.click("sign-in").await;
        self.page(lands_on).await;
    }

    async fn sign_out(&self) {
        self.click("sign-out").await;
        self.page("signin").await;
        assert_eq!(self.text("notice").await, "You have signed out.");
    }
}

/// Alice's authenticator app: the key she typed in, with the parameters of the QR code's URI, on
/// the portal's clock.
struct App {
    secret: Secret,
    totp: Totp,
    clock: ManualClock,
}

impl App {
    /// The code to type now, after the clock moves on a step: the portal takes each step once.
    fn code(&self) -> String {
        self.clock.advance(30);
        let step = self.totp.step_at(self.clock.now()).unwrap();
        self.totp.generate_at_step(&self.secret, step).to_string()
    }

    /// A code the verifier accepts at no step near now.
    fn wrong_code(&self) -> String {
        let step = self.totp.step_at(self.clock.now()).unwrap();
        let near: Vec<String> = (step - 2..=step + 2)
            .map(|s| self.totp.generate_at_step(&self.secret, s).to_string())
            .collect();
        (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|code| !near.contains(code))
            .unwrap()
    }
}

/// The step-up age the administrator sets in the test, in minutes.
const STEP_UP_MINUTES: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_in_a_browser() {
    let started = Instant::now();
    let (chromium, chromedriver) = match find_browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var(REQUIRE).as_deref() != Ok("1"),
                "{REQUIRE}=1 but {why}: the browser test cannot run"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {why}, so the portal's browser test did not run \
                 (apt-get install chromium chromium-driver; set {REQUIRE}=1 to fail instead)"
            );
            return;
        }
    };

    // Declared first, so it goes last: the browser's profile lives in it.
    let dir = tempfile::tempdir().unwrap();
    let (profile, downloads) = (dir.path().join("profile"), dir.path().join("downloads"));
    std::fs::create_dir_all(&downloads).unwrap();

    // The portal, on a fresh SQLite file, on a manual clock that starts now.
    let database = dir.path().join("portal.db");
    portal::database::create_private(&database).unwrap();
    let store = SqliteStore::open(&database).await.unwrap();
    let accounts = Accounts::sqlite(&database).await.unwrap();
    let keys = mfa_store_tests::fixture::keys();
    let clock = ManualClock::new(SystemClock.now());
    let (portal, created) = Portal::start(store, accounts, clock.clone(), keys, common::config())
        .await
        .unwrap();
    assert!(created);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, Arc::clone(&portal).router()).into_future());

    // The driver's log stays beside the screenshots, for when the test fails.
    std::fs::create_dir_all(screenshot_dir()).unwrap();
    let log = screenshot_dir().join("chromedriver.log");
    let driver = Driver::start(&chromedriver, &log);
    let mut browser = Browser::open(&driver, &chromium, &profile, &downloads).await;

    // The administrator switches MFA on.
    browser.goto(&format!("{base}/")).await;
    browser.page("signin").await;
    browser.shot("signin").await;
    browser.sign_in(&base, ADMIN, "admin-pass", "admin").await;
    let checkbox = browser.visible("mfa-enabled").await;
    assert!(!checkbox.is_selected().await.unwrap(), "MFA starts off");
    browser.shot("admin-mfa-off").await;
    checkbox.click().await.unwrap();
    assert_eq!(
        browser
            .visible("step-up-minutes")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("10"),
        "ten minutes by default"
    );
    browser
        .type_into("step-up-minutes", &STEP_UP_MINUTES.to_string())
        .await;
    browser.click("save").await;
    browser.page("admin").await;
    assert!(browser.text("flash").await.starts_with("Saved: MFA is on."));
    assert_eq!(
        portal
            .service()
            .org_policy(&mfa_core::OrgId::new("acme").unwrap())
            .await
            .unwrap()
            .settings()
            .step_up_max_age_secs,
        STEP_UP_MINUTES * 60
    );
    let checkbox = browser.visible("mfa-enabled").await;
    assert!(checkbox.is_selected().await.unwrap());
    browser.shot("admin-mfa-on").await;
    browser.sign_out().await;
    browser.shot("signed-out").await;

    // Alice must set it up: Configure, the QR code and the key.
    browser.sign_in(&base, ALICE, "alice-pass", "setup").await;
    assert_eq!(browser.path().await, "/mfa/setup");
    let title = browser
        .client
        .find(Locator::Css("#step-start h1"))
        .await
        .unwrap();
    assert_eq!(title.text().await.unwrap(), "Enable MFA for your account");
    browser.shot("setup-start").await;
    browser.click("configure").await;
    browser.visible("step-scan").await;
    browser
        .client
        .find(Locator::Css("#qr svg"))
        .await
        .expect("the QR code is shown");
    let grouped = browser.text("secret").await;
    assert!(
        grouped.contains(' '),
        "the key is grouped for typing: {grouped}"
    );
    let typed: String = grouped.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = Secret::from_base32(&typed).unwrap();
    let link = browser
        .visible("otpauth-link")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let uri = KeyUri::parse(&link).unwrap();
    assert_eq!(uri.secret(), &secret, "the QR code's key is the one shown");
    assert_eq!(uri.account(), ALICE);
    let app = App {
        secret,
        totp: uri.as_totp().unwrap(),
        clock: clock.clone(),
    };
    browser.shot("setup-scan").await;

    // Next, the code, Verify.
    browser.click("next").await;
    let code = app.code();
    browser.type_into("code", &code).await;
    browser.shot("setup-code").await;
    browser.click("verify").await;
    browser.visible("step-enabled").await;
    browser.shot("setup-enabled").await;

    // Backup codes: shown, downloadable, copyable.
    browser.click("generate-backup-codes").await;
    browser.visible("step-backup").await;
    let items = browser
        .client
        .find_all(Locator::Css("#backup-codes li"))
        .await
        .unwrap();
    let mut first_codes = Vec::new();
    for item in items {
        first_codes.push(item.text().await.unwrap());
    }
    assert_eq!(first_codes.len(), 5, "{first_codes:?}");
    assert!(first_codes.iter().all(|code| !code.is_empty()));
    browser.click("download").await;
    browser.click("copy").await;
    let status = browser.text("copy-status").await;
    assert!(
        status == "Copied." || status.starts_with("Selected"),
        "{status}"
    );
    browser.visible("continue").await;
    browser.shot("setup-backup-codes").await;
    let saved = downloads.join("acme-billing-backup-codes.txt");
    let deadline = Instant::now() + PATIENCE;
    while !saved.is_file() {
        assert!(Instant::now() < deadline, "Download saved no file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let file = std::fs::read_to_string(&saved).unwrap();
    assert!(
        first_codes.iter().all(|code| file.contains(code.as_str())),
        "{file}"
    );

    // Continue to Sign In, once she says the codes are saved: the account.
    assert!(
        !browser
            .visible("continue")
            .await
            .is_enabled()
            .await
            .unwrap(),
        "no going on before the codes are saved"
    );
    browser.click("codes-saved").await;
    browser.click("continue").await;
    browser.page("account").await;
    assert_eq!(browser.text("account-email").await, ALICE);
    assert_eq!(browser.text("mfa-state").await, "On");
    assert_eq!(browser.text("backup-codes-remaining").await, "5");
    browser.shot("account").await;
    browser.sign_out().await;

    // Signing in again takes a code: a wrong one first, then the app's.
    browser.sign_in(&base, ALICE, "alice-pass", "verify").await;
    browser.shot("verify").await;
    browser.type_into("code", &app.wrong_code()).await;
    browser.click("verify").await;
    let error = browser.text("error").await;
    assert!(error.starts_with("That code is not valid."), "{error}");
    browser.shot("verify-wrong-code").await;
    browser.type_into("code", &app.code()).await;
    browser.click("verify").await;
    browser.page("account").await;
    assert_eq!(browser.text("account-email").await, ALICE);
    browser.shot("account-after-code").await;

    // The card on file: the code she signed in with is fresh, so the form is there.
    browser.click("payment-method-link").await;
    browser.page("payment").await;
    assert_eq!(browser.text("card-on-file").await, "none");
    browser
        .type_into("card-number", "4242 4242 4242 4242")
        .await;
    browser.type_into("card-expiry", "12/30").await;
    browser.click("save-card").await;
    assert_eq!(
        browser.text("card-saved").await,
        "Saved: the card ending in 4242 is on file."
    );
    assert_eq!(browser.text("card-on-file").await, "ending in 4242");
    browser.shot("payment-saved").await;

    // Past the step-up age: "Confirm it's you", a wrong code, then a fresh one; the form is back.
    clock.advance(STEP_UP_MINUTES * 60 + 1);
    browser
        .goto(&format!("{base}/billing/payment-method"))
        .await;
    browser.page("payment").await;
    browser.visible("step-up").await;
    assert!(
        browser
            .client
            .find(Locator::Id("card-number"))
            .await
            .is_err(),
        "no form before the fresh code"
    );
    browser.shot("payment-step-up").await;
    browser.type_into("step-up-code", &app.wrong_code()).await;
    browser.click("step-up-verify").await;
    let error = browser.text("step-up-error").await;
    assert!(error.starts_with("That code is not valid."), "{error}");
    browser.type_into("step-up-code", &app.code()).await;
    browser.click("step-up-verify").await;
    browser.visible("card-number").await;
    browser
        .type_into("card-number", "5555 5555 5555 4444")
        .await;
    browser.type_into("card-expiry", "01/31").await;
    browser.click("save-card").await;
    assert_eq!(browser.text("card-on-file").await, "ending in 4444");
    browser.shot("payment-after-step-up").await;

    // New backup codes, once the code is stale again: the same confirmation, inline.
    clock.advance(STEP_UP_MINUTES * 60 + 1);
    browser.click("back-to-account").await;
    browser.page("account").await;
    browser.click("generate-backup-codes").await;
    browser.visible("step-up").await;
    browser.shot("account-step-up").await;
    browser.type_into("step-up-code", &app.code()).await;
    browser.click("step-up-verify").await;
    browser.visible("step-backup").await;
    let mut codes = Vec::new();
    for item in browser
        .client
        .find_all(Locator::Css("#backup-codes li"))
        .await
        .unwrap()
    {
        codes.push(item.text().await.unwrap());
    }
    assert_eq!(codes.len(), 5, "a new set: {codes:?}");
    browser.shot("account-new-backup-codes").await;

    // A new phone: past the step-up age again, "Replace authenticator" asks for a fresh code, then
    // shows the new key; the new app's code confirms it, and from then on only it signs in.
    clock.advance(STEP_UP_MINUTES * 60 + 1);
    browser.click("replace-authenticator").await;
    browser.visible("step-up").await;
    assert_eq!(
        browser.text("step-up-action").await,
        "Replacing your authenticator app"
    );
    browser.type_into("step-up-code", &app.code()).await;
    browser.click("step-up-verify").await;
    browser.visible("replace-scan").await;
    browser
        .client
        .find(Locator::Css("#replace-qr svg"))
        .await
        .expect("the new QR code is shown");
    let typed: String = browser
        .text("replace-secret")
        .await
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let old_app = app;
    let app = App {
        secret: Secret::from_base32(&typed).unwrap(),
        totp: old_app.totp,
        clock: clock.clone(),
    };
    browser.shot("account-replace-scan").await;
    browser.type_into("replace-code", &app.code()).await;
    browser.click("replace-confirm").await;
    assert!(
        browser
            .text("replace-done")
            .await
            .starts_with("Your new authenticator app is set up."),
    );
    browser.shot("account-replaced").await;
    browser.sign_out().await;

    // The old phone's code no longer signs in; the new one's does.
    browser.sign_in(&base, ALICE, "alice-pass", "verify").await;
    browser.type_into("code", &old_app.code()).await;
    browser.click("verify").await;
    let error = browser.text("error").await;
    assert!(error.starts_with("That code is not valid."), "{error}");
    browser.type_into("code", &app.code()).await;
    browser.click("verify").await;
    browser.page("account").await;
    browser.sign_out().await;

    // And again, with a backup code instead.
    browser.sign_in(&base, ALICE, "alice-pass", "verify").await;
    browser.click("use-backup-code").await;
    // The first set was replaced: its codes are no longer good.
    browser.type_into("backup-code", &first_codes[1]).await;
    browser.click("verify-backup").await;
    let error = browser.text("error").await;
    assert!(error.starts_with("That code is not valid."), "{error}");
    browser.type_into("backup-code", &codes[0]).await;
    browser.shot("verify-backup-code").await;
    browser.click("verify-backup").await;
    browser.page("account").await;
    assert_eq!(browser.text("backup-codes-remaining").await, "4");
    assert!(
        browser
            .text("renew-backup-codes")
            .await
            .starts_with("You signed in with a backup code"),
        "a new set is offered after a backup code"
    );
    browser.shot("account-after-backup-code").await;
    browser.sign_out().await;

    // The administrator resets her.
    browser.sign_in(&base, ADMIN, "admin-pass", "admin").await;
    let row = browser.visible("customer-alice-acme-test").await;
    let state = row
        .find(Locator::Css("td.state"))
        .await
        .unwrap()
        .attr("data-state")
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("configured"));
    browser.shot("admin-before-reset").await;
    browser.click("reset-alice-acme-test").await;
    browser.page("admin").await;
    assert_eq!(
        browser.text("flash").await,
        "MFA was reset for alice@acme.test: they set it up again at their next sign-in."
    );
    let row = browser.visible("customer-alice-acme-test").await;
    assert_eq!(
        row.attr("data-customer").await.unwrap().as_deref(),
        Some(ALICE)
    );
    let state = row
        .find(Locator::Css("td.state"))
        .await
        .unwrap()
        .attr("data-state")
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("unconfigured"));
    browser.shot("admin-after-reset").await;
    browser.sign_out().await;

    // Alice is asked to set MFA up again.
    browser.sign_in(&base, ALICE, "alice-pass", "setup").await;
    browser.visible("configure").await;
    browser.shot("setup-again").await;

    let Browser { client, taken, .. } = browser;
    client.close().await.unwrap();
    drop(driver);
    server.abort();
    let _ = writeln_stderr(&format!(
        "browser test: {taken} screenshots in {} ({:.1} s)",
        screenshot_dir().display(),
        started.elapsed().as_secs_f64()
    ));
}

/// Past the test harness's capture.
fn writeln_stderr(line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stderr(), "{line}")
}
