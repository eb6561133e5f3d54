//! `mfa`: one-time codes, their verification, otpauth key URIs and QR codes, from the command line;
//! and `mfa admin`, an operator's actions on the SQLite or PostgreSQL store a service uses (switch
//! MFA on or off, show or reset a customer, export the audit log, rotate the sealing key).
//!
//! A tool for operators and for checking interoperability with other implementations. Exit status:
//! 0 success, 1 a rejected code (or, for `mfa admin`, not found, refused or failed), 2 bad usage or
//! input, always with a one-line error on stderr.

/// `println!` that never panics: see [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics: see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod admin;
mod files;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use mfa_core::{
    UnixTime,
    otp::{Algorithm, Digits, Period, Secret, Totp, VerifyError, Window, hotp},
    uri::{KeyUri, OtpKind},
};
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "mfa",
    version,
    about = "TOTP/HOTP codes, verification, otpauth key URIs and QR codes; MFA administration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the current one-time code of a secret or key URI.
    Code(CodeArgs),
    /// Check a code: print the matched time step and exit 0, or exit 1 when it is rejected.
    Verify(VerifyArgs),
    /// Build an otpauth key URI (with a fresh secret unless one is given), or parse one to JSON.
    Uri(UriArgs),
    /// Render a key URI as a QR code: an SVG or PNG file, or text in the terminal.
    Qr(QrArgs),
    /// Act on a service's MFA store: organisations, customers, the audit log, sealing keys.
    Admin(admin::AdminArgs),
}

/// Where the key and its parameters come from.
#[derive(Args)]
#[command(group(ArgGroup::new("key").required(true).args(["secret", "uri"])))]
struct Key {
    /// The secret in base32 (case, spaces, dashes and padding are ignored); `-` reads it from stdin.
    #[arg(long, value_name = "BASE32")]
    secret: Option<String>,
    /// An otpauth:// key URI to take the secret and every parameter from; `-` reads it from stdin.
    #[arg(long, value_name = "OTPAUTH-URI", conflicts_with_all = ["algorithm", "digits", "period"])]
    uri: Option<String>,
    #[command(flatten)]
    params: Params,
}

/// TOTP parameters for a secret given on its own.
#[derive(Args)]
struct Params {
    /// The HMAC algorithm [default: sha1].
    #[arg(long, value_enum)]
    algorithm: Option<AlgorithmArg>,
    /// The number of digits of a code [default: 6].
    #[arg(long, value_parser = clap::value_parser!(u8).range(6..=8))]
    digits: Option<u8>,
    /// The time step in seconds, 1 to 120 [default: 30].
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    period: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Args)]
struct CodeArgs {
    #[command(flatten)]
    key: Key,
    /// The time as seconds since the Unix epoch [default: now].
    #[arg(long, value_name = "UNIX")]
    time: Option<u64>,
    /// Print the HOTP code at this counter instead of a TOTP code (for an hotp URI, its counter is the
    /// default).
    #[arg(long, conflicts_with = "time")]
    counter: Option<u64>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    key: Key,
    /// The code as typed (spaces allowed).
    #[arg(long)]
    code: String,
    /// The time as seconds since the Unix epoch [default: now].
    #[arg(long, value_name = "UNIX")]
    time: Option<u64>,
    /// How many steps either side of the current one to accept, 0 to 10.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(Window::MAX_SKEW)))]
    window: u8,
}

#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["parse", "account"])))]
struct UriArgs {
    /// Parse this URI and print its fields as JSON, instead of building one.
    #[arg(long, value_name = "URI", conflicts_with_all = ["issuer", "account", "secret", "algorithm", "digits", "period"])]
    parse: Option<String>,
    /// The service name shown in the app.
    #[arg(long, requires = "account")]
    issuer: Option<String>,
    /// The account name, usually an email address.
    #[arg(long)]
    account: Option<String>,
    /// The secret in base32 [default: a fresh random one of the algorithm's HMAC length]; `-` reads it
    /// from stdin.
    #[arg(long, value_name = "BASE32")]
    secret: Option<String>,
    #[command(flatten)]
    params: Params,
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["output", "terminal"])))]
struct QrArgs {
    /// The otpauth:// URI to encode (it is checked first, then encoded exactly as given); `-` reads it
    /// from stdin.
    uri: String,
    /// Write the QR code to this file; `.svg` or `.png` picks the format. Created readable by the owner
    /// only, since it holds the secret; an existing FILE is refused unless --force.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace an existing FILE: with a new file of mode 0600 (a symlink is replaced, not followed).
    #[arg(long, conflicts_with = "terminal")]
    force: bool,
    /// Draw the QR code in the terminal instead.
    #[arg(long)]
    terminal: bool,
}

/// A failure, and the exit status it maps to.
enum Failure {
    /// The code was checked and refused: exit 1.
    Rejected(String),
    /// Not found, refused, or failed (`mfa admin`): exit 1.
    Failed(String),
    /// Bad input: exit 2.
    Input(String),
}

impl Failure {
    fn input(error: impl std::fmt::Display) -> Self {
        Self::Input(error.to_string())
    }

    fn failed(error: impl std::fmt::Display) -> Self {
        Self::Failed(error.to_string())
    }
}

/// Writes to standard output. `println!` panics when that fails; here a reader that went away
/// (`mfa admin audit ... | head`) ends the program quietly, as `head` expects, and any other failure
/// (a full disk) ends it with a one-line error and exit status 1.
fn write_stdout(text: std::fmt::Arguments<'_>) {
    if let Err(error) = std::io::stdout().lock().write_fmt(text) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("mfa: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// An error and its causes, outermost first, as `what failed: why: why`: each error names its own
/// step once and hands its cause out as its source.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The message on one line: a database's error text may span several.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with 2.
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected(message)) => {
            eprintln!("mfa: rejected: {}", one_line(&message));
            ExitCode::from(1)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("mfa: {}", one_line(&message));
            ExitCode::from(1)
        }
        Err(Failure::Input(message)) => {
            eprintln!("mfa: error: {}", one_line(&message));
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Code(args) => code(args),
        Command::Verify(args) => verify(args),
        Command::Uri(args) => uri(args),
        Command::Qr(args) => qr(args),
        Command::Admin(args) => admin::run(args),
    }
}

fn code(args: CodeArgs) -> Result<(), Failure> {
    let (secret, setup) = args.key.resolve()?;
    let code = match (setup, args.counter) {
        (
            Setup::Hotp {
                algorithm,
                digits,
                counter,
            },
            None,
        ) => hotp(algorithm, digits, &secret, counter),
        (
            Setup::Hotp {
                algorithm, digits, ..
            },
            Some(counter),
        ) => hotp(algorithm, digits, &secret, counter),
        (Setup::Totp(totp), Some(counter)) => {
            hotp(totp.algorithm(), totp.digits(), &secret, counter)
        }
        (Setup::Totp(totp), None) => totp
            .generate(&secret, time_or_now(args.time)?)
            .map_err(Failure::input)?,
    };
    outln!("{code}");
    Ok(())
}

fn verify(args: VerifyArgs) -> Result<(), Failure> {
    let (secret, setup) = args.key.resolve()?;
    let Setup::Totp(totp) = setup else {
        return Err(Failure::Input(
            "verify checks TOTP codes; this is an hotp URI".into(),
        ));
    };
    let window = Window::symmetric(args.window).map_err(Failure::input)?;
    match totp.verify(&secret, &args.code, time_or_now(args.time)?, window) {
        Ok(matched) => {
            outln!(
                "matched step {} (offset {:+})",
                matched.step,
                matched.offset
            );
            Ok(())
        }
        Err(error @ (VerifyError::InvalidCode(_) | VerifyError::NoMatch)) => {
            Err(Failure::Rejected(error.to_string()))
        }
        Err(error) => Err(Failure::input(error)),
    }
}

fn uri(args: UriArgs) -> Result<(), Failure> {
    if let Some(text) = args.parse {
        let uri = KeyUri::parse(&text).map_err(Failure::input)?;
        outln!("{}", fields_json(&uri));
        return Ok(());
    }
    let totp = args.params.totp();
    let secret = match args.secret {
        Some(text) => read_secret(text)?,
        None => Secret::generate(totp.algorithm(), &mut rand::rng()),
    };
    secret.check_enrollable().map_err(Failure::input)?;
    let account = args.account.unwrap_or_default();
    let uri = KeyUri::totp(
        args.issuer.as_deref().unwrap_or(""),
        &account,
        secret,
        &totp,
    )
    .map_err(Failure::input)?;
    outln!("{}", uri.to_uri_string().as_str());
    Ok(())
}

fn qr(args: QrArgs) -> Result<(), Failure> {
    let uri = arg_or_stdin(args.uri, "key URI")?;
    let text = uri.trim();
    KeyUri::parse(text).map_err(Failure::input)?;
    let code = QrCode::with_error_correction_level(text, EcLevel::M).map_err(Failure::input)?;
    if args.terminal {
        use qrcode::render::unicode::Dense1x2;
        // Inverted glyphs, so the code reads right on the usual light-on-dark terminal.
        let text = Zeroizing::new(
            code.render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build(),
        );
        outln!("{}", text.as_str());
        return Ok(());
    }
    let Some(path) = args.output else {
        return Err(Failure::Input("give --output FILE or --terminal".into()));
    };
    let existing = if args.force {
        files::Existing::Replace
    } else {
        files::Existing::Refuse
    };
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => {
            let svg = mfa_core::uri::qr_svg(text).map_err(Failure::input)?;
            files::write_private(&path, existing, |out| out.write_all(svg.as_bytes()))
        }
        Some("png") => files::write_private(&path, existing, |out| write_png(&code, out)),
        _ => Err(Failure::Input(format!(
            "{}: the file name must end in .svg or .png",
            path.display()
        ))),
    }
}

/// The key's parameters, from a URI or from the command-line options.
enum Setup {
    Totp(Totp),
    Hotp {
        algorithm: Algorithm,
        digits: Digits,
        counter: u64,
    },
}

impl Key {
    fn resolve(self) -> Result<(Secret, Setup), Failure> {
        if let Some(text) = self.uri {
            let text = arg_or_stdin(text, "key URI")?;
            let uri = KeyUri::parse(&text).map_err(Failure::input)?;
            let setup = match uri.kind() {
                OtpKind::Totp { period } => {
                    Setup::Totp(Totp::new(uri.algorithm(), uri.digits(), period))
                }
                OtpKind::Hotp { counter } => Setup::Hotp {
                    algorithm: uri.algorithm(),
                    digits: uri.digits(),
                    counter,
                },
            };
            return Ok((uri.secret().clone(), setup));
        }
        // clap's group makes one of the two present.
        let text = self.secret.unwrap_or_default();
        Ok((read_secret(text)?, Setup::Totp(self.params.totp())))
    }
}

impl Params {
    fn totp(&self) -> Totp {
        let algorithm = match self.algorithm {
            None | Some(AlgorithmArg::Sha1) => Algorithm::Sha1,
            Some(AlgorithmArg::Sha256) => Algorithm::Sha256,
            Some(AlgorithmArg::Sha512) => Algorithm::Sha512,
        };
        // clap has checked the ranges; the fallbacks are never taken.
        let digits = self
            .digits
            .and_then(|n| Digits::new(n).ok())
            .unwrap_or_default();
        let period = self
            .period
            .and_then(|s| Period::new(s).ok())
            .unwrap_or_default();
        Totp::new(algorithm, digits, period)
    }
}

/// A base32 secret from the argument, or from the first line of stdin for `-`.
fn read_secret(text: String) -> Result<Secret, Failure> {
    let text = arg_or_stdin(text, "secret")?;
    Secret::from_base32(&text).map_err(Failure::input)
}

/// The argument, or for `-` the first line of stdin without surrounding whitespace: a secret or a
/// key URI piped in does not show in `ps`. Either way it is kept in a zeroizing buffer. `what` names
/// the value when stdin holds none.
fn arg_or_stdin(text: String, what: &str) -> Result<Zeroizing<String>, Failure> {
    let text = Zeroizing::new(text);
    if *text != "-" {
        return Ok(text);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Failure::Input(format!("cannot read the {what} from stdin: {error}")))?;
    let value = line.trim();
    if value.is_empty() {
        return Err(Failure::Input(format!(
            "no {what} on stdin (`-` reads it from the first line)"
        )));
    }
    Ok(Zeroizing::new(value.to_owned()))
}

fn time_or_now(time: Option<u64>) -> Result<UnixTime, Failure> {
    match time {
        Some(secs) => Ok(UnixTime::from_secs(secs)),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| UnixTime::from_secs(elapsed.as_secs()))
            .map_err(|_| Failure::Input("the system clock is before 1970".into())),
    }
}

fn fields_json(uri: &KeyUri) -> serde_json::Value {
    let mut fields = serde_json::json!({
        "type": match uri.kind() { OtpKind::Totp { .. } => "totp", OtpKind::Hotp { .. } => "hotp" },
        "issuer": uri.issuer(),
        "account": uri.account(),
        "secret": uri.secret().to_base32().as_str(),
        "algorithm": uri.algorithm().name(),
        "digits": uri.digits().get(),
    });
    match uri.kind() {
        OtpKind::Totp { period } => fields["period"] = period.as_secs().into(),
        OtpKind::Hotp { counter } => fields["counter"] = counter.into(),
    }
    fields
}

/// A greyscale PNG of the code: 8 pixels a module, with the 4-module quiet zone the standard asks for.
fn write_png(code: &QrCode, out: &mut impl Write) -> std::io::Result<()> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![0xffu8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = ((i % modules + QUIET) * SCALE, (i / modules + QUIET) * SCALE);
            for row in pixels.chunks_exact_mut(side).skip(y).take(SCALE) {
                row[x..x + SCALE].fill(0);
            }
        }
    }
    let side = u32::try_from(side).map_err(std::io::Error::other)?;
    let mut encoder = png::Encoder::new(out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer
        .write_image_data(&pixels)
        .map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}
