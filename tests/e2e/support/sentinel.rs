//! A real Sentinel setup for one test: a master, one replica and three
//! Sentinels watching them as `mymaster`, each a redis-server process on
//! free loopback ports, stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{distinct_free_ports, redis_cli, wait_blocking};

/// The name the Sentinels know the master by.
pub const MASTER_NAME: &str = "mymaster";

struct Process {
    port: u16,
    child: Option<Child>,
}

/// A running master, replica and three Sentinels.
pub struct SentinelSetup {
    master: Process,
    replica: Process,
    sentinels: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl SentinelSetup {
    /// Starts everything and waits until the replica has synced and every
    /// Sentinel knows the master and the two other Sentinels.
    pub fn start() -> SentinelSetup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports = distinct_free_ports(5);
        let server = |port: u16, extra: &[&str]| {
            let data = dir.path().join(port.to_string());
            std::fs::create_dir_all(&data).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "yes", "--save", ""])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&data)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (is it installed?)");
            Process {
                port,
                child: Some(child),
            }
        };
        let master = server(ports[0], &[]);
        let replica = server(
            ports[1],
            &["--replicaof", "127.0.0.1", &ports[0].to_string()],
        );
        wait_blocking("the replica to sync", || {
            redis_cli(replica.port, &["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let sentinels = ports[2..]
            .iter()
            .map(|&port| sentinel(dir.path(), port, master.port))
            .collect();
        let setup = SentinelSetup {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        for sentinel in &setup.sentinels {
            wait_blocking("each Sentinel to know the master and the others", || {
                redis_cli(sentinel.port, &["SENTINEL", "MASTER", MASTER_NAME]).is_some_and(|info| {
                    let lines: Vec<&str> = info.lines().collect();
                    lines
                        .windows(2)
                        .any(|pair| pair[0] == "num-other-sentinels" && pair[1] == "2")
                })
            });
        }
        setup
    }

    /// The `redis+sentinel://` URL of the master.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", sentinels.join(","))
    }

    /// The port of the master as the first live Sentinel reports it.
    pub fn master_port(&self) -> u16 {
        let sentinel = self
            .sentinels
            .iter()
            .find(|sentinel| sentinel.child.is_some())
            .expect("a live Sentinel");
        let reply = redis_cli(
            sentinel.port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )
        .expect("the Sentinel answers");
        reply
            .lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .expect("a master address")
    }

    /// The port the master was started on.
    pub fn original_master_port(&self) -> u16 {
        self.master.port
    }

    /// The port the replica was started on.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// Kills (SIGKILL) the original master.
    pub fn kill_master(&mut self) {
        stop(&mut self.master);
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            stop(sentinel);
        }
        stop(&mut self.replica);
        stop(&mut self.master);
    }
}

fn sentinel(dir: &Path, port: u16, master_port: u16) -> Process {
    let config = dir.join(format!("sentinel-{port}.conf"));
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n",
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("redis-server")
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts in Sentinel mode");
    Process {
        port,
        child: Some(child),
    }
}

fn stop(process: &mut Process) {
    if let Some(mut child) = process.child.take() {
        child.kill().ok();
        child.wait().ok();
    }
}
