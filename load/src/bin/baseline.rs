//! `baseline`: the benchmark baselines — serve one (`serve --design seed|lean`) or
//! measure memory per live attempt (`memory --design engine|lean|seed`), or fill a
//! snapshot store for the restore benchmark (`fill --url …`).

use std::net::TcpListener;

use clap::{Parser, Subcommand, ValueEnum};
use scanlogin::config::TokenSettings;
use scanlogin::token::TokenIssuer;
use scanlogin::wechat::callback::AppKeys;
use scanlogin_load::baseline::{State, Store, fill, lean::Lean, memory, seed::Seed, serve};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Design {
    /// Our actor engine (memory only: the service itself is served by `scanlogin`).
    Engine,
    Lean,
    Seed,
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Serve {
        #[arg(long, value_enum)]
        design: Design,
        #[arg(long, default_value = "127.0.0.1:18090")]
        bind: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379/15")]
        redis: String,
        #[arg(long, default_value_t = 0)]
        workers: usize,
        #[arg(long, default_value_t = 300)]
        ttl: u64,
    },
    Memory {
        #[arg(long, value_enum)]
        design: Design,
        #[arg(long, default_value_t = 200_000)]
        n: usize,
        #[arg(long, default_value = "redis://127.0.0.1:6379/15")]
        redis: String,
    },
    /// Write `n` live `loop` snapshots into a store (SQL database URL, or `redis://…`)
    /// for a restore benchmark; the poll ids of a sample go to `--sample-file`.
    Fill {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long, default_value = "default")]
        app: String,
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        #[arg(long)]
        sample_file: String,
        #[arg(long, default_value_t = 200)]
        sample: usize,
        /// The `token.secret` of the server that will restore them (Redis records are
        /// sealed with keys derived from it); default: `config/default.toml`'s.
        #[arg(long, default_value = "change-me")]
        secret: String,
    },
}

fn main() -> std::io::Result<()> {
    scanlogin::install_crypto();
    let cli = Cli::parse();
    actix_web::rt::System::new().block_on(async move {
        match cli.cmd {
            Cmd::Memory { design, n, redis } => {
                let per = match design {
                    Design::Engine => memory::engine(n).await,
                    Design::Lean => memory::lean(n).await,
                    Design::Seed => memory::seed(&redis, n).await,
                };
                let per_gib = (1u64 << 30) as f64 / per.max(1.0);
                println!(
                    "{}",
                    serde_json::json!({"design": format!("{design:?}").to_lowercase(), "n": n,
                        "bytes_per_attempt": per, "attempts_per_gib": per_gib})
                );
                Ok(())
            }
            Cmd::Fill { url, n, app, ttl, sample_file, sample, secret } => {
                let target =
                    if url.starts_with("redis") { fill::Target::Redis(url, secret) } else { fill::Target::Sql(url) };
                let started = std::time::Instant::now();
                let f = fill::fill(&target, &app, n, std::time::Duration::from_secs(ttl), sample)
                    .await
                    .map_err(std::io::Error::other)?;
                fill::write_sample(&sample_file, &f)?;
                println!(
                    "{}",
                    serde_json::json!({"n": n, "expires_at_ms": f.expires_at_ms,
                        "fill_secs": started.elapsed().as_secs_f64(), "sample": f.sample.len()})
                );
                Ok(())
            }
            Cmd::Serve { design, bind, redis, workers, ttl } => {
                let store = match design {
                    Design::Seed => Store::Seed(Seed::connect(&redis).await.map_err(std::io::Error::other)?),
                    Design::Lean => Store::Lean(Lean::start()),
                    Design::Engine => return Err(std::io::Error::other("serve the engine with `scanlogin`")),
                };
                let keys = AppKeys {
                    app_id: "wxsandbox0000000001".into(),
                    token: "sandbox-token".into(),
                    aes_keys: Vec::new(),
                };
                let state = State {
                    store,
                    keys,
                    tokens: TokenIssuer::shared_secret(&TokenSettings::default()),
                    ttl_secs: ttl,
                    max_wait_secs: 60,
                };
                let workers =
                    if workers == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { workers };
                serve(TcpListener::bind(&bind)?, state, workers)?.await
            }
        }
    })
}
