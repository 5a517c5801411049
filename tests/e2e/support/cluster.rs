//! A real Redis Cluster for one test: 3 masters and 3 replicas, each a
//! redis-server process on free loopback ports (client and cluster bus),
//! joined with `redis-cli --cluster create`, every replica synced before
//! the test starts, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::tls::Certs;
use super::{distinct_free_ports, redis_cli, wait_blocking};

/// One node of the cluster.
struct Node {
    port: u16,
    /// Its TLS port, when the cluster serves TLS.
    tls_port: Option<u16>,
    child: Option<Child>,
}

/// A running 6-node cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts 6 nodes with `appendonly yes` and a 1 s node timeout, creates
    /// the cluster (3 masters, one replica each) and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(None)
    }

    /// The same, with every node also serving TLS on a port of its own
    /// (the cluster bus and replication over TLS too, so TLS clients are
    /// told TLS ports) when `certs` are given.
    pub fn start_with(certs: Option<&Certs>) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut nodes = Vec::new();
        let ports = distinct_free_ports(18);
        for triple in ports.chunks(3) {
            let (port, bus) = (triple[0], triple[1]);
            let tls_port = certs.map(|_| triple[2]);
            let tls_args: Vec<String> = match certs {
                Some(certs) => certs
                    .server_args("server", triple[2], "optional")
                    .into_iter()
                    .flat_map(|(name, value)| [format!("--{name}"), value])
                    .chain(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from))
                    .collect(),
                None => Vec::new(),
            };
            let node_dir: PathBuf = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--cluster-port", &bus.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", "1000"])
                // A replica may take over however long it was cut off.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--appendonly", "yes"])
                // Replicas sync at once (the default waits 5 s for more).
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--save", ""])
                .arg("--dir")
                .arg(&node_dir)
                .args(&tls_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (is it installed?)");
            nodes.push(Node {
                port,
                tls_port,
                child: Some(child),
            });
        }
        let cluster = RedisCluster {
            nodes,
            tls: certs.is_some(),
            _dir: dir,
        };
        for node in &cluster.nodes {
            wait_blocking(&format!("node {} to answer PING", node.port), || {
                redis_cli(node.port, &["PING"]).is_some_and(|reply| reply.trim() == "PONG")
            });
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.tls_port.unwrap_or(node.port)))
            .collect();
        let created = Command::new("redis-cli")
            .args(certs.map(Certs::cli_args).unwrap_or_default())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for node in &cluster.nodes {
            wait_blocking(&format!("node {} to see the cluster ok", node.port), || {
                redis_cli(node.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            // A replica counts once it has synced with its master.
            wait_blocking(
                &format!("node {} to be a master or a synced replica", node.port),
                || {
                    redis_cli(node.port, &["INFO", "replication"]).is_some_and(|info| {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    })
                },
            );
        }
        cluster
    }

    /// The `redis+cluster://` URL naming every node as a seed
    /// (`rediss+cluster://` with the TLS ports, for a TLS cluster).
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.tls_port.unwrap_or(node.port)))
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", seeds.join(","))
    }

    /// The plain ports of the nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// A `redis://` URL per node, for a plain cluster client.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The `HOST:PORT` of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> String {
        let port = self
            .nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a live node")
            .port;
        let slot: u16 = redis_cli(port, &["CLUSTER", "KEYSLOT", key])
            .expect("CLUSTER KEYSLOT answers")
            .trim()
            .parse()
            .expect("a slot number");
        // `CLUSTER SHARDS` would be nicer; `redis-cli` prints `CLUSTER
        // SLOTS` flat: start, end, then host, port, id per node.
        let slots = redis_cli(port, &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS answers");
        let lines: Vec<&str> = slots.lines().map(str::trim).collect();
        let mut index = 0;
        while index + 4 < lines.len() {
            if let (Ok(start), Ok(end)) =
                (lines[index].parse::<u16>(), lines[index + 1].parse::<u16>())
                && lines[index + 2] == "127.0.0.1"
                && (start..=end).contains(&slot)
            {
                return format!("127.0.0.1:{}", lines[index + 3]);
            }
            index += 1;
        }
        panic!("no master found for slot {slot} in:\n{slots}");
    }

    /// Kills (SIGKILL) the node at `address` (`HOST:PORT`).
    pub fn kill(&mut self, address: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| format!("127.0.0.1:{}", node.port) == address)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }
}
