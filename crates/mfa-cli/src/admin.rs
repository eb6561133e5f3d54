//! `mfa admin`: an operator's actions on the store a service uses (SQLite or PostgreSQL), through
//! the same `mfa-core` service, so every rule and every audit event is the service's own.
//!
//! Input is read and checked before the database is opened: a bad id, time or key file is exit 2
//! and touches nothing.

mod audit;
mod keyfile;
mod output;
mod rotate;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use mfa_core::{
    Actor, CustomerId, KeyId, KeyRing, OrgId, OrgMfa, SealingKey, Service, Store, SystemClock,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use self::audit::{AuditFormat, Export};
use self::output::{Format, fields, rfc3339_or_dash};
use self::rotate::Rotation;
use crate::Failure;
use mfa_ops::database::{self, DatabaseUrl as Database, Missing, OpenError, OpenOptions};

const ROTATION_HELP: &str = "\
Rotating the sealing key, with no downtime:

  1. mfa admin keys generate --id 2 --out new.key
  2. Restart every service node with the new key loaded: it must open secrets sealed under key
     id 2 before the first one is resealed, and should seal new ones with it (the portal:
     --key-file new.key --previous-key-file portal.key).
  3. mfa admin keys rotate --new-key-file new.key --key-file portal.key
     (resumable: run it again after an interruption; safe while the service runs).
  4. mfa admin keys status: once key id 1 seals 0 secrets, the services may drop the old key.

Keep the old key loaded in the services until `keys status` shows 0 secrets under it.";

/// `mfa admin`.
#[derive(Args)]
#[command(after_long_help = "\
Exit status: 0 success; 1 not found, refused or failed; 2 bad usage or input (a bad URL, id, time \
or key file). Errors are one line on stderr.

Keys come from key files (`ID:KEY`, or a bare KEY for key id 1 as in the portal's portal.key; \
mode 0600) or from MFA_SEALING_KEY, never from an argument: it would show in `ps`.")]
pub(crate) struct AdminArgs {
    /// The service's database, as the service names it: sqlite://PATH (an existing file) or
    /// postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "MFA_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// The PostgreSQL schema that holds the MFA store [default: mfa, as the service's default].
    #[arg(long, global = true, value_name = "NAME")]
    schema: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// An organisation's MFA switch and settings.
    #[command(subcommand)]
    Org(OrgCommand),
    /// One customer's MFA.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Export an organisation's audit log, oldest first (streamed: any size, constant memory).
    Audit(AuditArgs),
    /// Sealing keys: status, rotation, new key files.
    #[command(subcommand, after_long_help = ROTATION_HELP)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Whether MFA is on, and the settings (an organisation never written shows the defaults, off).
    Show {
        /// The organisation id.
        org: String,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Switch MFA on: every customer must set it up at the next sign-in.
    Enable {
        /// The organisation id.
        org: String,
        /// Who did it, for the audit log [default: $USER].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Switch MFA off: customers who set it up keep being asked for a code until reset.
    Disable {
        /// The organisation id.
        org: String,
        /// Who did it, for the audit log [default: $USER].
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// The customer's state, since when configured, backup codes left, lockout. Never a secret. A
    /// customer with no MFA record is shown as unconfigured (exit 0): the store knows only customers
    /// who started MFA, not who exists.
    Show {
        /// The organisation id.
        org: String,
        /// The customer id.
        customer: String,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Erase the customer's MFA (lost phone, no backup codes): they set it up again at the next
    /// sign-in. Asks for confirmation on the terminal unless --yes; a customer with no MFA record
    /// is not found (exit 1).
    Reset {
        /// The organisation id.
        org: String,
        /// The customer id.
        customer: String,
        /// Who did it, for the audit log.
        #[arg(long, value_name = "NAME")]
        by: String,
        /// Do not ask. Required when stdin is not a terminal.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
struct AuditArgs {
    /// The organisation id.
    org: String,
    /// Only this customer's events.
    #[arg(long, value_name = "ID")]
    customer: Option<String>,
    /// Only events at or after this time (RFC 3339, such as 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    since: Option<String>,
    /// `table` for people; `jsonl` for machines: one object a line with seq, at (RFC 3339), org,
    /// customer, kind and the kind's fields in details, as the HTTP API shows them.
    #[arg(long, value_enum, default_value_t)]
    format: AuditFormat,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// How many stored secrets each key id seals; with keys given, which ids they are.
    Status {
        /// A key file, to mark its id as loaded (repeat for more; MFA_SEALING_KEY counts too).
        #[arg(long, value_name = "FILE")]
        key_file: Vec<PathBuf>,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Re-seal every stored secret under the new key. The running service must already hold
    /// the new key before this starts, and keep the old one until `keys status` shows 0 under it.
    #[command(after_long_help = ROTATION_HELP)]
    Rotate(RotateArgs),
    /// Write a fresh random key to a new file (mode 0600) as ID:KEY; never overwrites.
    Generate {
        /// The new key's id (1 to 4294967295): one that no key ever had.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        id: u32,
        /// The file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct RotateArgs {
    /// The new key's file: it becomes the active key, and every secret is sealed again under it.
    #[arg(long, value_name = "FILE")]
    new_key_file: PathBuf,
    /// An old key's file, to open what it sealed (repeat for more; MFA_SEALING_KEY counts too).
    #[arg(long, value_name = "FILE")]
    key_file: Vec<PathBuf>,
    /// Customers listed and resealed per batch.
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_size: u32,
    /// Reseals in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// A pause after each batch, in milliseconds, to spare a busy database.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pause_ms: u64,
}

/// Whether a reset asks before it acts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Confirm {
    /// Ask on the terminal, and act only on "yes".
    Ask,
    /// `--yes`: the operator confirmed on the command line.
    Given,
}

/// A command with its input read and checked.
enum Plan {
    OrgShow(OrgId, Format),
    OrgSet {
        org: OrgId,
        mfa: OrgMfa,
        by: Actor,
    },
    CustomerShow(OrgId, CustomerId, Format),
    CustomerReset {
        org: OrgId,
        customer: CustomerId,
        by: Actor,
        confirm: Confirm,
    },
    Audit(Export),
    KeysStatus(Option<Vec<KeyId>>, Format),
    /// With the keyring of the rotation: the new key active, the old ones to open what they sealed.
    Rotate(Rotation),
}

/// Runs `mfa admin`.
pub(crate) fn run(args: AdminArgs) -> Result<(), Failure> {
    let Some((plan, keys)) = plan(args.command)? else {
        return Ok(());
    };
    let url = args.database_url.ok_or_else(|| {
        Failure::Input("give the database with --database-url (or MFA_DATABASE_URL)".into())
    })?;
    let database = Database::parse(&url).map_err(|error| Failure::Input(error.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("starting the runtime: {error}")))?;
    runtime.block_on(async move {
        let options = OpenOptions::new()
            .missing(Missing::Refuse)
            .schema(args.schema);
        let store = database::open(&database, &options)
            .await
            .map_err(|error| match error {
                OpenError::Store { .. } | OpenError::Create { .. } => {
                    Failure::failed(crate::chain(&error))
                }
                // A mistyped path, a schema for SQLite: the command line is wrong.
                _ => Failure::Input(error.to_string()),
            })?;
        let store = Arc::new(store);
        let result = execute(Arc::clone(&store), keys, plan).await;
        if let Ok(store) = Arc::try_unwrap(store) {
            let _ = store.close().await;
        }
        result
    })
}

fn org_id(text: String) -> Result<OrgId, Failure> {
    OrgId::new(text).map_err(|error| Failure::Input(format!("organisation id: {error}")))
}

fn customer_id(text: String) -> Result<CustomerId, Failure> {
    CustomerId::new(text).map_err(|error| Failure::Input(format!("customer id: {error}")))
}

fn by_name(by: Option<String>) -> Result<Actor, Failure> {
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "mfa admin".to_owned());
    let by = by.trim();
    if by.is_empty() {
        return Err(Failure::Input("--by needs a name".into()));
    }
    Actor::new(by).map_err(|error| Failure::Input(format!("--by: {error}")))
}

/// Reads and checks everything a command takes, before the database is touched, with the keyring
/// it needs, if any; `None` for a command that needs no database and is done (`keys generate`).
fn plan(command: AdminCommand) -> Result<Option<(Plan, Option<KeyRing>)>, Failure> {
    Ok(Some((
        match command {
            AdminCommand::Org(OrgCommand::Show { org, format }) => {
                Plan::OrgShow(org_id(org)?, format)
            }
            AdminCommand::Org(OrgCommand::Enable { org, by }) => Plan::OrgSet {
                org: org_id(org)?,
                mfa: OrgMfa::On,
                by: by_name(by)?,
            },
            AdminCommand::Org(OrgCommand::Disable { org, by }) => Plan::OrgSet {
                org: org_id(org)?,
                mfa: OrgMfa::Off,
                by: by_name(by)?,
            },
            AdminCommand::Customer(CustomerCommand::Show {
                org,
                customer,
                format,
            }) => Plan::CustomerShow(org_id(org)?, customer_id(customer)?, format),
            AdminCommand::Customer(CustomerCommand::Reset {
                org,
                customer,
                by,
                yes,
            }) => {
                if !yes && !std::io::stdin().is_terminal() {
                    return Err(Failure::Input(
                        "a reset needs confirmation and stdin is not a terminal: add --yes".into(),
                    ));
                }
                Plan::CustomerReset {
                    org: org_id(org)?,
                    customer: customer_id(customer)?,
                    by: by_name(Some(by))?,
                    confirm: if yes { Confirm::Given } else { Confirm::Ask },
                }
            }
            AdminCommand::Audit(args) => Plan::Audit(Export {
                org: org_id(args.org)?,
                customer: args.customer.map(customer_id).transpose()?,
                since: args
                    .since
                    .as_deref()
                    .map(output::parse_rfc3339)
                    .transpose()
                    .map_err(|error| Failure::Input(format!("--since: {error}")))?,
                format: args.format,
            }),
            AdminCommand::Keys(KeysCommand::Status { key_file, format }) => {
                let keys = keyfile::read_all(&key_file)?;
                let loaded =
                    (!keys.is_empty()).then(|| keys.iter().map(|key| key.id()).collect::<Vec<_>>());
                Plan::KeysStatus(loaded, format)
            }
            AdminCommand::Keys(KeysCommand::Rotate(args)) => {
                let new = keyfile::read(&args.new_key_file)?;
                let mut ring = KeyRing::new(new.sealing_key());
                for old in keyfile::read_all(&args.key_file)? {
                    if old.id() == new.id() {
                        if old.same_as(&new) {
                            continue;
                        }
                        return Err(Failure::Input(format!(
                            "{} and the new key file {} hold different keys under the same key id {}",
                            old.source(),
                            new.source(),
                            new.id()
                        )));
                    }
                    ring.add(old.sealing_key())
                        .map_err(|error| Failure::Input(error.to_string()))?;
                }
                let rotation = Rotation {
                    batch_size: args.batch_size as usize,
                    concurrency: args.concurrency as usize,
                    pause: Duration::from_millis(args.pause_ms),
                };
                return Ok(Some((Plan::Rotate(rotation), Some(ring))));
            }
            AdminCommand::Keys(KeysCommand::Generate { id, out }) => {
                keyfile::generate(id, &out)?;
                return Ok(None);
            }
        },
        None,
    )))
}

/// A keyring for the commands that never seal or open a secret (org, customer show and reset,
/// audit, keys status): `Service` needs one, and these take no key, so that an operator who may
/// reset customers need not hold the key that opens every secret. A fresh random key that is
/// written nowhere and dies with the process: no operation of these can use it, and if one ever
/// did, what it sealed would open nowhere rather than under a key that exists elsewhere.
fn throwaway_keys() -> KeyRing {
    KeyRing::new(SealingKey::generate(KeyId::new(u32::MAX), &mut rand::rng()))
}

async fn execute<S: Store>(store: S, keys: Option<KeyRing>, plan: Plan) -> Result<(), Failure> {
    let keys = keys.unwrap_or_else(throwaway_keys);
    let service = Service::new(store, SystemClock, keys, StdRng::from_rng(&mut rand::rng()));
    match plan {
        Plan::OrgShow(org, format) => org_show(&service, &org, format).await,
        Plan::OrgSet { org, mfa, by } => {
            service
                .set_org_mfa(&org, mfa, &by)
                .await
                .map_err(service_failure)?;
            outln!(
                "MFA is now {} for organisation {org}",
                if mfa == OrgMfa::On { "on" } else { "off" }
            );
            Ok(())
        }
        Plan::CustomerShow(org, customer, format) => {
            customer_show(&service, &org, &customer, format).await
        }
        Plan::CustomerReset {
            org,
            customer,
            by,
            confirm,
        } => customer_reset(&service, &org, &customer, &by, confirm).await,
        Plan::Audit(export) => audit::export(service.store(), export).await,
        Plan::KeysStatus(loaded, format) => {
            rotate::status(service.store(), loaded.as_deref(), format).await
        }
        Plan::Rotate(rotation) => rotate::rotate(&service, &rotation).await,
    }
}

type AdminService<S> = Service<S, SystemClock, StdRng>;

/// A failed service call, with its causes (a corrupt record names whose it is).
fn service_failure<E: core::error::Error + 'static>(error: mfa_core::ServiceError<E>) -> Failure {
    Failure::Failed(crate::chain(&error))
}

/// `org show --format json`.
#[derive(Serialize)]
struct OrgJson<'a> {
    org: &'a str,
    /// Whether the organisation's policy was ever written (else these are the defaults).
    stored: bool,
    enabled: bool,
    issuer: &'a str,
    algorithm: &'static str,
    digits: u8,
    period: u64,
    window: WindowJson,
    drift_learning: bool,
    enrollment_lifetime_secs: u64,
    backup_code_count: u8,
    lockout: LockoutJson,
    step_up_max_age_secs: u64,
}

#[derive(Serialize)]
struct WindowJson {
    behind: u8,
    ahead: u8,
}

#[derive(Serialize)]
struct LockoutJson {
    free_failures: u32,
    base_delay_secs: u64,
    max_delay_secs: u64,
}

/// `customer show --format json`: the HTTP API's admin view of a customer, with times as RFC 3339.
#[derive(Serialize)]
struct CustomerJson<'a> {
    org: &'a str,
    customer: &'a str,
    /// Whether the store has an MFA record for the customer.
    stored: bool,
    state: &'static str,
    org_enabled: bool,
    configured_since: Option<String>,
    backup_codes_remaining: u32,
    locked_until: Option<String>,
    failures: u32,
}

fn print_json(value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string(value).map_err(Failure::failed)?;
    outln!("{text}");
    Ok(())
}

/// `1 step`, `2 steps`.
fn steps(n: u8) -> String {
    if n == 1 {
        "1 step".to_owned()
    } else {
        format!("{n} steps")
    }
}

async fn org_show<S: Store>(
    service: &AdminService<S>,
    org: &OrgId,
    format: Format,
) -> Result<(), Failure> {
    let stored = service.stored_policy(org).await.map_err(service_failure)?;
    let is_stored = stored.is_some();
    let policy = stored.unwrap_or_default();
    let settings = policy.settings();
    let totp = &settings.totp;
    let lockout = &settings.lockout;
    match format {
        Format::Json => print_json(&OrgJson {
            org: org.as_str(),
            stored: is_stored,
            enabled: policy.enabled(),
            issuer: &settings.issuer,
            algorithm: totp.algorithm().name(),
            digits: totp.digits().get(),
            period: totp.period().as_secs(),
            window: WindowJson {
                behind: settings.window.behind(),
                ahead: settings.window.ahead(),
            },
            drift_learning: settings.drift_learning,
            enrollment_lifetime_secs: settings.enrollment_lifetime_secs,
            backup_code_count: settings.backup_code_count,
            lockout: LockoutJson {
                free_failures: lockout.free_failures,
                base_delay_secs: lockout.base_delay_secs,
                max_delay_secs: lockout.max_delay_secs,
            },
            step_up_max_age_secs: settings.step_up_max_age_secs,
        })?,
        Format::Table => out!(
            "{}",
            fields(&[
                ("organisation", org.to_string()),
                (
                    "mfa",
                    match (policy.enabled(), is_stored) {
                        (true, _) => "on".to_owned(),
                        (false, true) => "off".to_owned(),
                        (false, false) => "off (never switched on: default settings)".to_owned(),
                    }
                ),
                ("issuer", settings.issuer.clone()),
                (
                    "totp",
                    format!(
                        "{}, {} digits, {} s",
                        totp.algorithm().name(),
                        totp.digits().get(),
                        totp.period().as_secs()
                    )
                ),
                (
                    "window",
                    format!(
                        "{} behind, {} ahead{}",
                        steps(settings.window.behind()),
                        steps(settings.window.ahead()),
                        if settings.drift_learning {
                            ", learning drift"
                        } else {
                            ""
                        }
                    )
                ),
                (
                    "enrollment",
                    format!("confirm within {} s", settings.enrollment_lifetime_secs)
                ),
                ("backup codes", settings.backup_code_count.to_string()),
                (
                    "lockout",
                    format!(
                        "after {} failures, {} s doubling to {} s",
                        lockout.free_failures, lockout.base_delay_secs, lockout.max_delay_secs
                    )
                ),
                (
                    "step-up",
                    format!(
                        "a code from the last {} s before sensitive changes",
                        settings.step_up_max_age_secs
                    )
                ),
            ])
        ),
    }
    Ok(())
}

async fn customer_show<S: Store>(
    service: &AdminService<S>,
    org: &OrgId,
    customer: &CustomerId,
    format: Format,
) -> Result<(), Failure> {
    let report = service
        .status(org, customer)
        .await
        .map_err(service_failure)?;
    let (status, stored) = (report.customer, report.stored);
    let org_enabled = report.org_mfa == OrgMfa::On;
    match format {
        Format::Json => print_json(&CustomerJson {
            org: org.as_str(),
            customer: customer.as_str(),
            stored,
            state: status.state.as_str(),
            org_enabled,
            configured_since: status.configured_since.map(output::rfc3339),
            backup_codes_remaining: status.backup_codes_remaining,
            locked_until: status.locked_until.map(output::rfc3339),
            failures: status.failures,
        })?,
        Format::Table => {
            let state = if stored {
                status.state.as_str().to_owned()
            } else {
                format!("{} (no MFA record)", status.state.as_str())
            };
            out!(
                "{}",
                fields(&[
                    ("organisation", org.to_string()),
                    ("customer", customer.to_string()),
                    ("state", state),
                    ("configured since", rfc3339_or_dash(status.configured_since)),
                    (
                        "backup codes left",
                        status.backup_codes_remaining.to_string()
                    ),
                    (
                        "locked until",
                        status
                            .locked_until
                            .map_or_else(|| "not locked".to_owned(), output::rfc3339)
                    ),
                    ("failures", status.failures.to_string()),
                    ("org MFA", if org_enabled { "on" } else { "off" }.to_owned()),
                ])
            );
        }
    }
    Ok(())
}

async fn customer_reset<S: Store>(
    service: &AdminService<S>,
    org: &OrgId,
    customer: &CustomerId,
    by: &Actor,
    confirm: Confirm,
) -> Result<(), Failure> {
    // A mistyped id must not write a record (and an audit event) for a customer who never had MFA:
    // the service refuses it (`Refusal::NotFound`), as it does for every adapter.
    let not_found = || {
        Failure::Failed(format!(
            "customer {customer} of organisation {org} has no MFA record: nothing to reset"
        ))
    };
    if confirm == Confirm::Ask {
        let status = service
            .status(org, customer)
            .await
            .map_err(service_failure)?
            .customer;
        let mut stderr = std::io::stderr();
        let _ = write!(
            stderr,
            "Reset MFA of customer {customer} of organisation {org} ({}, {} backup codes left)?\n\
             Their authenticator and backup codes stop working; they set up MFA again at the next \
             sign-in.\nType yes to reset: ",
            status.state.as_str(),
            status.backup_codes_remaining
        );
        let _ = stderr.flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|error| Failure::Input(format!("reading the answer: {error}")))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y") {
            return Err(Failure::Failed("not confirmed: nothing was reset".into()));
        }
    }
    service
        .reset(org, customer, by)
        .await
        .map_err(|error| match error.refusal() {
            Some(mfa_core::Refusal::NotFound) => not_found(),
            _ => service_failure(error),
        })?;
    outln!(
        "reset customer {customer} of organisation {org}: MFA is unconfigured until they set it up again"
    );
    Ok(())
}
