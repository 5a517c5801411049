//! Outgoing HTTP (capability `http`): plain requests over `wasi:http`, to
//! the hosts the plugin's manifest lists. The host refuses any other host,
//! caps the response size and times requests out.

use std::fmt;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// A response, read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed: refused by the host (a host not granted, a
/// response over the cap), a timeout, or a network error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP request failed: {}", self.0)
    }
}

impl std::error::Error for HttpError {}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    send("GET", url, &[], None)
}

/// `POST url` with a body.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, HttpError> {
    send("POST", url, &[("content-type", content_type)], Some(body))
}

/// Sends a request and reads the whole response.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let fail = |what: &str| HttpError(what.to_string());
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| HttpError(format!("{url:?} is not an http:// or https:// URL")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(HttpError(format!("unsupported scheme {other:?}"))),
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|err| HttpError(format!("header {name:?}: {err:?}")))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    request
        .set_method(&method)
        .map_err(|()| fail("invalid method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| fail("invalid scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| fail("invalid host"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| fail("invalid path"))?;
    let outgoing = request
        .body()
        .map_err(|()| fail("the request body is unavailable"))?;
    if let Some(body) = body {
        let stream = outgoing
            .write()
            .map_err(|()| fail("the request body is unavailable"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|err| HttpError(format!("writing the request body: {err:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|err| HttpError(format!("{err:?}")))?;
    let pending = outgoing_handler::handle(request, None::<RequestOptions>)
        .map_err(|err| HttpError(format!("{err:?}")))?;
    let response = loop {
        match pending.get() {
            Some(result) => break result,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| fail("the response was already taken"))?
        .map_err(|err| HttpError(format!("{err:?}")))?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| fail("the response body is unavailable"))?;
    let stream = incoming
        .stream()
        .map_err(|()| fail("the response body is unavailable"))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(HttpError(format!(
                    "reading the response body: {}",
                    err.to_debug_string()
                )));
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
