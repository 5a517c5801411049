//! A private `redis-server` child process, owned by whoever starts it.
//!
//! `wasmq dev` runs on one so that a newcomer needs no Redis of their own,
//! and every test starts one on a free loopback port so tests never share
//! state. The server lives in a temporary directory and dies with its
//! owner: on drop, and (on Linux) when the owning process dies.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a private Redis is set up.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Append-only file persistence (fsync on every write), so that a
    /// restart keeps every acknowledged write.
    pub appendonly: bool,
    /// Extra `--name value` arguments for redis-server.
    pub extra_args: Vec<(String, String)>,
}

/// A redis-server child process on a loopback port.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a redis-server with no persistence on a free loopback port.
    pub fn start() -> io::Result<RedisServer> {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts a redis-server with `options` on a free loopback port.
    pub fn start_with(options: RedisOptions) -> io::Result<RedisServer> {
        let mut last_error = None;
        // A free port can be taken between finding it and binding it:
        // try a few.
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: tempfile::Builder::new().prefix("wasmq-redis-").tempdir()?,
                options: options.clone(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(err),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// The `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .args(["--daemonize", "no"])
            .args([
                "--appendonly",
                if self.options.appendonly { "yes" } else { "no" },
            ])
            .args(["--appendfsync", "always"]);
        for (name, value) in &self.options.extra_args {
            command.arg(format!("--{name}")).arg(value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "redis-server was not found on PATH: install it (e.g. `apt-get install redis-server`), or use a Redis you run",
                )
            } else {
                err
            }
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited ({status}) on port {}: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(io::Error::other(format!(
                    "redis-server did not answer PING on port {} within 10s: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Stops the server with SIGKILL (a crash) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data
    /// directory (after [`stop`](Self::stop) or [`kill`](Self::kill)).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Where the append-only files live, when enabled.
    pub fn aof_dir(&self) -> PathBuf {
        self.dir.path().join("appendonlydir")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks the OS for a free loopback port.
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// True when a Redis answers PING on the port.
fn ping(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// Makes the child die if this process dies, so no orphaned redis-server
/// outlives `wasmq dev` or a test.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}
