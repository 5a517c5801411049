//! How the broker reaches Redis: one server, or a Redis Cluster.
//!
//! - `redis://[:PASSWORD@]HOST[:PORT][/DB]` and `rediss://…`: one server,
//!   through a connection manager that reconnects by itself.
//! - `redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT,…/MASTER`: the master
//!   named MASTER, as the listed Sentinels report it. The connection is
//!   dropped on any connection error or `READONLY` reply (a demoted master)
//!   and the next command asks the Sentinels again, so a failover is ridden
//!   through like an outage: the worker's retries carry on once the new
//!   master is known. The password is the master's.
//! - `redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,…`: a Redis Cluster,
//!   found from any of the seed nodes. Commands go to the master of their
//!   key's slot and follow `MOVED` / `ASK` and failovers. Every script and
//!   pipeline the broker sends keeps its keys in one slot (a queue's keys
//!   share its `{hash tag}`; the fleet, cron and plugin keys have theirs), so
//!   nothing needs cross-slot support. Pub/sub goes through one seed node at
//!   a time: Redis Cluster forwards every `PUBLISH` to all nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::Error;

/// The scheme of a cluster URL.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Where Redis is, parsed from a URL.
#[derive(Clone)]
pub enum Target {
    /// One server.
    Single(redis::Client),
    /// A cluster, by its seed nodes (`redis://` URLs, one per node).
    Cluster(Vec<String>),
    /// A master found through Sentinels.
    Sentinel(Arc<SentinelMaster>),
}

impl Target {
    /// Parses `url`; `shown` is the URL with any password hidden, for
    /// errors.
    pub fn parse(url: &str, shown: &str) -> Result<Target, Error> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: shown.to_string(),
            reason,
        };
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let (auth, nodes) = match rest.rsplit_once('@') {
                Some((auth, nodes)) => (format!("{auth}@"), nodes),
                None => (String::new(), rest),
            };
            let nodes = nodes.trim_end_matches('/');
            let seeds: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| format!("redis://{auth}{node}"))
                .collect();
            if seeds.is_empty() {
                return Err(invalid(
                    "no seed nodes: write redis+cluster://HOST:PORT,HOST:PORT,…".into(),
                ));
            }
            for seed in &seeds {
                redis::Client::open(seed.as_str()).map_err(|err| invalid(err.to_string()))?;
            }
            return Ok(Target::Cluster(seeds));
        }
        if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
            let (password, rest) = match rest.rsplit_once('@') {
                Some((auth, rest)) => {
                    let password = auth.split_once(':').map_or(auth, |(_, password)| password);
                    (Some(password.to_string()), rest)
                }
                None => (None, rest),
            };
            let Some((nodes, master)) = rest.split_once('/').filter(|(_, m)| !m.is_empty()) else {
                return Err(invalid(
                    "no master name: write redis+sentinel://HOST:PORT,HOST:PORT,…/MASTER".into(),
                ));
            };
            let sentinels: Vec<String> = nodes
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| format!("redis://{node}"))
                .collect();
            if sentinels.is_empty() {
                return Err(invalid(
                    "no Sentinels: write redis+sentinel://HOST:PORT,HOST:PORT,…/MASTER".into(),
                ));
            }
            let master = SentinelMaster::new(sentinels, master, password)
                .map_err(|err| invalid(err.to_string()))?;
            return Ok(Target::Sentinel(Arc::new(master)));
        }
        redis::Client::open(url)
            .map(Target::Single)
            .map_err(|err| invalid(err.to_string()))
    }

    /// Connects.
    pub async fn connect(&self) -> Result<Connection, redis::RedisError> {
        match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(3)))
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_number_of_retries(3)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(Connection::Single)
            }
            Target::Cluster(seeds) => ClusterClient::builder(seeds.iter().map(String::as_str))
                .connection_timeout(Duration::from_secs(3))
                .response_timeout(Duration::from_secs(10))
                .retries(6)
                .min_retry_wait(100)
                .max_retry_wait(2_000)
                .build()?
                .get_async_connection()
                .await
                .map(Connection::Cluster),
            Target::Sentinel(master) => {
                // Fail now, as a single server would, if no master is known.
                master.connection().await?;
                Ok(Connection::Sentinel(master.clone()))
            }
        }
    }

    /// Where pub/sub connections are opened: the server, each seed node
    /// in turn, or the current master.
    pub fn pubsub(&self) -> Result<Arc<PubSubClients>, redis::RedisError> {
        let clients = match self {
            Target::Single(client) => vec![client.clone()],
            Target::Cluster(seeds) => seeds
                .iter()
                .map(|seed| redis::Client::open(seed.as_str()))
                .collect::<Result<_, _>>()?,
            Target::Sentinel(master) => {
                return Ok(Arc::new(PubSubClients {
                    clients: Vec::new(),
                    next: AtomicUsize::new(0),
                    sentinel: Some(master.clone()),
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
        matches!(self, Target::Cluster(_))
    }
}

/// A connection to one server or to a cluster; cheap to clone.
#[derive(Clone)]
pub enum Connection {
    /// One server.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
    /// The master the Sentinels name.
    Sentinel(Arc<SentinelMaster>),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
            Connection::Sentinel(master) => Box::pin(async move {
                let mut conn = master.connection().await?;
                let reply = conn.req_packed_command(cmd).await;
                master.forget_on_failover(&reply);
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
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(master) => Box::pin(async move {
                let mut conn = master.connection().await?;
                let reply = conn.req_packed_commands(pipeline, offset, count).await;
                master.forget_on_failover(&reply);
                reply
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
            Connection::Sentinel(_) => 0,
        }
    }
}

/// Where pub/sub connections are opened: fixed clients tried in turn (so a
/// dead seed node is skipped), or the master the Sentinels name now.
pub struct PubSubClients {
    clients: Vec<redis::Client>,
    next: AtomicUsize,
    sentinel: Option<Arc<SentinelMaster>>,
}

impl PubSubClients {
    /// Opens a pub/sub connection.
    pub async fn open(&self) -> Result<redis::aio::PubSub, redis::RedisError> {
        if let Some(master) = &self.sentinel {
            return master.client().await?.get_async_pubsub().await;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[index].get_async_pubsub().await
    }
}

/// A master found through Sentinels, and the connection to it while it
/// lasts.
pub struct SentinelMaster {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    current: std::sync::Mutex<Option<MultiplexedConnection>>,
}

impl SentinelMaster {
    fn new(
        sentinels: Vec<String>,
        master: &str,
        password: Option<String>,
    ) -> Result<SentinelMaster, redis::RedisError> {
        let node = password.map(|password| {
            SentinelNodeConnectionInfo::default().set_redis_connection_info(
                redis::RedisConnectionInfo::default().set_password(password),
            )
        });
        let client = SentinelClient::build(
            sentinels,
            master.to_string(),
            node,
            SentinelServerType::Master,
        )?;
        Ok(SentinelMaster {
            sentinels: tokio::sync::Mutex::new(client),
            current: std::sync::Mutex::new(None),
        })
    }

    /// A client for the master the Sentinels name now.
    async fn client(&self) -> Result<redis::Client, redis::RedisError> {
        self.sentinels.lock().await.async_get_client().await
    }

    /// The connection to the current master, asking the Sentinels first if
    /// there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        if let Some(conn) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(conn);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let conn = self
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the connection after an error that means the master went away
    /// or was demoted, so that the next command asks the Sentinels again.
    fn forget_on_failover<T>(&self, reply: &Result<T, redis::RedisError>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, Error> {
        Target::parse(url, url)
    }

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        let Ok(Target::Cluster(seeds)) =
            parse("redis+cluster://:pw@127.0.0.1:7000, 127.0.0.1:7001")
        else {
            panic!("a cluster URL");
        };
        assert_eq!(
            seeds,
            ["redis://:pw@127.0.0.1:7000", "redis://:pw@127.0.0.1:7001"]
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
}
