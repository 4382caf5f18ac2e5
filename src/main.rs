//! `maint-e2e`: command line of the emulator.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use maint_e2e::emulator::Naming;
use maint_e2e::emulator::{api, Emulator, EmulatorConfig, Timings};
use maint_e2e::fault_injector::{DatabaseSpec, TimingOverrides};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "maint-e2e",
    version,
    about = "Redis maintenance-notification end-to-end tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Redis Enterprise emulator and its fault injector in the foreground.
    ///
    /// When ready, writes an endpoints file (databases `standalone`,
    /// `standalone-tls`, `standalone-sharded`, `standalone0-tls`,
    /// `standalone0-acl`, `standalone0-acl-tls`, `standalone0-mtls`,
    /// `standalone0-tls13` and `oss-cluster`) and prints one line of JSON:
    /// {"fault_injector_url": ..., "endpoints_config": ...}. Stops on SIGINT or SIGTERM.
    Emulator(EmulatorArgs),
    /// Run a benchmark of the emulator; prints a Markdown table and writes
    /// JSON (with the machine) to `<out>/<name>.json`. BENCHMARKS.md says
    /// what each measures.
    Bench(BenchArgs),
    /// Check a living-documentation page in headless Chromium: it loads
    /// without a script error and draws every timeline its data holds;
    /// optionally save one scenario's timeline as a PNG.
    Report(ReportArgs),
    /// Build the conformance matrix from the acceptance suite's runs (one
    /// per client under test: scenario by client, passed / failed / not
    /// applicable, linked to each run's timelines), check it in headless
    /// Chromium, and judge it against the cells that passed before.
    Matrix(MatrixArgs),
}

#[derive(clap::Args)]
struct MatrixArgs {
    /// A run's living-document folder, one per client, left to right
    /// (default: those of target/living-doc, target/living-doc-redis-py and
    /// target/living-doc-node-redis that exist).
    #[arg(long = "run")]
    runs: Vec<PathBuf>,
    /// Where the page goes.
    #[arg(long, default_value = "target/conformance")]
    out: PathBuf,
    /// Fail when a cell this file lists as passed did not pass.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Write the cells that passed to this file (the next --expect).
    #[arg(long)]
    write_expect: Option<PathBuf>,
    /// Save a picture of the whole page.
    #[arg(long)]
    screenshot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The page the acceptance suite wrote.
    #[arg(default_value = "target/living-doc/index.html")]
    page: PathBuf,
    /// Save the timeline of this scenario (its id, `CH1`, or its anchor).
    #[arg(long)]
    screenshot: Option<String>,
    /// Where the screenshot goes.
    #[arg(long, default_value = "target/living-doc/timeline.png")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchName {
    /// redis-benchmark GET/SET: direct, byte forwarder, twemproxy, emulator (plain, TLS).
    Overhead,
    /// From a posted bind to the last MOVING, by connection count; resident memory over rebinds.
    Fanout,
    /// One client of many connections through rebinds under traffic.
    Handoff,
    /// Many failovers, migrations and binds under traffic: memory, file
    /// descriptors, threads and shard processes over time (not part of `all`).
    Soak,
    /// Overhead, fanout and handoff.
    All,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    name: BenchName,
    /// Small sizes, to check that it runs (CI).
    #[arg(long)]
    smoke: bool,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// soak: actions in all.
    #[arg(long)]
    actions: Option<usize>,
    /// overhead: redis-benchmark connections (-c), comma-separated.
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// overhead: pipeline depths (-P), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pipelines: Option<Vec<usize>>,
    /// overhead: rounds (each contender once per round).
    #[arg(long)]
    rounds: Option<usize>,
    /// overhead: requests per test.
    #[arg(long)]
    requests: Option<usize>,
    /// fanout: opted-in connection counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// fanout: connections kept through the memory cycles.
    #[arg(long)]
    memory_connections: Option<usize>,
    /// fanout: rebinds of the memory run.
    #[arg(long)]
    memory_cycles: Option<usize>,
    /// handoff, soak: connections of the client.
    #[arg(long)]
    connections: Option<usize>,
    /// handoff: rebinds.
    #[arg(long)]
    rebinds: Option<usize>,
}

#[derive(clap::Args)]
struct EmulatorArgs {
    /// Number of cluster nodes (node n owns 127.0.n.1 and 127.0.n.2).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// MOVING grace period in seconds.
    #[arg(long, default_value_t = 15.0)]
    grace_s: f64,
    /// Seconds a start notification precedes the disruption.
    #[arg(long, default_value_t = 1.0)]
    lead_s: f64,
    /// Seconds a MIGRATING / FAILING_OVER window announces beyond the lead.
    #[arg(long, default_value_t = 2.0)]
    window_s: f64,
    /// Seconds between a switch-over and its completion (MIGRATED /
    /// FAILED_OVER): a real failover or final switch takes seconds.
    #[arg(long, default_value_t = 3.0)]
    settle_s: f64,
    /// Seconds each switch-over of a failover or migration holds traffic.
    #[arg(long, default_value_t = 1.0)]
    hold_s: f64,
    /// DNS domain of the cluster's host names (the database's and the FQDN
    /// forms of MOVING); when names in it do not resolve to loopback here,
    /// `localhost` is used instead.
    #[arg(long, default_value = maint_e2e::emulator::DEFAULT_DOMAIN)]
    domain: String,
    /// Print shell `export` lines for other clients' suites (the fault
    /// injector's and the endpoints file's variables, the database name)
    /// instead of the JSON line.
    #[arg(long)]
    print_env: bool,
    /// Do not replay the last MIGRATED / FAILED_OVER to connections that opt in later.
    #[arg(long)]
    no_completion_replay: bool,
    /// The most client connections a database serves at once; past it a
    /// connection is told `-ERR max number of clients reached` (0: no limit;
    /// `max_connections` in create_database sets it per database).
    #[arg(long, default_value_t = maint_e2e::emulator::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Address of the fault injector API (loopback by default; anywhere else
    /// is logged as a warning).
    #[arg(long, default_value = "127.0.0.1:0")]
    api: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every route of the API but
    /// `/health`.
    #[arg(long, env = "FAULT_INJECTION_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Port of the `standalone` database (default: a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Port of the discovery service (the Sentinel protocol) on every node,
    /// 8001 as on Redis Enterprise; 0 for one that is free on every node.
    #[arg(long, default_value_t = maint_e2e::emulator::discovery::DEFAULT_PORT)]
    discovery_port: u16,
    /// Password of the `standalone` database's default user.
    #[arg(long)]
    password: Option<String>,
    /// Where to write the endpoints file (default: a file in the temp directory).
    #[arg(long)]
    endpoints_out: Option<PathBuf>,
    /// Keep the run directory (shard logs, certificates, private keys) after
    /// the emulator stops; its path is logged at start-up.
    #[arg(long)]
    keep_run_dir: bool,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "maint_e2e=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulator(args) => run_emulator(args).await,
        Command::Bench(args) => run_bench(args).await,
        Command::Report(args) => run_report(args).await,
        Command::Matrix(args) => run_matrix(args).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run_matrix(a: MatrixArgs) -> Result<()> {
    maint_e2e::report::matrix::publish(&maint_e2e::report::matrix::Options {
        runs: a.runs,
        out: a.out,
        expect: a.expect,
        write_expect: a.write_expect,
        screenshot: a.screenshot,
    })
    .await
    .map(drop)
}

async fn run_report(a: ReportArgs) -> Result<()> {
    let shot = a.screenshot.as_deref().map(|id| (id, a.out.as_path()));
    let check = maint_e2e::report::browser::verify_page(&a.page, shot).await?;
    println!(
        "{}: loaded without script errors, {} of {} timelines drawn",
        a.page.display(),
        check.drawn,
        check.timelines
    );
    if let Some(id) = &a.screenshot {
        println!("timeline of {id}: {}", a.out.display());
    }
    Ok(())
}

/// Writes a benchmark's figures as JSON and says where.
fn written(
    dir: &std::path::Path,
    name: &str,
    size: maint_e2e::bench::Size,
    figures: serde_json::Value,
) -> Result<()> {
    let path = maint_e2e::bench::write_json(dir, name, size, figures)?;
    println!("(written to {})\n", path.display());
    Ok(())
}

async fn run_bench(a: BenchArgs) -> Result<()> {
    use maint_e2e::bench::{fanout, handoff, overhead, soak, verdict, Size};
    let size = if a.smoke { Size::Smoke } else { Size::Full };
    let all = a.name == BenchName::All;
    if all || a.name == BenchName::Overhead {
        let mut o = overhead::Options::of(size);
        o.clients = a.clients.clone().unwrap_or(o.clients);
        o.pipelines = a.pipelines.clone().unwrap_or(o.pipelines);
        o.rounds = a.rounds.unwrap_or(o.rounds);
        o.requests = a.requests.unwrap_or(o.requests);
        let figures = overhead::run(size, &o).await?;
        written(&a.out, "overhead", size, figures.clone())?;
        verdict::overhead(&figures, verdict::overhead_floor(size))?;
    }
    if all || a.name == BenchName::Fanout {
        let mut o = fanout::Options::of(size);
        o.sizes = a.sizes.clone().unwrap_or(o.sizes);
        o.memory_connections = a.memory_connections.unwrap_or(o.memory_connections);
        o.memory_cycles = a.memory_cycles.unwrap_or(o.memory_cycles);
        let exe = std::env::current_exe().context("finding this binary")?;
        let figures = fanout::run(size, &o, &exe).await?;
        written(&a.out, "fanout", size, figures)?;
    }
    if all || a.name == BenchName::Handoff {
        let mut o = handoff::Options::of(size);
        o.connections = a.connections.unwrap_or(o.connections);
        o.rebinds = a.rebinds.unwrap_or(o.rebinds);
        let figures = handoff::run(size, &o).await?;
        written(&a.out, "handoff", size, figures.clone())?;
        verdict::handoff(&figures)?;
    }
    if a.name == BenchName::Soak {
        let mut o = soak::Options::of(size);
        o.actions = a.actions.unwrap_or(o.actions);
        o.connections = a.connections.unwrap_or(o.connections);
        o.every = o.every.min(o.actions.max(1));
        let exe = std::env::current_exe().context("finding this binary")?;
        let figures = soak::run(size, &o, &exe).await?;
        written(&a.out, "soak", size, figures.clone())?;
        verdict::soak(&figures)?;
    }
    Ok(())
}

async fn run_emulator(args: EmulatorArgs) -> Result<()> {
    let overrides = TimingOverrides {
        grace_s: Some(args.grace_s),
        lead_s: Some(args.lead_s),
        window_s: Some(args.window_s),
        settle_s: Some(args.settle_s),
        hold_s: Some(args.hold_s),
    };
    overrides
        .validate()
        .map_err(|e| anyhow::anyhow!("--{}", e.0.replacen('_', "-", 1)))?;
    let emu = Emulator::new(EmulatorConfig {
        nodes: args.nodes,
        timings: Timings::default().with(&overrides),
        replay_completion: !args.no_completion_replay,
        naming: Naming::resolving(&args.domain),
        max_connections: args.max_connections,
        keep_run_dir: args.keep_run_dir,
    })?;
    tracing::info!(run_dir = %emu.run_dir().display(), keep = args.keep_run_dir, "run directory");
    let cancel = CancellationToken::new();
    let outcome = async {
        let mut first = None;
        for spec in standard_databases(args.port, args.password.clone()) {
            let name = spec.name.clone().unwrap_or_default();
            let db = emu
                .create_database(spec)
                .await
                .with_context(|| format!("creating the {name} database"))?;
            first.get_or_insert(db);
        }
        let db = first.expect("the standard databases are not empty");
        let options = api::ApiOptions {
            token: args.api_token.clone(),
            ..api::ApiOptions::default()
        };
        let api_addr = api::serve(emu.clone(), args.api, &options, cancel.clone()).await?;
        emu.serve_discovery(args.discovery_port, cancel.clone())
            .await?;
        let path = args.endpoints_out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("maint-e2e-endpoints-{}.json", std::process::id()))
        });
        let text = emu.endpoints_file().to_text();
        std::fs::write(&path, text)
            .with_context(|| format!("writing the endpoints file {}", path.display()))?;
        let url = format!("http://{api_addr}");
        if args.print_env {
            print!("{}", env_exports(&url, &path));
        } else {
            println!(
                "{}",
                serde_json::json!({
                    "fault_injector_url": url,
                    "endpoints_config": path.display().to_string(),
                })
            );
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(
            bdb_id = db.id(),
            port = db.port(),
            "emulator ready; stop it with Ctrl-C or SIGTERM"
        );
        wait_for_signal().await;
        if args.endpoints_out.is_none() {
            let _ = std::fs::remove_file(&path);
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    cancel.cancel();
    emu.shutdown().await;
    outcome
}

/// The databases `maint-e2e emulator` creates: the suite's (`standalone`,
/// `standalone-tls`, `standalone-sharded`) and the TLS and ACL variants other
/// clients' frameworks name (`standalone0-tls`, `standalone0-acl`,
/// `standalone0-acl-tls`), mutual TLS (`standalone0-mtls`) and TLS 1.3 only
/// (`standalone0-tls13`), and an OSS Cluster API database (`oss-cluster`, two
/// primaries with a replica each). Databases without `--password` get a generated one
/// where they need one; the endpoints file carries every credential.
fn standard_databases(port: Option<u16>, password: Option<String>) -> Vec<DatabaseSpec> {
    use maint_e2e::fault_injector::AclUser;
    let secret = password.clone().unwrap_or_else(generated_password);
    let acl_user = AclUser {
        name: maint_e2e::emulator::ACL_USER.into(),
        password: generated_password(),
        rules: Some(maint_e2e::emulator::LIMITED_ACL_RULES.into()),
    };
    let tls = |name: &str| DatabaseSpec {
        tls: Some(true),
        password: Some(secret.clone()),
        ..DatabaseSpec::named(name)
    };
    vec![
        DatabaseSpec {
            port,
            password: password.clone(),
            ..DatabaseSpec::named("standalone")
        },
        DatabaseSpec {
            password: password.clone(),
            ..tls("standalone-tls")
        },
        DatabaseSpec {
            shards_count: Some(2),
            sharding: Some(true),
            password: password.clone(),
            ..DatabaseSpec::named("standalone-sharded")
        },
        tls("standalone0-tls"),
        DatabaseSpec {
            password: Some(secret.clone()),
            acl_users: vec![acl_user.clone()],
            ..DatabaseSpec::named("standalone0-acl")
        },
        DatabaseSpec {
            acl_users: vec![acl_user],
            ..tls("standalone0-acl-tls")
        },
        DatabaseSpec {
            enforce_client_authentication: Some(true),
            ..tls("standalone0-mtls")
        },
        DatabaseSpec {
            tls_min_version: Some("1.3".into()),
            ..tls("standalone0-tls13")
        },
        DatabaseSpec {
            oss_cluster: Some(true),
            shards_count: Some(2),
            replication: Some(true),
            proxy_policy: Some("all-master-shards".into()),
            password: password.clone(),
            ..DatabaseSpec::named("oss-cluster")
        },
    ]
}

/// A password for one run: not guessable from outside, written only to the
/// endpoints file.
fn generated_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("pw-{:016x}", h.finish())
}

/// Shell lines that point the suites of other clients at the emulator: the
/// names each of them reads.
fn env_exports(url: &str, endpoints: &std::path::Path) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
    let path = endpoints.display().to_string();
    [
        ("FAULT_INJECTION_API_URL", url),
        ("RE_FAULT_INJECTOR_URL", url),
        ("REDIS_ENDPOINTS_CONFIG_PATH", path.as_str()),
        ("DATABASE_NAME", "standalone"),
    ]
    .iter()
    .map(|(k, v)| format!("export {k}={}\n", quote(v)))
    .collect()
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
