//! `wasmq dashboard`: the web dashboard on its own.

use std::net::SocketAddr;

use clap::Args;
use tokio_util::sync::CancellationToken;
use wasmq::broker::Broker;
use wasmq::ops::dashboard::{self, DashboardConfig};

use super::RedisArgs;
use super::parse::Failure;
use super::worker::{connect, shutdown_on_signal};

/// Arguments of `wasmq dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to listen. Beyond loopback, write actions need a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// Who may change things through the dashboard.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// Show everything, change nothing: run, archive, delete, cancel, pause
    /// and resume are refused.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// The token write actions must carry. When the dashboard listens
    /// beyond loopback and no token is given, one is generated and printed.
    #[arg(long, env = "WASMQ_DASHBOARD_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
}

impl AccessArgs {
    /// The dashboard settings for an address.
    pub fn config(&self, listen: &SocketAddr) -> DashboardConfig {
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None if !dashboard::is_loopback(listen) && !self.read_only => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                println!("dashboard token (needed for write actions): {token}");
                Some(token)
            }
            None => None,
        };
        DashboardConfig {
            read_only: self.read_only,
            token,
        }
    }
}

/// Binds `listen` and serves the dashboard on `broker` until `shutdown`;
/// returns the address actually bound.
pub async fn start(
    listen: SocketAddr,
    access: &AccessArgs,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Failure> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot listen on {listen} for the dashboard: {err}; pick another address with --listen"
        )
    })?;
    let bound = listener.local_addr().map_err(anyhow::Error::from)?;
    let config = access.config(&bound);
    let server = tokio::spawn(async move {
        if let Err(err) = dashboard::serve(listener, broker, config, shutdown).await {
            tracing::error!(%err, "the dashboard stopped");
        }
    });
    Ok((bound, server))
}

/// Runs `wasmq dashboard`.
pub async fn run(args: DashboardArgs) -> Result<(), Failure> {
    let shutdown = shutdown_on_signal();
    let Some(broker) = connect(&args.redis.url, false, &shutdown).await? else {
        return Ok(());
    };
    let (bound, server) = start(args.listen, &args.access, broker, shutdown).await?;
    println!("dashboard: http://{bound}/");
    let _ = server.await;
    Ok(())
}
