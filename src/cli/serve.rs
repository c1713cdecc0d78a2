//! `handsign serve`: the gateway, with nothing else installed, or one of several sharing Redis.

use anyhow::Context as _;
use futures_util::FutureExt as _;

use super::Outcome;
use crate::admin;
use crate::clock::Clock;
use crate::config::{LogFormat, ServeArgs};
use crate::invitations;
use crate::server;
use crate::storage::Storage;

pub async fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    init_logging(args.log_format);
    let replicas = args.redis_replicas.wait().map_err(anyhow::Error::msg)?;
    let storage =
        Storage::open_waiting(&args.data_dir, args.redis_url.as_deref(), replicas).await?;
    let store = storage.store.clone();
    if !storage.is_shared() {
        println!("Data directory: {}", args.data_dir.display());
    }
    let state = server::open(&args, &storage, Clock::system()).await?;
    let listener =
        server::listen(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    if store.count_users().await? == 0 {
        let code = invitations::issue(store.as_ref(), None, state.clock.now()).await?;
        println!(
            "No users yet. Register the first user and passkey within an hour at:\n  {}",
            state.public.join(&format!("/setup?code={code}"))
        );
    }
    let shutdown = server::shutdown_signal()
        .context("cannot install signal handlers")?
        .shared();
    let metrics = match args.metrics.metrics_listen {
        Some(address) => {
            let listener = server::listen(address)
                .with_context(|| format!("cannot listen on {address} for metrics"))?;
            tracing::info!(address = %listener.local_addr()?, "metrics listening");
            Some(tokio::spawn(server::run_metrics(
                listener,
                state.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // With Redis, operator commands go to Redis directly: any instance would do.
    let operator = if storage.is_shared() {
        None
    } else {
        let socket = admin::bind(&args.data_dir).await.with_context(|| {
            format!(
                "cannot listen on {}",
                admin::socket_path(&args.data_dir).display()
            )
        })?;
        Some(tokio::spawn(admin::serve(
            socket,
            store.clone(),
            state.public.clone(),
            state.clock.clone(),
        )))
    };
    tracing::info!(%address, public_url = %state.public.issuer, "gateway listening");
    // The last line printed at start: scripts wait for it.
    println!(
        "Handsign gateway listening on {address}, public URL {}",
        state.public.issuer
    );
    server::run(listener, state, shutdown).await?;
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    if let Some(operator) = operator {
        operator.abort();
        let _ = std::fs::remove_file(admin::socket_path(&args.data_dir));
    }
    Ok(Outcome::Accepted)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HANDSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
