//! How the broker reaches Redis: one server, a Redis Cluster, or the master
//! Sentinels name, in plain text or over TLS.
//!
//! - `redis://[:PASSWORD@]HOST[:PORT][/DB]` (`rediss://…` over TLS): one
//!   server.
//! - `redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,…/MASTER`
//!   (`rediss+sentinel://…`: TLS to the Sentinels and to the master): the
//!   master named MASTER, as the listed Sentinels report it. The password
//!   is the master's.
//! - `redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,…`
//!   (`rediss+cluster://…`): a Redis Cluster, found from any of the seed
//!   nodes. Commands go to the master of their key's slot and follow
//!   `MOVED` / `ASK` and failovers. Every script and pipeline the broker
//!   sends keeps its keys in one slot (a queue's keys share its `{hash
//!   tag}`; the fleet, cron and plugin keys have theirs), so nothing needs
//!   cross-slot support. Pub/sub goes through one seed node at a time:
//!   Redis Cluster forwards every `PUBLISH` to all nodes.
//!
//! One server and a Sentinel-watched master are reached through a
//! [`Reconnecting`] connection: one multiplexed connection, dropped on any
//! connection error or `READONLY` reply (a demoted master) and opened
//! again by the next command, asking the Sentinels again first, so an
//! outage or a failover is ridden through by the callers' retries. Every
//! connection it opens is named with `CLIENT SETNAME` (see
//! [`ConnectOptions::name`]) before its first command, so an operator can
//! tell wasmq's connections apart in `CLIENT LIST`. Cluster node
//! connections are named the same way as the cluster client opens them.
//! Pub/sub connections are not named (redis-rs sends nothing but
//! subscriptions on them).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture,
    TlsCertificates, TlsMode, Value,
};

use super::durable::WaitReplicas;
use super::{Error, TlsFailure};

/// How to reach Redis beyond its URL: TLS material, the name connections
/// carry, and whether writes wait for replicas.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The name every connection gets with `CLIENT SETNAME` (at most 64
    /// characters of `!` to `~`; no spaces), such as `wasmq:worker:<id>`,
    /// `wasmq:cli:enqueue` or `wasmq:client:rust:<host>:<pid>`. On a
    /// cluster, node connections take the name of the process's most
    /// recent cluster broker that set one (redis-rs opens them without
    /// telling which client they serve).
    pub name: Option<String>,
    /// Certificates and checks for `rediss://` URLs.
    pub tls: TlsOptions,
    /// When set, enqueues through this connection return only once that
    /// many replicas have them. (A worker's completions wait when
    /// [`WorkerBuilder::wait_replicas`](crate::WorkerBuilder::wait_replicas)
    /// says so.)
    pub wait_replicas: Option<WaitReplicas>,
}

/// TLS settings for `rediss://`, `rediss+cluster://` and
/// `rediss+sentinel://` URLs. Without a CA file the system's trusted roots
/// are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM file of the CA certificates that may sign the server's
    /// certificate (instead of the system's roots).
    pub ca_file: Option<PathBuf>,
    /// A PEM file with this client's certificate (and chain), for servers
    /// that require client certificates (`tls-auth-clients yes`).
    pub cert_file: Option<PathBuf>,
    /// The PEM file of the private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept a certificate that does not name the host connected to (it
    /// must still be signed by a trusted CA and be valid now). For nodes
    /// announced by an address their certificate does not list.
    pub skip_hostname_check: bool,
}

impl TlsOptions {
    /// Whether any option is set.
    pub fn is_set(&self) -> bool {
        *self != TlsOptions::default()
    }

    /// The certificates to use, read from their files (`None`: the
    /// system's roots and no client certificate).
    fn certificates(&self, shown: &str) -> Result<Option<TlsCertificates>, Error> {
        let refused = |problem: String| Error::Tls {
            url: shown.to_string(),
            kind: TlsFailure::Files,
            problem,
        };
        let read = |what: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|err| refused(format!("cannot read the {what} {}: {err}", path.display())))
        };
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("client certificate file", cert)?,
                client_key: read("client key file", key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(refused(
                    "a client certificate needs both its certificate file and its key file".into(),
                ));
            }
        };
        let root_cert = match &self.ca_file {
            Some(ca) => Some(read("CA file", ca)?),
            None => None,
        };
        if client_tls.is_none() && root_cert.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// Where Redis is, parsed from a URL and its options.
#[derive(Clone)]
pub enum Target {
    /// One server.
    Single(Box<redis::Client>),
    /// A cluster, and clients for its seed nodes (for pub/sub).
    Cluster(Arc<ClusterClient>, Vec<redis::Client>),
    /// A master found through Sentinels.
    Sentinel(Arc<SentinelConfig>),
}

/// What is needed to ask Sentinels for their master, again at every
/// connection.
pub struct SentinelConfig {
    sentinels: Vec<ConnectionAddr>,
    master: String,
    password: Option<String>,
    tls: Option<Option<TlsCertificates>>,
    skip_hostname_check: bool,
}

impl SentinelConfig {
    fn client(&self) -> Result<SentinelClient, redis::RedisError> {
        let mut builder = SentinelClientBuilder::new(
            self.sentinels.clone(),
            &self.master,
            SentinelServerType::Master,
        )?;
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(certificates) = &self.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates.clone());
            }
        }
        builder.build()
    }
}

/// Splits `[:PASSWORD@]HOST:PORT,HOST:PORT,…` into the userinfo (with its
/// `@`, or empty) and the node list.
fn split_auth(rest: &str) -> (&str, &str) {
    match rest.rsplit_once('@') {
        Some((auth, nodes)) => (&rest[..auth.len() + 1], nodes),
        None => ("", rest),
    }
}

/// The comma-separated nodes of a cluster or Sentinel URL.
fn node_list(nodes: &str) -> Vec<&str> {
    nodes
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect()
}

impl Target {
    /// Parses `url` with its TLS options; `shown` is the URL with any
    /// password hidden, for errors.
    pub fn parse(url: &str, shown: &str, tls: &TlsOptions) -> Result<Target, Error> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.to_string(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("no scheme".into()))?;
        let secure = scheme.starts_with("rediss");
        if tls.is_set() && !secure {
            return Err(invalid(format!(
                "TLS options were given but the URL's scheme is {scheme}://; use {}:// for TLS",
                scheme.replacen("redis", "rediss", 1)
            )));
        }
        let certificates = if secure {
            Some(tls.certificates(shown)?)
        } else {
            None
        };
        let node_scheme = if secure { "rediss" } else { "redis" };
        match scheme {
            "redis+cluster" | "rediss+cluster" => {
                let (auth, nodes) = split_auth(rest);
                let seeds: Vec<String> = node_list(nodes.trim_end_matches('/'))
                    .into_iter()
                    .map(|node| format!("{node_scheme}://{auth}{node}"))
                    .collect();
                if seeds.is_empty() {
                    return Err(invalid(format!(
                        "no seed nodes: write {scheme}://HOST:PORT,HOST:PORT,…"
                    )));
                }
                let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(Duration::from_secs(3))
                    .response_timeout(Duration::from_secs(10))
                    .retries(6)
                    .min_retry_wait(100)
                    .max_retry_wait(2_000);
                if let Some(Some(certificates)) = &certificates {
                    builder = builder.certs(certificates.clone());
                }
                if secure && tls.skip_hostname_check {
                    builder = builder.danger_accept_invalid_hostnames(true);
                }
                let client = builder.build().map_err(|err| invalid(err.to_string()))?;
                let seed_clients = seeds
                    .iter()
                    .map(|seed| single_client(seed, &certificates, tls.skip_hostname_check))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| invalid(err.to_string()))?;
                Ok(Target::Cluster(Arc::new(client), seed_clients))
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (auth, rest) = split_auth(rest);
                let password = (!auth.is_empty()).then(|| {
                    let auth = auth.trim_end_matches('@');
                    auth.split_once(':')
                        .map_or(auth, |(_, password)| password)
                        .to_string()
                });
                let Some((nodes, master)) = rest.split_once('/').filter(|(_, m)| !m.is_empty())
                else {
                    return Err(invalid(format!(
                        "no master name: write {scheme}://HOST:PORT,HOST:PORT,…/MASTER"
                    )));
                };
                let sentinels = node_list(nodes)
                    .into_iter()
                    .map(|node| {
                        format!("{node_scheme}://{node}")
                            .as_str()
                            .into_connection_info()
                            .map(|info| info.addr().clone())
                            .map_err(|err| invalid(err.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if sentinels.is_empty() {
                    return Err(invalid(format!(
                        "no Sentinels: write {scheme}://HOST:PORT,HOST:PORT,…/MASTER"
                    )));
                }
                let config = SentinelConfig {
                    sentinels,
                    master: master.to_string(),
                    password,
                    tls: certificates,
                    skip_hostname_check: tls.skip_hostname_check,
                };
                config.client().map_err(|err| invalid(err.to_string()))?;
                Ok(Target::Sentinel(Arc::new(config)))
            }
            "redis" | "rediss" => single_client(url, &certificates, tls.skip_hostname_check)
                .map(|client| Target::Single(Box::new(client)))
                .map_err(|err| invalid(err.to_string())),
            other => Err(invalid(format!("unknown scheme {other}://"))),
        }
    }

    /// Opens a connection named `name`.
    pub async fn connect(&self, name: Option<&str>) -> Result<Connection, redis::RedisError> {
        match self {
            Target::Single(client) => {
                let conn = Reconnecting::new(Source::Server(client.as_ref().clone()), name);
                // Fail now if Redis does not answer.
                conn.connection().await?;
                Ok(Connection::Single(Arc::new(conn)))
            }
            Target::Cluster(client, _) => {
                if let Some(name) = name {
                    *CLUSTER_CONNECTION_NAME
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Some(name.to_string());
                }
                client
                    .get_async_generic_connection::<NamedNode>()
                    .await
                    .map(Connection::Cluster)
            }
            Target::Sentinel(config) => {
                let source = Source::Sentinel {
                    client: tokio::sync::Mutex::new(config.client()?),
                    skip_hostname_check: config.skip_hostname_check,
                };
                let conn = Reconnecting::new(source, name);
                // Fail now, as a single server would, if no master is known.
                conn.connection().await?;
                Ok(Connection::Sentinel(Arc::new(conn)))
            }
        }
    }

    /// Where pub/sub connections are opened: the server, each seed node
    /// in turn, or the current master.
    pub fn pubsub(&self) -> Result<Arc<PubSubClients>, redis::RedisError> {
        let clients = match self {
            Target::Single(client) => vec![client.as_ref().clone()],
            Target::Cluster(_, seeds) => seeds.clone(),
            Target::Sentinel(config) => {
                return Ok(Arc::new(PubSubClients {
                    clients: Vec::new(),
                    next: AtomicUsize::new(0),
                    sentinel: Some(Arc::new(Reconnecting::new(
                        Source::Sentinel {
                            client: tokio::sync::Mutex::new(config.client()?),
                            skip_hostname_check: config.skip_hostname_check,
                        },
                        None,
                    ))),
                }));
            }
        };
        Ok(Arc::new(PubSubClients {
            clients,
            next: AtomicUsize::new(0),
            sentinel: None,
        }))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(..))
    }
}

/// A client for one server: `certificates` is `None` for plain text,
/// `Some(None)` for TLS with the system's roots.
fn single_client(
    url: &str,
    certificates: &Option<Option<TlsCertificates>>,
    skip_hostname_check: bool,
) -> Result<redis::Client, redis::RedisError> {
    let client = match certificates {
        Some(Some(certificates)) => redis::Client::build_with_tls(url, certificates.clone())?,
        _ => redis::Client::open(url)?,
    };
    if certificates.is_some() && skip_hostname_check {
        return without_hostname_check(&client);
    }
    Ok(client)
}

/// A client like `client` that does not check that the server's
/// certificate names the host (it still checks the rest).
fn without_hostname_check(client: &redis::Client) -> Result<redis::Client, redis::RedisError> {
    let info = client.get_connection_info().clone();
    let mut addr = info.addr().clone();
    addr.set_danger_accept_invalid_hostnames(true);
    redis::Client::open(info.set_addr(addr))
}

/// A connection to one server, to a cluster, or to the master Sentinels
/// name; cheap to clone.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(Arc<Reconnecting>),
    /// A cluster.
    Cluster(ClusterConnection<NamedNode>),
    /// The master the Sentinels name.
    Sentinel(Arc<Reconnecting>),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
            Connection::Single(conn) | Connection::Sentinel(conn) => Box::pin(async move {
                let mut current = conn.connection().await?;
                let reply = current.req_packed_command(cmd).await;
                conn.forget_on_failure(&reply);
                reply
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Single(conn) | Connection::Sentinel(conn) => Box::pin(async move {
                let mut current = conn.connection().await?;
                let reply = current.req_packed_commands(pipeline, offset, count).await;
                conn.forget_on_failure(&reply);
                reply
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Cluster(conn) => conn.get_db(),
            Connection::Single(conn) => match &conn.source {
                Source::Server(client) => client.get_connection_info().redis_settings().db(),
                Source::Sentinel { .. } => 0,
            },
            Connection::Sentinel(_) => 0,
        }
    }
}

/// Where a [`Reconnecting`] connection's server comes from.
enum Source {
    /// A fixed server.
    Server(redis::Client),
    /// The master the Sentinels name at each connection.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        skip_hostname_check: bool,
    },
}

impl Source {
    /// A client for the server to connect to now.
    async fn client(&self) -> Result<redis::Client, redis::RedisError> {
        match self {
            Source::Server(client) => Ok(client.clone()),
            Source::Sentinel {
                client,
                skip_hostname_check,
            } => {
                let master = client.lock().await.async_get_client().await?;
                let secure = matches!(
                    master.get_connection_info().addr(),
                    ConnectionAddr::TcpTls { .. }
                );
                if *skip_hostname_check && secure {
                    return without_hostname_check(&master);
                }
                Ok(master)
            }
        }
    }
}

/// One multiplexed connection, opened (and named) on first use and again
/// after it failed.
pub struct Reconnecting {
    source: Source,
    name: Option<String>,
    current: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held while a connection is being opened, so that a burst of
    /// commands after an outage opens one connection, not one each.
    opening: tokio::sync::Mutex<()>,
}

impl Reconnecting {
    fn new(source: Source, name: Option<&str>) -> Reconnecting {
        Reconnecting {
            source,
            name: name.map(str::to_string),
            current: std::sync::Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        // A poisoned lock only means a panic elsewhere while replacing an
        // Option; the value is still whole.
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The open connection, opening and naming one if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let _opening = self.opening.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let mut conn = self
            .source
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        if let Some(name) = &self.name {
            set_name(&mut conn, name).await?;
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection after an error that means the server went away
    /// or was demoted, so that the next command opens a new one (asking
    /// the Sentinels again, if that is where the server comes from).
    fn forget_on_failure<T>(&self, reply: &Result<T, redis::RedisError>) {
        if let Err(err) = reply
            && (err.is_io_error()
                || err.is_connection_dropped()
                || err.is_timeout()
                || err.is_unrecoverable_error()
                || err.code() == Some("READONLY"))
        {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Names a connection (`CLIENT SETNAME`). A server that refuses the
/// command (an ACL without `CLIENT`) leaves the connection unnamed;
/// losing the connection is an error.
async fn set_name<C: ConnectionLike>(conn: &mut C, name: &str) -> Result<(), redis::RedisError> {
    let reply: Result<(), redis::RedisError> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async(conn)
        .await;
    match reply {
        Err(err) if err.is_io_error() || err.is_connection_dropped() || err.is_timeout() => {
            Err(err)
        }
        Err(err) => {
            tracing::debug!(%err, name, "the connection could not be named");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The name cluster node connections get; see [`ConnectOptions::name`].
static CLUSTER_CONNECTION_NAME: RwLock<Option<String>> = RwLock::new(None);

/// A cluster node's connection, named as it is opened.
#[derive(Clone)]
pub struct NamedNode(MultiplexedConnection);

impl ConnectionLike for NamedNode {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl redis::cluster_async::Connect for NamedNode {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let mut conn =
                <MultiplexedConnection as redis::cluster_async::Connect>::connect_with_config(
                    info, config,
                )
                .await?;
            let name = CLUSTER_CONNECTION_NAME
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(name) = name {
                set_name(&mut conn, &name).await?;
            }
            Ok(NamedNode(conn))
        })
    }
}

/// Where pub/sub connections are opened: fixed clients tried in turn (so a
/// dead seed node is skipped), or the master the Sentinels name now.
pub struct PubSubClients {
    clients: Vec<redis::Client>,
    next: AtomicUsize,
    sentinel: Option<Arc<Reconnecting>>,
}

impl PubSubClients {
    /// Opens a pub/sub connection.
    pub async fn open(&self) -> Result<redis::aio::PubSub, redis::RedisError> {
        if let Some(master) = &self.sentinel {
            return master.source.client().await?.get_async_pubsub().await;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[index].get_async_pubsub().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, Error> {
        Target::parse(url, url, &TlsOptions::default())
    }

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        let Ok(Target::Cluster(_, seeds)) =
            parse("redis+cluster://:pw@127.0.0.1:7000, 127.0.0.1:7001")
        else {
            panic!("a cluster URL");
        };
        let addresses: Vec<String> = seeds
            .iter()
            .map(|seed| seed.get_connection_info().addr().to_string())
            .collect();
        assert_eq!(addresses, ["127.0.0.1:7000", "127.0.0.1:7001"]);
        assert_eq!(
            seeds[0].get_connection_info().redis_settings().password(),
            Some("pw")
        );
        let err = parse("redis+cluster://").err().expect("refused");
        assert!(err.to_string().contains("no seed nodes"), "{err}");
    }

    #[test]
    fn sentinel_urls_need_a_master_name() {
        assert!(matches!(
            parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster"),
            Ok(Target::Sentinel(_))
        ));
        for url in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
        ] {
            let err = parse(url).err().expect("refused");
            assert!(err.to_string().contains("no master name"), "{url}: {err}");
        }
    }

    #[test]
    fn single_server_urls_are_checked() {
        assert!(matches!(
            parse("redis://127.0.0.1:6379/0"),
            Ok(Target::Single(_))
        ));
        assert!(parse("http://127.0.0.1").is_err());
    }

    #[test]
    fn tls_options_need_a_tls_url_and_readable_files() {
        let tls = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let err = Target::parse("redis://127.0.0.1:6379", "shown", &tls)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("use rediss://"), "{err}");
        let err = Target::parse("rediss://127.0.0.1:6379", "shown", &tls)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let half = TlsOptions {
            cert_file: Some("/tmp/cert.pem".into()),
            ..TlsOptions::default()
        };
        let err = Target::parse("rediss+cluster://127.0.0.1:7000", "shown", &half)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("its key file"), "{err}");
        assert!(matches!(
            Target::parse(
                "rediss+sentinel://127.0.0.1:26379/mymaster",
                "shown",
                &TlsOptions::default()
            ),
            Ok(Target::Sentinel(_))
        ));
    }
}
