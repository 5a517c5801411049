//! Certificates made at test time (a CA, a server certificate for
//! `localhost` and 127.0.0.1, a client certificate, an expired server
//! certificate and an unrelated CA), and a redis-server serving TLS with
//! them beside its plain port (kept for readiness checks and for looking
//! at the server from the test).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use wasmq::dev::{RedisOptions, RedisServer};

use super::free_port;

/// The files of one test's certificates, in a temporary directory.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// Makes `ca.pem`; `server.pem`/`server.key` (valid now, for
    /// localhost and 127.0.0.1); `expired.pem`/`expired.key` (the same,
    /// but valid only in 2020); `client.pem`/`client.key`; and
    /// `other-ca.pem`, a CA that signed none of them.
    pub fn make() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("wasmq-tls-")
            .tempdir()
            .expect("a temporary directory");
        let ca = authority("wasmq test CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let other = authority("some other CA");
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        let leaf = |name: &str, purposes: &[ExtendedKeyUsagePurpose], years: (i32, i32)| {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .expect("valid names");
            params
                .distinguished_name
                .push(DnType::CommonName, format!("wasmq test {name}"));
            params.extended_key_usages = purposes.to_vec();
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.not_before = date_time_ymd(years.0, 1, 1);
            params.not_after = date_time_ymd(years.1, 1, 1);
            let key = KeyPair::generate().expect("a key");
            let cert = params.signed_by(&key, &ca).expect("a certificate");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        // Servers present their certificate as clients too (the cluster
        // bus, replication, Sentinels monitoring over TLS).
        let server = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf("server", &server, (2020, 2200));
        leaf("expired", &server, (2019, 2020));
        leaf(
            "client",
            &[ExtendedKeyUsagePurpose::ClientAuth],
            (2020, 2200),
        );
        Certs { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// redis-server arguments serving TLS on `port` with the certificate
    /// `cert` (`server` or `expired`), trusting this CA for clients.
    pub fn server_args(&self, cert: &str, port: u16, auth_clients: &str) -> Vec<(String, String)> {
        [
            ("tls-port", port.to_string()),
            (
                "tls-cert-file",
                self.path(&format!("{cert}.pem")).display().to_string(),
            ),
            (
                "tls-key-file",
                self.path(&format!("{cert}.key")).display().to_string(),
            ),
            (
                "tls-ca-cert-file",
                self.path("ca.pem").display().to_string(),
            ),
            ("tls-auth-clients", auth_clients.to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// `redis-cli` arguments that speak TLS with the client certificate.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.path("ca.pem").display().to_string(),
            "--cert".into(),
            self.path("client.pem").display().to_string(),
            "--key".into(),
            self.path("client.key").display().to_string(),
        ]
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2200, 1, 1);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

/// A redis-server with a plain port and a TLS port.
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
}

impl TlsRedis {
    /// Starts one serving `cert` (`server` or `expired`) on a TLS port;
    /// `auth_clients` is `no`, `optional` or `yes`.
    pub fn start(certs: &Certs, cert: &str, auth_clients: &str) -> TlsRedis {
        let tls_port = free_port();
        let server = RedisServer::start_with(RedisOptions {
            extra_args: certs.server_args(cert, tls_port, auth_clients),
            ..RedisOptions::default()
        })
        .expect("redis-server starts with TLS");
        TlsRedis { server, tls_port }
    }

    /// The `rediss://` URL of the TLS port.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// The same port named `localhost`.
    pub fn url_by_name(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }
}
