//! `wasmq dashboard`: the web dashboard on its own.

use std::net::SocketAddr;

use crate::broker::Broker;
use crate::ops::dashboard::{self, DashboardConfig};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::RedisArgs;
use super::parse::Failure;
use super::worker::{connect, shutdown_on_signal};

/// Arguments of `wasmq dashboard`.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. Beyond loopback, every API request (reads too)
    /// needs the token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) access: AccessArgs,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Who may see and change things through the dashboard.
#[derive(Debug, Args)]
pub(crate) struct AccessArgs {
    /// Show everything, change nothing: run, archive, delete, cancel, pause
    /// and resume are refused.
    #[arg(long = "read-only")]
    pub(crate) read_only: bool,
    /// The token every API request (reads and writes) must carry, as
    /// `Authorization: Bearer TOKEN`; the page asks for it and keeps it for
    /// the browser tab (sessionStorage). When the dashboard listens beyond
    /// loopback and no token is given, one is generated and printed. An
    /// empty token is refused.
    #[arg(long, env = "WASMQ_DASHBOARD_TOKEN", value_name = "TOKEN", value_parser = parse_token)]
    pub(crate) token: Option<String>,
    /// Also answer requests whose Host header names NAME (with any port),
    /// e.g. the name of a reverse proxy in front of the dashboard. By
    /// default only the listen address and 127.0.0.1, localhost and [::1]
    /// with its port are answered (others get 421), so a page on another
    /// name cannot read the dashboard through DNS rebinding. A proxy must
    /// pass the client's Host on. Repeatable.
    #[arg(long = "allow-host", value_name = "NAME", value_parser = parse_host_name)]
    pub(crate) allow_host: Vec<String>,
}

fn parse_token(text: &str) -> Result<String, String> {
    dashboard::check_token(text).map(|()| text.to_string())
}

fn parse_host_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-.:[]_".contains(&byte));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a host name: give the name alone, as in --allow-host dash.example.com"
        ))
    }
}

impl AccessArgs {
    /// The dashboard settings for an address.
    pub(crate) fn config(&self, listen: &SocketAddr) -> Result<DashboardConfig, Failure> {
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None if !dashboard::is_loopback(listen) => {
                let token = uuid::Uuid::new_v4().simple().to_string();
                println!("dashboard token (needed for every request beyond loopback): {token}");
                Some(token)
            }
            None => None,
        };
        let config = DashboardConfig {
            read_only: self.read_only,
            token,
            allowed_hosts: self.allow_host.clone(),
        };
        dashboard::check_config(&config, listen).map_err(|message| anyhow::anyhow!(message))?;
        Ok(config)
    }
}

/// Binds `listen` and serves the dashboard on `broker` until `shutdown`;
/// returns the address actually bound.
pub(crate) async fn start(
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
    let config = access.config(&bound)?;
    let server = tokio::spawn(async move {
        if let Err(err) = dashboard::serve(listener, broker, config, shutdown).await {
            tracing::error!(%err, "the dashboard stopped");
        }
    });
    Ok((bound, server))
}

/// Runs `wasmq dashboard`.
pub(crate) async fn run(args: DashboardArgs) -> Result<(), Failure> {
    let shutdown = shutdown_on_signal();
    let options = args.redis.options(super::cli_name("dashboard"));
    let Some(broker) = connect(&args.redis.url, &options, false, &shutdown).await? else {
        return Ok(());
    };
    let (bound, server) = start(args.listen, &args.access, broker, shutdown).await?;
    println!("dashboard: http://{bound}/");
    let _ = server.await;
    Ok(())
}
