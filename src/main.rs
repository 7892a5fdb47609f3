//! The `portcullis` command line: argument parsing and exit codes only; the work is in the library.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::clicklog::{ClickQuery, read_clicks};
use portcullis::config::Config;
use portcullis::rewrite::{MessageContext, Report, Rewriter};
use portcullis::token::{KeyRing, LinkError, unwrap_foreign};

// The click service allocates a little per request; mimalloc keeps that off the profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Email security gateway: URL Defense link rewriting"
)]
struct Cli {
    /// TOML configuration file (every setting has a default).
    #[arg(long, short, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (keys, stores); overrides `data_dir` in the config.
    #[arg(long, global = true, env = "PORTCULLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrite the links of one RFC 5322 message: stdin to stdout, report on stderr.
    Rewrite {
        /// The recipient this copy is for (links carry a keyed pseudonym of it).
        #[arg(long)]
        recipient: Option<String>,
        /// Message reference bound into the links (default: a random one).
        #[arg(long)]
        message_ref: Option<String>,
        /// Report format on stderr.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        report: ReportFormat,
    },
    /// Decode links (ours and foreign wrappers); exits non-zero if any is invalid.
    Decode {
        #[arg(required = true)]
        links: Vec<String>,
        /// One JSON object per link instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Manage the signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Run the click service (HTTP on loopback by default, keys and click log in the data directory).
    Serve {
        /// Listen address; overrides `click.listen` (`127.0.0.1:0` picks a free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Read the click log (works whether or not the server runs).
    Clicks {
        /// How many clicks, newest first (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only clicks on links of this message reference.
        #[arg(long)]
        message_ref: Option<String>,
        /// Only clicks with this action (permitted, blocked, warned, clicked-through, prefetch, rejected, expired).
        #[arg(long)]
        action: Option<String>,
        /// One JSON object per click.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create the key ring if needed and add a key that verifies but does not sign yet.
    Generate,
    /// List keys and their states.
    List,
    /// Add a key and make it the signing key; the previous one keeps verifying.
    Rotate,
    /// Retire a key: its links answer "link expired".
    Retire { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Command::Rewrite {
            recipient,
            message_ref,
            report,
        } => rewrite(&config, recipient, message_ref, report),
        Command::Decode { links, json } => decode(&config, &links, json),
        Command::Keys { action } => keys(&config.data_dir, action),
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                config.click.listen = listen;
            }
            init_logging(config.click.json_logs);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(portcullis::serve::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Clicks {
            limit,
            message_ref,
            action,
            json,
        } => {
            let query = ClickQuery {
                limit,
                message_ref,
                action,
            };
            for click in read_clicks(&config.data_dir, &query)? {
                if json {
                    println!("{}", serde_json::to_string(&click)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        click.at_ms,
                        click.action.as_str(),
                        if click.verdict.is_empty() {
                            "-"
                        } else {
                            click.verdict.as_str()
                        },
                        click.client_ip,
                        click.url
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn open_keys(data_dir: &Path) -> anyhow::Result<KeyRing> {
    Ok(KeyRing::open_or_create(data_dir)?)
}

fn rewrite(
    config: &Config,
    recipient: Option<String>,
    message_ref: Option<String>,
    format: ReportFormat,
) -> anyhow::Result<ExitCode> {
    let keys = open_keys(&config.data_dir)?;
    let rewriter = Rewriter::new(keys, &config.links.base_url, config.rewrite.clone());
    let mut message = Vec::new();
    std::io::stdin()
        .read_to_end(&mut message)
        .context("reading the message from stdin")?;
    let message_ref = message_ref.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let context = MessageContext {
        message_ref: message_ref.into_bytes(),
        recipient,
        issued_at,
        flags: 0,
    };
    let rewritten = rewriter.rewrite(&message, &context)?;
    std::io::stdout()
        .write_all(&rewritten.message)
        .context("writing the message to stdout")?;
    std::io::stdout().flush()?;
    let report = match format {
        ReportFormat::Json => serde_json::to_string(&rewritten.report)?,
        ReportFormat::Text => text_report(&rewritten.report),
    };
    eprintln!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn text_report(report: &Report) -> String {
    let mut out = format!(
        "links: {} found, {} rewritten, {} foreign wrappers; text parts: {} ({} changed)",
        report.links_found, report.links_rewritten, report.foreign_wrappers, report.text_parts, report.parts_rewritten
    );
    for (reason, count) in &report.links_skipped {
        out.push_str(&format!("\nskipped {count}: {}", reason.as_str()));
    }
    if let Some(partial) = report.partial_header_value() {
        out.push_str(&format!("\nPARTIAL: {partial}"));
    }
    out
}

fn decode(config: &Config, links: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let keys = open_keys(&config.data_dir)?;
    let mut all_valid = true;
    for link in links {
        // Foreign wrappers first: Proofpoint v1 links also have `/v1/` in their path.
        let (line, valid) = if let Some(foreign) = unwrap_foreign(link) {
            let line = if json {
                serde_json::json!({"link": link, "valid": true, "destination": foreign.inner,
                    "signature": "foreign, not checked", "vendor": foreign.vendor.name(), "layers": foreign.layers})
                .to_string()
            } else {
                format!(
                    "{}\tforeign={} (signature not checked)",
                    foreign.inner,
                    foreign.vendor.name()
                )
            };
            (line, true)
        } else {
            match keys.verify(link) {
                Ok(verified) => {
                    let line = if json {
                        serde_json::json!({"link": link, "valid": true, "destination": verified.url, "signature": "verified",
                            "key_id": verified.key_id, "message_ref": String::from_utf8_lossy(&verified.context.message_ref),
                            "recipient_ref": hex(&verified.context.recipient_ref), "issued_at": verified.context.issued_at,
                            "flags": verified.context.flags})
                        .to_string()
                    } else {
                        format!("{}\tverified key={}", verified.url, verified.key_id)
                    };
                    (line, true)
                }
                Err(LinkError::NotOurs) => (
                    invalid_line(link, "not a Portcullis link or a known foreign wrapper", json),
                    false,
                ),
                Err(error) => (invalid_line(link, &error.to_string(), json), false),
            }
        };
        all_valid &= valid;
        println!("{line}");
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn invalid_line(link: &str, reason: &str, json: bool) -> String {
    if json {
        serde_json::json!({"link": link, "valid": false, "error": reason}).to_string()
    } else {
        format!("INVALID\t{reason}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keys(data_dir: &Path, action: KeysAction) -> anyhow::Result<ExitCode> {
    let mut ring = open_keys(data_dir)?;
    match action {
        KeysAction::Generate => {
            let key = ring.generate()?;
            println!("generated key {} ({})", key.id, key.state);
        }
        KeysAction::Rotate => {
            let key = ring.rotate()?;
            println!(
                "key {} is now active; earlier keys keep verifying until retired",
                key.id
            );
        }
        KeysAction::Retire { id } => {
            if ring.get(&id).is_none() {
                bail!("no key with id {id:?}");
            }
            ring.retire(&id)?;
            println!("key {id} retired: its links now answer \"link expired\"");
        }
        KeysAction::List => {}
    }
    println!("{:<8} {:<10} created", "id", "state");
    for key in ring.keys() {
        println!("{:<8} {:<10} {}", key.id, key.state.to_string(), key.created);
    }
    Ok(ExitCode::SUCCESS)
}
