//! The `portcullis` command line: argument parsing and exit codes only; the work is in the library.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use portcullis::audit::Actor;
use portcullis::clicklog::{ClickQuery, read_clicks};
use portcullis::config::Config;
use portcullis::delivery::Delivery;
use portcullis::pipeline::{ArcKey, RenderPlan, Renderer, hex};
use portcullis::quarantine::HeldCopy;
use portcullis::rewrite::{MessageContext, Report, Rewriter};
use portcullis::store::Store;
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
        #[arg(long, env = "PORTCULLIS_LISTEN")]
        listen: Option<String>,
        /// SMTP gateway listen address; overrides `smtp.listen` (`off` turns the gateway off).
        #[arg(long, env = "PORTCULLIS_SMTP_LISTEN")]
        smtp_listen: Option<String>,
        /// Admin listener (`/metrics`, the HTTP API); overrides `admin.listen` (`off` turns it off).
        #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Milter listener (`inet:host:port`, `unix:/path`); overrides `milter.listen` (`off`).
        #[arg(long, env = "PORTCULLIS_MILTER_LISTEN")]
        milter_listen: Option<String>,
    },
    /// API tokens for the HTTP API (`/api/v1/scan`, `/api/v1/rewrite`).
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// People who sign in to the console and the admin API (argon2id passwords, roles).
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Content filter for an MTA: one message on stdin, handed to the running server's
    /// `/api/v1/rewrite`, the copy reinjected with `sendmail -G -i` (or written to stdout).
    /// Exit status: 0 done, 65 refused for good (the MTA bounces), 75 try again later.
    Filter(FilterArgs),
    /// The delivery queue (works whether or not the server runs).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Held messages (works whether or not the server runs).
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// The message index: what arrived, the symbols found and the verdict.
    Messages {
        /// How many, newest first (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        message_ref: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<MessagesAction>,
    },
    /// Analyse one message (stdin) and decide as the gateway would, delivering nothing: the
    /// verdict, the scores and every symbol with its weight and what triggered it.
    Scan {
        /// Envelope sender (default: the From address).
        #[arg(long)]
        from: Option<String>,
        /// Envelope recipients (default: recipient@<first smtp.domains entry>).
        #[arg(long)]
        to: Vec<String>,
        /// The client address the message came from.
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        /// The client's HELO name.
        #[arg(long, default_value = "localhost")]
        helo: String,
        /// No DNS: skip SPF, DKIM, DMARC and ARC.
        #[arg(long)]
        offline: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// List every registered symbol with its group and default weight, and exit.
        #[arg(long)]
        symbols: bool,
    },
    /// Train the spam classifier from labelled mail (directories of .eml files, maildirs, mbox
    /// files) and write the model to the data directory; a running gateway picks it up within a
    /// second, without a restart.
    Train(TrainArgs),
    /// Exit 0 when the running server answers: its admin listener's `/healthz` over HTTP and,
    /// when given, the SMTP gateway's greeting (for container and service-manager health checks).
    Healthcheck {
        /// The admin listener (`admin.listen`).
        #[arg(long, default_value = "127.0.0.1:8026")]
        admin: String,
        /// The SMTP gateway (`smtp.listen`), checked for a 220 greeting.
        #[arg(long)]
        smtp: Option<String>,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
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
enum TokensAction {
    /// Issue a token and print it (the only time it is shown; only its hash is kept).
    Add {
        name: String,
        /// scan (the hook calls only), viewer, operator or admin.
        #[arg(long, default_value = "scan")]
        role: String,
    },
    /// Tokens by name, with role, creation and last use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a user; the password is asked for (or read from stdin with --password-stdin).
    Add {
        name: String,
        /// viewer (reads), operator (releases, deletes, sender lists) or admin (everything,
        /// malware releases and users included).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Users with role, creation and last sign-in.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a new password (ends the user's sessions).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a user another role (ends the user's sessions).
    Role { name: String, role: String },
    /// Remove a user (ends the user's sessions).
    Remove { name: String },
}

#[derive(clap::Args)]
struct FilterArgs {
    /// The running server's admin listener.
    #[arg(long, default_value = "http://127.0.0.1:8026", env = "PORTCULLIS_API")]
    api: String,
    /// File holding the API token (`portcullis tokens add NAME`).
    #[arg(long, env = "PORTCULLIS_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The API token itself (visible in the process list: prefer --token-file).
    #[arg(long, env = "PORTCULLIS_TOKEN")]
    token: Option<String>,
    /// Envelope sender (`--sender=${sender}` in pipe(8)); empty for the null sender. Values
    /// come from the SMTP client and may start with `-`.
    #[arg(long, short = 'f', default_value = "", allow_hyphen_values = true)]
    sender: String,
    /// The client's address (`--client-ip=${client_address}`).
    #[arg(long, allow_hyphen_values = true)]
    client_ip: Option<String>,
    /// The client's HELO name (`--helo=${client_helo}`).
    #[arg(long, allow_hyphen_values = true)]
    helo: Option<String>,
    /// Seconds the server may take.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// The reinjection command; `-f <sender> -- <recipients>` is appended.
    #[arg(long, default_value = "/usr/sbin/sendmail -G -i")]
    sendmail: String,
    /// Write the copy to stdout instead of reinjecting it (nothing for a held or discarded one).
    #[arg(long)]
    stdout: bool,
    /// Envelope recipients (`${recipient}`).
    #[arg(last = true)]
    recipients: Vec<String>,
}

#[derive(Subcommand)]
enum QueueAction {
    /// Copies waiting for delivery, with their attempts and last error.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make waiting copies (all, or one id) due now and deliver them from this process.
    Flush { id: Option<i64> },
    /// Remove a copy (by id) or every copy of a message (--message-ref) without delivering it.
    Delete {
        id: Option<i64>,
        #[arg(long)]
        message_ref: Option<String>,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Spam: files or directories (repeatable).
    #[arg(long, required = true)]
    spam: Vec<PathBuf>,
    /// Legitimate mail: files or directories (repeatable).
    #[arg(long, required = true)]
    ham: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "logistic")]
    learner: portcullis::classifier::Learner,
    /// Passes over the messages (logistic only).
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Where to write the model (default: classifier.model in the data directory).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Held-out spam to check the model against (not trained on).
    #[arg(long)]
    check_spam: Vec<PathBuf>,
    /// Held-out legitimate mail to check the model against (not trained on).
    #[arg(long)]
    check_ham: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum MessagesAction {
    /// Why one message got its verdict: every symbol with its weight, group and what triggered it.
    Show {
        message_ref: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum QuarantineAction {
    /// Held messages, newest first.
    List {
        /// Only this category: spam, bulk, phish, malware, transport.
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A held message's metadata, then the copy a release delivers (links rewritten, verdict
    /// headers stamped; not yet sealed).
    Show {
        id: i64,
        /// Print the message exactly as it arrived instead.
        #[arg(long)]
        as_received: bool,
    },
    /// Deliver a held message to its recipients (no filtering again).
    Release {
        id: i64,
        /// Only this recipient's copy; the message stays held for the others.
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Delete a held message now.
    Delete { id: i64 },
    /// Queue the quarantine digest now for every recipient with newly held messages (or one),
    /// whatever `[quarantine.digest]` schedules; the running gateway delivers it.
    Digest {
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Recipients' requests to release phish held for them, newest first.
    Requests {
        /// pending, approved, denied or gone.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a release request: the recipient's copy is delivered.
    Approve { request: i64 },
    /// Deny a release request: the message stays held.
    Deny { request: i64 },
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
    // `filter` runs under an MTA, which bounces the message on any status sysexits.h does not
    // define: there a bad argument, a configuration that does not load or a panic says "try again
    // later" (75), and the message waits in the MTA's queue for the operator.
    let filtering = std::env::args().any(|argument| argument == "filter");
    if filtering {
        std::panic::set_hook(Box::new(|panic| {
            eprintln!("portcullis filter: {panic}");
            std::process::exit(portcullis::filter::EX_TEMPFAIL.into());
        }));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if filtering && error.use_stderr() => {
            eprint!("portcullis filter: {error}");
            return ExitCode::from(portcullis::filter::EX_TEMPFAIL);
        }
        Err(error) => error.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::from(if filtering { portcullis::filter::EX_TEMPFAIL } else { 2 })
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
        Command::Scan {
            from,
            to,
            ip,
            helo,
            offline,
            json,
            symbols,
        } => {
            if symbols {
                for symbol in portcullis::pipeline::symbols::REGISTRY {
                    println!(
                        "{:<26} {:>+7.2} {:<8} {}",
                        symbol.name,
                        symbol.weight,
                        symbol.group.as_str(),
                        symbol.about
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            scan(&mut config, from, to, ip, helo, offline, json)
        }
        Command::Train(args) => train(&mut config, args),
        Command::Keys { action } => keys(&config, action),
        Command::Queue { action } => queue(&config, action),
        Command::Quarantine { action } => quarantine(&config, action),
        Command::Messages {
            action: Some(MessagesAction::Show { message_ref, json }),
            ..
        } => {
            let store = Store::open(&config.data_dir)?;
            let Some(entry) = store.index(1, Some(&message_ref))?.into_iter().next() else {
                bail!("no message {message_ref} in the index");
            };
            if json {
                println!("{}", serde_json::to_string(&entry)?);
            } else {
                print!("{}", explain_entry(&entry));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Messages {
            limit,
            message_ref,
            json,
            action: None,
        } => {
            let store = Store::open(&config.data_dir)?;
            for entry in store.index(limit, message_ref.as_deref())? {
                if json {
                    println!("{}", serde_json::to_string(&entry)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        entry.message_ref,
                        entry.verdict,
                        if entry.sender.is_empty() { "<>" } else { &entry.sender },
                        entry
                            .recipients
                            .iter()
                            .map(|r| r.address.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        entry.symbols.join(","),
                        entry.subject.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            smtp_listen,
            admin_listen,
            milter_listen,
        } => {
            if let Some(milter_listen) = milter_listen {
                config.milter.listen = if milter_listen == "off" {
                    String::new()
                } else {
                    milter_listen
                };
            }
            if let Some(listen) = listen {
                config.click.listen = listen;
            }
            if let Some(admin_listen) = admin_listen {
                config.admin.listen = if admin_listen == "off" {
                    String::new()
                } else {
                    admin_listen
                };
            }
            if let Some(smtp_listen) = smtp_listen {
                config.smtp.listen = if smtp_listen == "off" {
                    String::new()
                } else {
                    smtp_listen
                };
            }
            init_logging(config.click.json_logs);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(portcullis::serve::serve(config, cli.config.clone()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokens { action } => {
            use portcullis::tokens::{Role, Tokens};
            let tokens = Tokens::new(Store::open(&config.data_dir)?)?;
            match action {
                TokensAction::Add { name, role } => {
                    let token = tokens.issue(&name, Role::parse(&role)?, &Actor::cli())?;
                    println!("{token}");
                    if let Some((principal, secret)) = token.strip_prefix("pc_").and_then(|rest| rest.split_once('_')) {
                        eprintln!("for the SIEM API (HTTP Basic): principal {principal}, secret {secret}");
                    }
                }
                TokensAction::List { json } => {
                    for token in tokens.list()? {
                        if json {
                            println!("{}", serde_json::to_string(&token)?);
                        } else {
                            println!(
                                "{}\t{}\t{}\t{}",
                                token.name,
                                token.role.as_str(),
                                token.created_at,
                                token.last_used_at.map_or("-".to_string(), |at| at.to_string())
                            );
                        }
                    }
                }
                TokensAction::Revoke { name } => tokens.revoke(&name, &Actor::cli())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Users { action } => users(&config, action),
        Command::Filter(args) => Ok(filter(args)),
        Command::Healthcheck {
            admin,
            smtp,
            timeout_ms,
        } => {
            let timeout = std::time::Duration::from_millis(timeout_ms);
            match portcullis::serve::check_health(&admin, smtp.as_deref(), timeout) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(why) => {
                    eprintln!("unhealthy: {why}");
                    Ok(ExitCode::from(1))
                }
            }
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
                ..ClickQuery::default()
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
    // Colours only for a person at a terminal: journald, files and log shippers get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `portcullis filter`: every failure is an exit status the MTA understands, never exit 2.
fn filter(args: FilterArgs) -> ExitCode {
    use portcullis::filter::{EX_TEMPFAIL, FilterRequest, Output};
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(token) => token.trim().to_string(),
            Err(error) => {
                eprintln!("portcullis filter: {}: {error}", path.display());
                return ExitCode::from(EX_TEMPFAIL);
            }
        },
        (None, None) => {
            eprintln!("portcullis filter: no API token (--token-file)");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    if args.recipients.is_empty() && !args.stdout {
        eprintln!("portcullis filter: no recipients (after --)");
        return ExitCode::from(EX_TEMPFAIL);
    }
    let mut message = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut message) {
        eprintln!("portcullis filter: reading the message: {error}");
        return ExitCode::from(EX_TEMPFAIL);
    }
    // pipe(8) hands over LF line ends; the API and the MTA's sendmail take either.
    let request = FilterRequest {
        api: args.api,
        token,
        sender: args.sender,
        recipients: args.recipients,
        client_ip: args.client_ip,
        helo: args.helo,
        timeout: std::time::Duration::from_secs(args.timeout_secs.max(1)),
        output: if args.stdout {
            Output::Stdout
        } else {
            Output::Reinject(args.sendmail.split_whitespace().map(str::to_string).collect())
        },
    };
    let filtered = portcullis::filter::run(&request, message);
    eprintln!("portcullis filter: {}", filtered.said);
    ExitCode::from(filtered.status)
}

/// `portcullis scan`: the gateway's analysis and decision for one message from stdin.
fn scan(
    config: &mut Config,
    from: Option<String>,
    to: Vec<String>,
    ip: std::net::IpAddr,
    helo: String,
    offline: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use portcullis::pipeline::{Envelope, Pipeline, Resolver};
    let mut message = Vec::new();
    std::io::stdin().read_to_end(&mut message)?;
    if offline {
        config.pipeline.authenticate = false;
    }
    let resolver = if config.pipeline.authenticate {
        Some(Resolver::new(&config.dns).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let sender = from
        .or_else(|| portcullis::pipeline::from_address(&message))
        .unwrap_or_default();
    let recipients = if to.is_empty() {
        let domain = config.smtp.domains.first().map_or("localhost", String::as_str);
        vec![format!("recipient@{domain}")]
    } else {
        to
    };
    let envelope = Envelope {
        message_ref: portcullis::smtp::server::new_message_ref(),
        sender,
        recipients,
        client_ip: ip,
        helo,
        tls: false,
        received_at: portcullis::store::now(),
        connection_symbols: Vec::new(),
    };
    let keys = open_keys(&config.data_dir)?;
    // Local feeds and lookalike heuristics always; the remote APIs unless --offline.
    let (reputation, _feeds) = portcullis::serve::build_reputation(config, !offline)?;
    let pipeline = Pipeline::new(config, keys, resolver, None).with_reputation(std::sync::Arc::new(reputation));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let analysis = runtime.block_on(pipeline.analyse(&envelope, &message));
    let outcome = pipeline.conclude(&envelope, &message, &analysis, true);
    let explanation = pipeline.explain(&analysis, &outcome);
    if json {
        println!("{}", serde_json::to_string(&explanation)?);
    } else {
        print!("{}", explanation.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

fn train(config: &mut Config, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let TrainArgs {
        spam,
        ham,
        learner,
        epochs,
        output,
        check_spam,
        check_ham,
    } = args;
    use portcullis::classifier::{self, MODEL_FILE};
    use portcullis::pipeline::Pipeline;
    // Features are what the stages see without DNS and before links are rewritten.
    config.pipeline.authenticate = false;
    config.pipeline.rewrite_urls = false;
    let pipeline = Pipeline::new(config, open_keys(&config.data_dir)?, None, None);
    let started = std::time::Instant::now();
    let mut shown = started;
    let trainer = classifier::train_from(&pipeline, &spam, &ham, &mut |done, estimate| {
        if shown.elapsed().as_millis() >= 500 || done == estimate {
            shown = std::time::Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let left = estimate.saturating_sub(done) as f64 / rate.max(1e-3);
            eprint!("\r{done}/{estimate} messages, {rate:.0}/s, about {left:.0} s left   ");
        }
    });
    let (spam_count, ham_count) = trainer.counts();
    eprintln!(
        "\rread {spam_count} spam and {ham_count} ham in {:.1} s; fitting ({learner:?})…",
        started.elapsed().as_secs_f64()
    );
    let model = trainer.fit(learner, epochs)?;
    let path = output.unwrap_or_else(|| config.data_dir.join(MODEL_FILE));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    model.save(&path)?;
    let (right, total) = trainer.accuracy(&model);
    println!(
        "model written to {} ({} weights, {:.1} s); on its own training messages it is right {right} times of {total}",
        path.display(),
        model.weights.len(),
        started.elapsed().as_secs_f64()
    );
    if !check_spam.is_empty() || !check_ham.is_empty() {
        let held_out = classifier::train_from(&pipeline, &check_spam, &check_ham, &mut |_, _| {});
        for line in held_out.report(&model) {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An index entry in words: what arrived, the verdict, and every symbol as it was weighed.
fn explain_entry(entry: &portcullis::store::IndexEntry) -> String {
    use portcullis::pipeline::symbols::registered;
    let recipients: Vec<&str> = entry.recipients.iter().map(|r| r.address.as_str()).collect();
    let mut text = format!(
        "message {} received {} from {} ({}, HELO {}) to {}\nsubject: {}\nverdict: {}",
        entry.message_ref,
        entry.received_at,
        if entry.sender.is_empty() { "<>" } else { &entry.sender },
        entry.client_ip,
        entry.helo,
        recipients.join(", "),
        entry.subject.as_deref().unwrap_or(""),
        entry.verdict
    );
    if let Some(category) = &entry.category {
        text.push_str(&format!(" ({category})"));
    }
    if let Some(rule) = &entry.rule {
        text.push_str(&format!(", transport rule {rule}"));
    }
    text.push_str(&format!("\n{}\n", entry.details));
    if entry.weighed.is_empty() {
        // Indexed before weights were kept: the names are all there is.
        for name in &entry.symbols {
            text.push_str(&format!("  {name}\n"));
        }
    }
    for symbol in &entry.weighed {
        let about = registered(&symbol.name).map_or("", |s| s.about);
        text.push_str(&format!(
            "  {:<26} {:>+7.2} {:<8} {}{}\n",
            symbol.name,
            symbol.weight,
            symbol.group,
            symbol.detail,
            if about.is_empty() {
                String::new()
            } else {
                format!(" ({about})")
            }
        ));
    }
    text
}

fn open_keys(data_dir: &Path) -> anyhow::Result<KeyRing> {
    Ok(KeyRing::open_or_create(data_dir)?)
}

/// What makes recipients' copies from stored messages, as the gateway's delivery does.
fn renderer(config: &Config, seal: bool) -> anyhow::Result<Renderer> {
    let rewriter = Rewriter::new(
        open_keys(&config.data_dir)?,
        &config.links.base_url,
        config.rewrite.clone(),
    );
    let arc = if seal && config.pipeline.arc_seal {
        Some(ArcKey::for_config(config)?)
    } else {
        None
    };
    Ok(Renderer::new(rewriter, arc, &config.smtp.hostname))
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

fn keys(config: &Config, action: KeysAction) -> anyhow::Result<ExitCode> {
    let mut ring = open_keys(&config.data_dir)?;
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
    let arc = ArcKey::for_config(config)?;
    let (name, record) = arc.dns_record();
    println!("\nARC sealing key (RSA-2048, arc-key.der); publish this TXT record:");
    println!("{name}. IN TXT \"{record}\"");
    Ok(ExitCode::SUCCESS)
}

fn when(secs: i64) -> String {
    portcullis::smtp::rfc5322_date(secs)
}

fn queue(config: &Config, action: QueueAction) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir)?;
    match action {
        QueueAction::List { json } => {
            let entries = store.queue()?;
            for entry in &entries {
                if json {
                    println!("{}", serde_json::to_string(entry)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{} bytes\tattempts={}\tnext={}\t{}",
                        entry.id,
                        entry.message_ref,
                        entry.kind,
                        entry.recipients.join(","),
                        entry.size,
                        entry.attempts,
                        when(entry.next_attempt),
                        entry.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
            if !json {
                eprintln!("{} in the queue", entries.len());
            }
        }
        QueueAction::Flush { id } => {
            let due = store.flush_queue(id)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let wake = std::sync::Arc::new(tokio::sync::Notify::new());
            let delivery = Delivery::new(
                store.clone(),
                std::sync::Arc::new(renderer(config, true)?),
                &config.delivery,
                &config.smtp.hostname,
                wake,
            )
            .map_err(anyhow::Error::msg)?;
            let attempted = runtime.block_on(delivery.pass());
            let left = store.queue()?.len();
            println!("{due} made due, {attempted} attempted, {left} still queued");
        }
        QueueAction::Delete { id, message_ref } => {
            if id.is_none() && message_ref.is_none() {
                bail!("give an id or --message-ref");
            }
            let removed = store.delete_queued(id, message_ref.as_deref())?;
            if removed == 0 {
                bail!("nothing in the queue matches");
            }
            println!("{removed} removed from the queue");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let password = rpassword::prompt_password("Password: ")?;
    if rpassword::prompt_password("Again: ")? != password {
        anyhow::bail!("the passwords differ");
    }
    Ok(password)
}

fn users(config: &Config, action: UsersAction) -> anyhow::Result<ExitCode> {
    use portcullis::tokens::Role;
    use portcullis::users::Users;
    let users = Users::new(Store::open(&config.data_dir)?)?;
    match action {
        UsersAction::Add {
            name,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role)?;
            users.add(&name, role, &read_password(password_stdin)?, &Actor::cli())?;
        }
        UsersAction::List { json } => {
            for user in users.list()? {
                if json {
                    println!("{}", serde_json::to_string(&user)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}",
                        user.name,
                        user.role.as_str(),
                        user.created_at,
                        user.last_login_at.map_or("-".to_string(), |at| at.to_string())
                    );
                }
            }
        }
        UsersAction::Passwd { name, password_stdin } => {
            users.set_password(&name, &read_password(password_stdin)?, &Actor::cli())?;
        }
        UsersAction::Role { name, role } => users.set_role(&name, Role::parse(&role)?, &Actor::cli())?,
        UsersAction::Remove { name } => users.remove(&name, &Actor::cli())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn quarantine(config: &Config, action: QuarantineAction) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir)?;

    match action {
        QuarantineAction::List { category, json } => {
            for held in store.held(category.as_deref(), None, 0)? {
                if json {
                    println!("{}", serde_json::to_string(&held)?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\texpires {}\t{}\t{}",
                        held.id,
                        held.category,
                        held.message_ref,
                        if held.sender.is_empty() { "<>" } else { &held.sender },
                        held.recipients.join(","),
                        when(held.expires_at),
                        held.subject.as_deref().unwrap_or(""),
                        held.reason
                    );
                }
            }
        }
        QuarantineAction::Show { id, as_received } => {
            let (held, copy) = store.held_message(id)?;
            println!("{}", serde_json::to_string_pretty(&held)?);
            println!();
            let body = match copy {
                HeldCopy::Held(body) => body,
                HeldCopy::Stored(stored) if as_received => stored.message,
                HeldCopy::Stored(stored) => {
                    let plan: RenderPlan = serde_json::from_str(&stored.plan).context("render plan")?;
                    renderer(config, false)?.render(&stored.message, &plan, &held.message_ref, None)
                }
            };
            std::io::stdout().write_all(&body)?;
        }
        QuarantineAction::Release { id, recipient } => {
            let held = match recipient {
                Some(recipient) => store.release_to(id, &recipient, &Actor::cli())?,
                None => store.release(id, &Actor::cli())?,
            };
            println!(
                "released {} ({}) to {}; it is delivered by the running gateway or `portcullis queue flush`",
                held.id,
                held.message_ref,
                held.recipients.join(",")
            );
        }
        QuarantineAction::Delete { id } => {
            store.delete_held(id, &Actor::cli())?;
            println!("deleted {id}");
        }
        QuarantineAction::Digest { recipient } => {
            let digests = portcullis::digest::Digests::new(config, store, open_keys(&config.data_dir)?)
                .map_err(anyhow::Error::msg)?;
            let run = digests.send(recipient.as_deref())?;
            println!(
                "queued {} digests listing {} held messages; the running gateway delivers them",
                run.recipients, run.messages
            );
        }
        QuarantineAction::Requests { status, json } => {
            for request in store.release_requests(status.as_deref(), 0)? {
                if json {
                    println!("{}", serde_json::to_string(&request)?);
                } else {
                    let held = request.held.as_ref();
                    println!(
                        "{}\t{}\thold {}\t{}\t{}\t{}\t{}",
                        request.id,
                        request.status,
                        request.hold_id,
                        request.recipient,
                        when(request.requested_at),
                        held.map_or("", |h| h.sender.as_str()),
                        held.and_then(|h| h.subject.as_deref()).unwrap_or("")
                    );
                }
            }
        }
        QuarantineAction::Approve { request } | QuarantineAction::Deny { request } => {
            let decision = match action {
                QuarantineAction::Approve { .. } => portcullis::quarantine::Decision::Approve,
                _ => portcullis::quarantine::Decision::Deny,
            };
            let decided = store.decide_release_request(request, decision, &Actor::cli())?;
            println!("request {} {} for {}", decided.id, decided.status, decided.recipient);
        }
    }
    Ok(ExitCode::SUCCESS)
}
