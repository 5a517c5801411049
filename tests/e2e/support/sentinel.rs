//! A real Sentinel setup for one test: a master, one replica and three
//! Sentinels watching them as `mymaster`, each a redis-server process on
//! free loopback ports, stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::tls::Certs;
use super::{distinct_free_ports, redis_cli, wait_blocking};

/// The name the Sentinels know the master by.
pub const MASTER_NAME: &str = "mymaster";

struct Process {
    port: u16,
    /// The TLS port, when the setup serves TLS.
    tls_port: Option<u16>,
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
        SentinelSetup::start_with(None)
    }

    /// The same, every process also serving TLS on a port of its own (and
    /// replicating and monitoring over TLS) when `certs` are given.
    pub fn start_with(certs: Option<&Certs>) -> SentinelSetup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports = distinct_free_ports(10);
        let tls_port = |index: usize| certs.map(|_| ports[5 + index]);
        let tls_args = |index: usize| -> Vec<String> {
            match certs {
                Some(certs) => certs
                    .server_args("server", ports[5 + index], "optional")
                    .into_iter()
                    .flat_map(|(name, value)| [format!("--{name}"), value])
                    .chain(["--tls-replication", "yes"].map(String::from))
                    .collect(),
                None => Vec::new(),
            }
        };
        let server = |port: u16, tls_port: Option<u16>, tls: Vec<String>, extra: &[&str]| {
            let data = dir.path().join(port.to_string());
            std::fs::create_dir_all(&data).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "yes", "--save", ""])
                .args(["--repl-diskless-sync-delay", "0"])
                .arg("--dir")
                .arg(&data)
                .args(&tls)
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (is it installed?)");
            Process {
                port,
                tls_port,
                child: Some(child),
            }
        };
        // Replicas and Sentinels reach the master by its TLS port in a TLS
        // setup, so that what Sentinels report is a TLS address.
        let master_port = tls_port(0).unwrap_or(ports[0]);
        let master = server(ports[0], tls_port(0), tls_args(0), &[]);
        let replica = server(
            ports[1],
            tls_port(1),
            tls_args(1),
            &["--replicaof", "127.0.0.1", &master_port.to_string()],
        );
        wait_blocking("the replica to sync", || {
            redis_cli(replica.port, &["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let sentinels = (2..5)
            .map(|index| {
                sentinel(
                    dir.path(),
                    ports[index],
                    tls_port(index),
                    master_port,
                    certs,
                )
            })
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

    /// The `redis+sentinel://` URL of the master (`rediss+sentinel://`
    /// with the Sentinels' TLS ports, in a TLS setup).
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.tls_port.unwrap_or(sentinel.port)))
            .collect();
        let scheme = if self.master.tls_port.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+sentinel://{}/{MASTER_NAME}", sentinels.join(","))
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the replica.
    pub fn freeze_replica(&self, frozen: bool) {
        if let Some(child) = &self.replica.child {
            let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
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

fn sentinel(
    dir: &Path,
    port: u16,
    tls_port: Option<u16>,
    master_port: u16,
    certs: Option<&Certs>,
) -> Process {
    let config = dir.join(format!("sentinel-{port}.conf"));
    let mut text = format!(
        "port {port}\nbind 127.0.0.1\ndir {}\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n",
        dir.display()
    );
    if let (Some(certs), Some(tls_port)) = (certs, tls_port) {
        for (name, value) in certs.server_args("server", tls_port, "optional") {
            text.push_str(&format!("{name} {value}\n"));
        }
        text.push_str("tls-replication yes\n");
    }
    std::fs::write(&config, text).unwrap();
    let child = Command::new("redis-server")
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts in Sentinel mode");
    Process {
        port,
        tls_port,
        child: Some(child),
    }
}

fn stop(process: &mut Process) {
    if let Some(mut child) = process.child.take() {
        child.kill().ok();
        child.wait().ok();
    }
}
