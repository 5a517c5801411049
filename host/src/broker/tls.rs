//! Why a TLS connection to Redis failed, in words that say what to do.
//!
//! rustls reports a refused certificate as `invalid peer certificate:
//! <reason>` inside the connection error; [`explain`] turns the reasons a
//! user can act on (an unknown CA, an expired or not yet valid
//! certificate, one for another name, a missing client certificate, a
//! server that does not speak TLS) into a [`TlsFailure`] and a sentence for
//! [`Error::Tls`], in words that name no command-line flag (the CLI adds
//! those).
//!
//! [`Error::Tls`]: super::Error::Tls

use super::TlsFailure;

/// The kind of problem a TLS failure's text describes, and a sentence
/// about it, or `None` when the text is not about TLS.
pub(crate) fn explain(text: &str) -> Option<(TlsFailure, String)> {
    let lower = text.to_lowercase();
    let about_tls = lower.contains("certificate")
        || lower.contains("alert")
        || lower.contains("tls")
        || text.contains("InvalidContentType")
        || text.contains("corrupt message");
    if !about_tls {
        return None;
    }
    let explained = if text.contains("UnknownIssuer") {
        (
            TlsFailure::UnknownIssuer,
            "the server's certificate is not signed by a CA this client trusts (unknown issuer): \
             give the CA certificate that signed it"
                .to_string(),
        )
    } else if text.contains("certificate expired") || text.contains("Expired") {
        (
            TlsFailure::Expired,
            format!(
                "the server's certificate has expired{}: renew it on the server",
                detail(text, "certificate expired")
            ),
        )
    } else if text.contains("NotValidYet") || text.contains("not valid yet") {
        (
            TlsFailure::NotValidYet,
            "the server's certificate is not valid yet: check the clocks of the server and this host"
                .to_string(),
        )
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        (
            TlsFailure::WrongName,
            format!(
                "the server's certificate does not name the host connected to{}: connect by a name it lists, or skip the host-name check to accept it anyway",
                detail(text, "certificate not valid for name")
            ),
        )
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        (
            TlsFailure::ClientCertificateRequired,
            "the server requires a client certificate: give a certificate and its key".to_string(),
        )
    } else if text.contains("invalid peer certificate") {
        (
            TlsFailure::Refused,
            format!(
                "the server's certificate was refused{}",
                detail(text, "invalid peer certificate")
            ),
        )
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        (
            TlsFailure::NotTls,
            "the server did not answer in TLS: it may serve plain text on this port (use redis:// or the server's tls-port)"
                .to_string(),
        )
    } else {
        return None;
    };
    Some(explained)
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
        let (kind, unknown) = explain("invalid peer certificate: UnknownIssuer").unwrap();
        assert_eq!(kind, TlsFailure::UnknownIssuer);
        assert!(unknown.contains("not signed by a CA"), "{unknown}");
        let (kind, expired) = explain(
            "invalid peer certificate: certificate expired: verification time 1800000000 (UNIX), but certificate is not valid after 1700000000 (100000000 seconds ago)",
        )
        .unwrap();
        assert_eq!(kind, TlsFailure::Expired);
        assert!(expired.contains("has expired"), "{expired}");
        assert!(expired.contains("not valid after 1700000000"), "{expired}");
        assert!(explain("connection refused").is_none());
        assert!(explain("ERR script: Expired lease").is_none());
    }
}
