//! `mfa admin keys rotate` and `keys status`: re-sealing every stored secret under a new key, and
//! how many secrets each key id still seals.
//!
//! Rotation lists the customers whose secret is under each old key id, a page at a time in the
//! store's key order, and calls [`Service::reseal`] for each, a bounded number at once. Each reseal
//! is a compare-and-swap with its audit event in the same write, like a sign-in, so the service can
//! keep running: a customer who signs in meanwhile makes one of the two writes retry, never lose
//! anything. It is resumable by construction: a rerun lists only what is still under old keys.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mfa_core::{
    Clock, Fault, KeyId, Resealed, Service, ServiceError, Store, seal::SealError,
    store::CustomerKey,
};
use rand::rngs::StdRng;
use serde::Serialize;

use super::output::{Format, table};
use crate::Failure;

/// How a rotation runs.
pub(crate) struct Rotation {
    /// Customers listed (and resealed) per page.
    pub(crate) batch_size: usize,
    /// Reseals in flight at once.
    pub(crate) concurrency: usize,
    /// A pause after each page, to spare a busy database.
    pub(crate) pause: Duration,
}

/// The most error lines printed for customers that failed; the rest are counted.
const MAX_ERROR_LINES: usize = 10;

/// Plain progress lines at most this often.
const LINE_EVERY: Duration = Duration::from_millis(250);

/// How many complete walks over the old keys a rotation makes before it gives up on secrets that
/// keep appearing under them (a service still sealing with an old key).
const MAX_PASSES: usize = 3;

/// What happened to each customer listed.
#[derive(Default)]
struct Tally {
    /// Resealed, by the key that sealed them before.
    moved: BTreeMap<KeyId, u64>,
    /// Listed, but by the time of the reseal already under the new key or without a secret.
    skipped: u64,
    /// Failed, with what went wrong for the first few.
    failed: u64,
    errors: Vec<String>,
    /// A secret that does not open before any other under its key did: a key missing or wrong. It
    /// stops the rotation.
    fatal: Option<String>,
}

impl Tally {
    fn moved_total(&self) -> u64 {
        self.moved.values().sum()
    }

    fn fail(&mut self, message: String) {
        self.failed += 1;
        if self.errors.len() < MAX_ERROR_LINES {
            self.errors.push(message);
        }
    }
}

/// Progress on stderr: a bar on a terminal, else a line `resealed N of M` at most four times a
/// second.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "resealing {wide_bar} {pos}/{len} ({elapsed}, {eta} left)",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    fn advance(&mut self, resealed: u64) {
        self.done = resealed;
        // Secrets sealed under an old key after the count (a service still sealing with it) can
        // make the count grow.
        self.total = self.total.max(resealed);
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.total);
                bar.set_position(resealed);
            }
            None if self.last_line.elapsed() >= LINE_EVERY => self.line(),
            None => {}
        }
    }

    fn line(&mut self) {
        note(format_args!("resealed {} of {}", self.done, self.total));
        self.last_line = Instant::now();
    }

    fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None => self.line(),
        }
    }
}

/// A progress or failure line on stderr. Unlike `eprintln!`, a reader that went away
/// (`... 2>&1 | head`) does not stop the rotation half way with a panic: the lines are only news.
fn note(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// When secrets are already sealed under the new key's id, the new key file must hold that same
/// key: a fresh key given an id in use (say 1, the portal's) would count them as done, and the
/// services restarted with it could open none of them. One of them is opened to be sure.
async fn check_new_key_opens<S: Store, C: Clock>(
    service: &Service<S, C, StdRng>,
    before: &[(KeyId, u64)],
) -> Result<(), Failure> {
    let new = service.keys().active_id();
    if !before.iter().any(|(id, count)| *id == new && *count > 0) {
        return Ok(());
    }
    let sample = service
        .sealed_sample(new, 1)
        .await
        .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
    // The first record that can be read tells; one that cannot says nothing about the key (it
    // fails alone when the rotation reaches it).
    let Some(((org, customer), sealed)) = sample.readable.first() else {
        return Ok(());
    };
    service
        .keys()
        .open(sealed, org, customer)
        .map(drop)
        .map_err(|error| {
            Failure::failed(format!(
                "the new key does not open the secrets already sealed under its key id {new} \
             ({org} / {customer}: {error}): a new key needs a key id no stored secret uses"
            ))
        })
}

/// Rotates every secret under another key than the service's active one to the active key, then
/// prints a summary. Exit 1 when any customer failed or secrets remain under old keys.
pub(crate) async fn rotate<S: Store, C: Clock>(
    service: &Service<S, C, StdRng>,
    rotation: &Rotation,
) -> Result<(), Failure> {
    let started = Instant::now();
    let new = service.keys().active_id();
    let before = service
        .store()
        .count_sealed()
        .await
        .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
    let old: Vec<(KeyId, u64)> = before
        .iter()
        .copied()
        .filter(|(id, _)| *id != new)
        .collect();
    // Before any write: every old key must be loaded, or the walk would fail on every customer.
    let loaded: Vec<KeyId> = service.keys().key_ids().collect();
    if let Some((id, count)) = old.iter().find(|(id, _)| !loaded.contains(id)) {
        return Err(Failure::failed(format!(
            "{count} secrets are sealed under key id {id}, which is not loaded: give its key file \
             with --key-file (or the key in MFA_SEALING_KEY)"
        )));
    }
    check_new_key_opens(service, &before).await?;
    let total: u64 = old.iter().map(|(_, count)| count).sum();
    if total == 0 {
        outln!("nothing to do: every stored secret is sealed under key id {new}");
        print_counts(&before, &loaded, new);
        return Ok(());
    }
    let from: Vec<String> = old.iter().map(|(id, _)| id.to_string()).collect();
    note(format_args!(
        "re-sealing {total} secrets from key id {} to key id {new}",
        from.join(", ")
    ));
    let mut tally = Tally::default();
    let mut progress = Progress::new(total);
    let mut retry: Vec<CustomerKey> = Vec::new();
    let mut olds: Vec<KeyId> = old.iter().map(|(id, _)| *id).collect();
    for _ in 0..MAX_PASSES {
        for &id in &olds {
            // A store that fails mid-walk ends the walk, but the summary still says how far it got.
            if let Err(Failure::Failed(error) | Failure::Input(error) | Failure::Rejected(error)) =
                walk(service, id, rotation, &mut tally, &mut retry, &mut progress).await
            {
                tally.fatal.get_or_insert(error);
            }
            if tally.fatal.is_some() {
                break;
            }
        }
        if tally.fatal.is_some() {
            break;
        }
        // Customers whose record kept changing under the reseal (busy signing in): once more, one
        // at a time, now that the walk is over.
        for (org, customer) in std::mem::take(&mut retry) {
            let outcome = service.reseal(&org, &customer).await;
            record(&mut tally, &org, &customer, outcome, None);
            progress.advance(tally.moved_total());
        }
        // A service that still seals with an old key adds secrets under it behind the walk.
        let now = service
            .store()
            .count_sealed()
            .await
            .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
        olds = now
            .iter()
            .filter(|(id, count)| *id != new && *count > 0 && loaded.contains(id))
            .map(|(id, _)| *id)
            .collect();
        if olds.is_empty() || tally.failed > 0 {
            break;
        }
    }
    progress.finish();

    let elapsed = started.elapsed();
    let moved = tally.moved_total();
    let rate = moved as f64 / elapsed.as_secs_f64().max(0.001);
    outln!(
        "resealed {moved} secrets under key id {new} in {:.1} s ({rate:.0} a second)",
        elapsed.as_secs_f64()
    );
    for (id, count) in &tally.moved {
        outln!("  from key id {id}: {count}");
    }
    if tally.skipped > 0 {
        outln!(
            "skipped {} (changed meanwhile: no secret any more, or already under key id {new})",
            tally.skipped
        );
    }
    let after = service
        .store()
        .count_sealed()
        .await
        .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
    print_counts(&after, &loaded, new);
    for error in &tally.errors {
        note(format_args!("failed: {error}"));
    }
    if let Some(fatal) = tally.fatal {
        return Err(Failure::Failed(fatal));
    }
    if tally.failed > 0 {
        return Err(Failure::Failed(format!(
            "{} customers could not be resealed; run the rotation again to retry them",
            tally.failed
        )));
    }
    let remaining: u64 = after
        .iter()
        .filter(|(id, _)| *id != new)
        .map(|(_, count)| count)
        .sum();
    if remaining > 0 {
        return Err(Failure::Failed(format!(
            "{remaining} secrets are still sealed under old keys: is a service still sealing with \
             one? Make key id {new} its active key, then run the rotation again"
        )));
    }
    Ok(())
}

/// One key id's customers, a page at a time.
async fn walk<S: Store, C: Clock>(
    service: &Service<S, C, StdRng>,
    id: KeyId,
    rotation: &Rotation,
    tally: &mut Tally,
    retry: &mut Vec<CustomerKey>,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let mut after: Option<CustomerKey> = None;
    loop {
        let page = service
            .store()
            .sealed_under(id, after.as_ref(), rotation.batch_size)
            .await
            .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        let mut outcomes =
            futures_util::stream::iter(&page)
                .map(|(org, customer)| async move {
                    (org, customer, service.reseal(org, customer).await)
                })
                .buffer_unordered(rotation.concurrency);
        while let Some((org, customer, outcome)) = outcomes.next().await {
            record(tally, org, customer, outcome, Some(retry));
            progress.advance(tally.moved_total());
        }
        // The rest of the page was finished (each reseal is a write of its own); the next page is
        // not begun.
        if tally.fatal.is_some() {
            return Ok(());
        }
        if !rotation.pause.is_zero() {
            tokio::time::sleep(rotation.pause).await;
        }
    }
}

fn record<E: core::error::Error + 'static>(
    tally: &mut Tally,
    org: &mfa_core::OrgId,
    customer: &mfa_core::CustomerId,
    outcome: Result<Resealed, ServiceError<E>>,
    retry: Option<&mut Vec<CustomerKey>>,
) {
    let who = format!("customer {customer} of organisation {org}");
    match outcome {
        Ok(Resealed::Moved { from, .. }) => *tally.moved.entry(from).or_default() += 1,
        // Nothing moved (already under the active key, no secret, or an outcome this version does
        // not know).
        Ok(_) => tally.skipped += 1,
        Err(ServiceError::Fault(Fault::Seal(error))) => {
            let message = match error {
                SealError::UnknownKey(id) => format!(
                    "the secret of {who} is sealed under key id {id}, which is not loaded: give \
                     its key file with --key-file"
                ),
                // Other secrets under this key id opened: the key is right, and this one record
                // was damaged or moved by hand. It fails alone; the rotation goes on.
                SealError::Forged(id) if tally.moved.get(&id).is_some_and(|&n| n > 0) => {
                    return tally.fail(format!(
                        "the secret of {who} does not open under key id {id}, though others \
                         sealed under it did: the record was damaged or altered (reset this \
                         customer)"
                    ));
                }
                SealError::Forged(id) => format!(
                    "the secret of {who} does not open under the loaded key id {id}: the key \
                     file given for key id {id} holds other key material than the key that sealed \
                     it (or the record was tampered with)"
                ),
                other => format!("the secret of {who} could not be opened: {other}"),
            };
            tally.failed += 1;
            tally.fatal.get_or_insert(message);
        }
        Err(ServiceError::Contended) => match retry {
            Some(retry) => retry.push((org.clone(), customer.clone())),
            None => tally.fail(format!(
                "{who}: the record kept changing under concurrent writes"
            )),
        },
        Err(error) => tally.fail(format!("{who}: {error}")),
    }
}

/// The secrets each key id seals, and which ids are loaded.
fn print_counts(counts: &[(KeyId, u64)], loaded: &[KeyId], active: KeyId) {
    out!("{}", status_table(counts, Some(loaded), Some(active)));
}

/// `keys status --format json`.
#[derive(Serialize)]
struct StatusJson {
    keys: Vec<KeyJson>,
}

#[derive(Serialize)]
struct KeyJson {
    id: u32,
    secrets: u64,
    /// Only when keys were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    loaded: Option<bool>,
}

/// `keys status`: the secrets each key id seals; with keys given, which ids are loaded.
pub(crate) async fn status<S: Store>(
    store: &S,
    loaded: Option<&[KeyId]>,
    format: Format,
) -> Result<(), Failure> {
    let counts = store
        .count_sealed()
        .await
        .map_err(|error| Failure::failed(format!("store: {}", crate::chain(&error))))?;
    match format {
        Format::Table => out!("{}", status_table(&counts, loaded, None)),
        Format::Json => {
            let keys: Vec<KeyJson> = rows(&counts, loaded)
                .into_iter()
                .map(|(id, secrets, loaded)| KeyJson {
                    id: id.get(),
                    secrets,
                    loaded,
                })
                .collect();
            let text = serde_json::to_string(&StatusJson { keys }).map_err(Failure::failed)?;
            outln!("{text}");
        }
    }
    Ok(())
}

/// Every key id that seals a secret, and every loaded one (sealing none), smallest first.
fn rows(counts: &[(KeyId, u64)], loaded: Option<&[KeyId]>) -> Vec<(KeyId, u64, Option<bool>)> {
    let mut ids: BTreeMap<KeyId, u64> = counts.iter().copied().collect();
    for id in loaded.unwrap_or_default() {
        ids.entry(*id).or_insert(0);
    }
    ids.into_iter()
        .map(|(id, count)| (id, count, loaded.map(|loaded| loaded.contains(&id))))
        .collect()
}

fn status_table(
    counts: &[(KeyId, u64)],
    loaded: Option<&[KeyId]>,
    active: Option<KeyId>,
) -> String {
    let mut lines = vec![match loaded {
        Some(_) => vec![
            "KEY ID".to_owned(),
            "SECRETS".to_owned(),
            "LOADED".to_owned(),
        ],
        None => vec!["KEY ID".to_owned(), "SECRETS".to_owned()],
    }];
    for (id, count, is_loaded) in rows(counts, loaded) {
        let mut line = vec![id.to_string(), count.to_string()];
        if let Some(is_loaded) = is_loaded {
            line.push(match (is_loaded, active == Some(id)) {
                (true, true) => "yes (new, active)".to_owned(),
                (true, false) => "yes".to_owned(),
                (false, _) => "no".to_owned(),
            });
        }
        lines.push(line);
    }
    if lines.len() == 1 {
        return "no secrets are stored\n".to_owned();
    }
    table(&lines)
}
