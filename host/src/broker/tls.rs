//! Why a TLS connection to Redis failed, in words that say what to do.
//!
//! rustls reports a refused certificate as `invalid peer certificate:
//! <reason>` inside the connection error; [`explain`] turns the reasons a
//! user can act on (an unknown CA, an expired or not yet valid
//! certificate, one for another name, a missing client certificate, a
//! server that does not speak TLS) into a sentence for [`Error::Tls`].
//!
//! [`Error::Tls`]: super::Error::Tls

/// The problem a TLS failure's text describes, or `None` when the text is
/// not about TLS.
pub(crate) fn explain(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let about_tls = lower.contains("certificate")
        || lower.contains("alert")
        || lower.contains("tls")
        || text.contains("InvalidContentType")
        || text.contains("corrupt message");
    if !about_tls {
        return None;
    }
    let problem = if text.contains("UnknownIssuer") {
        "the server's certificate is not signed by a CA this client trusts (unknown issuer): \
         pass the CA certificate that signed it with --tls-ca FILE (or WASMQ_TLS_CA)"
            .to_string()
    } else if text.contains("certificate expired") || text.contains("Expired") {
        format!(
            "the server's certificate has expired{}: renew it on the server",
            detail(text, "certificate expired")
        )
    } else if text.contains("NotValidYet") || text.contains("not valid yet") {
        "the server's certificate is not valid yet: check the clocks of the server and this host"
            .to_string()
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!(
            "the server's certificate does not name the host connected to{}: connect by a name it lists, or pass --tls-skip-hostname-check (WASMQ_TLS_SKIP_HOSTNAME_CHECK=true) to accept it anyway",
            detail(text, "certificate not valid for name")
        )
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        "the server requires a client certificate: pass --tls-cert FILE and --tls-key FILE (or WASMQ_TLS_CERT and WASMQ_TLS_KEY)"
            .to_string()
    } else if text.contains("invalid peer certificate") {
        format!(
            "the server's certificate was refused{}",
            detail(text, "invalid peer certificate")
        )
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        "the server did not answer in TLS: it may serve plain text on this port (use redis:// or the server's tls-port)"
            .to_string()
    } else {
        return None;
    };
    Some(problem)
}

/// ` (<what follows marker>)` from `text`, or nothing.
fn detail(text: &str, marker: &str) -> String {
    text.split_once(marker)
        .map(|(_, rest)| rest.trim_start_matches(':').trim())
        .map(|rest| rest.split([';', '\n']).next().unwrap_or(rest).trim())
        .filter(|rest| !rest.is_empty())
        .map(|rest| format!(" ({rest})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_certificates_are_named() {
        let unknown = explain("invalid peer certificate: UnknownIssuer").unwrap();
        assert!(unknown.contains("not signed by a CA"), "{unknown}");
        let expired = explain(
            "invalid peer certificate: certificate expired: verification time 1800000000 (UNIX), but certificate is not valid after 1700000000 (100000000 seconds ago)",
        )
        .unwrap();
        assert!(expired.contains("has expired"), "{expired}");
        assert!(expired.contains("not valid after 1700000000"), "{expired}");
        assert!(explain("connection refused").is_none());
        assert!(explain("ERR script: Expired lease").is_none());
    }
}
