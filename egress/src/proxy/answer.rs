//! smokescreen's answers (407, 502, 504, 429, 503 and their texts) and its log lines.

use super::*;

impl Proxy {
    /// A 407 denial, logged as a warning.
    pub(super) fn deny(
        &self,
        ctx: &mut Context,
        decision: Option<Decision>,
        why: String,
        connect: bool,
    ) -> Response<ProxyBody> {
        let decision = decision.unwrap_or(Decision {
            allow: false,
            enforce_would_deny: false,
            reason: why.clone(),
            role: String::new(),
            project: String::new(),
        });
        let message = format!(
            "Egress proxying is denied to host '{}': {why}.",
            ctx.requested_host
        );
        let response = self.reject(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "Request rejected by proxy",
            message,
            connect,
            ctx,
        );
        ctx.decision = Some(decision);
        ctx.log_decision(None);
        response
    }

    /// A 502, 504 or 429 answer for a failure, logged as an error (and, like smokescreen,
    /// preceded by an error line with the message alone).
    pub(super) fn fail(
        &self,
        ctx: &mut Context,
        decision: Option<Decision>,
        failure: Failure,
        connect: bool,
    ) -> Response<ProxyBody> {
        let (status, phrase, message) = match failure {
            Failure::Connect(message) => (StatusCode::BAD_GATEWAY, "Bad gateway", message),
            Failure::Timeout(message) => (StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", message),
            Failure::TunnelLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "maximum concurrent connect tunnels exceeded".to_owned(),
            ),
        };
        let mut response = self.reject(status, phrase, message.clone(), connect, ctx);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        log::emit(Level::Error, &message, ctx.fields.clone());
        if let Some(decision) = decision {
            ctx.decision = Some(decision);
        }
        // A CONNECT decision that was already logged is not logged twice.
        if !(connect && ctx.logged) {
            ctx.log_decision(Some(&message));
        }
        response
    }

    pub(super) fn reject(
        &self,
        status: StatusCode,
        phrase: &'static str,
        message: String,
        connect: bool,
        ctx: &mut Context,
    ) -> Response<ProxyBody> {
        let message = match &self.settings.additional_error_message {
            Some(extra) => format!("{message}\n\n{extra}\n"),
            None => message,
        };
        // Go's header writer turns newlines into spaces and trims the value.
        let header_text: String = message
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        let header_text = header_text.trim();
        let body = format!("{message}\n");
        ctx.fields
            .insert("status_code".into(), status.as_u16().into());
        ctx.fields
            .insert("content_length".into(), (body.len() as i64).into());
        let mut response = Response::new(Either::Left(Either::Left(Full::new(Bytes::from(body)))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        // from_bytes, not from_str: a UTF-8 message (--additional-error-message-on-deny in
        // another language) is sent as its bytes, as Go sends it.
        if let Ok(value) = HeaderValue::from_bytes(header_text.as_bytes()) {
            headers.insert(HeaderName::from_static(ERROR_HEADER), value);
        }
        if connect {
            response
                .extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(phrase.as_bytes()));
        }
        response
    }
}

/// Why a request could not be completed (not a denial).
pub(super) enum Failure {
    /// 502: resolution or connection failed.
    Connect(String),
    /// 504: resolution or connection timed out.
    Timeout(String),
    /// 429: every tunnel slot is taken.
    TunnelLimit,
}

/// What one request logs.
pub(super) struct Context {
    pub(super) fields: Fields,
    pub(super) requested_host: String,
    pub(super) identity: ClientIdentity,
    pub(super) decision: Option<Decision>,
    pub(super) dns_lookup: Duration,
    pub(super) logged: bool,
}

impl Context {
    pub(super) fn new<B>(
        proxy_type: &str,
        requested_host: &str,
        peer: SocketAddr,
        identity: &ClientIdentity,
        request: &Request<B>,
    ) -> Self {
        let mut fields = Fields::new();
        fields.insert("id".into(), log::request_id().into());
        fields.insert("inbound_remote_addr".into(), peer.to_string().into());
        fields.insert("proxy_type".into(), proxy_type.into());
        fields.insert("requested_host".into(), requested_host.into());
        fields.insert(
            "start_time".into(),
            log::rfc3339(SystemTime::now(), true).into(),
        );
        let trace_id = request
            .headers()
            .get(TRACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        fields.insert("trace_id".into(), trace_id.into());
        if let Some(cn) = &identity.common_name {
            fields.insert("inbound_remote_x509_cn".into(), cn.clone().into());
        }
        if let Some(ou) = &identity.organizational_unit {
            fields.insert("inbound_remote_x509_ou".into(), ou.clone().into());
        }
        Context {
            fields,
            requested_host: requested_host.to_owned(),
            identity: identity.clone(),
            decision: None,
            dns_lookup: Duration::ZERO,
            logged: false,
        }
    }

    /// The canonical decision line: info when allowed, warning when denied, error on failure.
    pub(super) fn log_decision(&mut self, error: Option<&str>) {
        let mut fields = self.fields.clone();
        fields.insert(
            "dns_lookup_time_ms".into(),
            (self.dns_lookup.as_millis() as u64).into(),
        );
        let level = match (&self.decision, error) {
            (_, Some(_)) => Level::Error,
            (Some(decision), None) if decision.allow => Level::Info,
            _ => Level::Warn,
        };
        if let Some(decision) = &self.decision {
            fields.insert("allow".into(), decision.allow.into());
            fields.insert(
                "enforce_would_deny".into(),
                decision.enforce_would_deny.into(),
            );
            fields.insert("decision_reason".into(), decision.reason.clone().into());
            fields
                .entry("role")
                .or_insert_with(|| Value::from(decision.role.clone()));
            fields
                .entry("project")
                .or_insert_with(|| Value::from(decision.project.clone()));
        }
        if let Some(error) = error {
            fields.insert("error".into(), error.into());
        }
        log::emit(level, CANONICAL_PROXY_DECISION, fields);
        self.logged = true;
    }
}

/// An I/O error as Go words it (`connection refused`), so that 502 texts read alike.
pub(super) fn go_error_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::NetworkUnreachable => "network is unreachable".to_owned(),
        ErrorKind::HostUnreachable => "no route to host".to_owned(),
        ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// A short text answer for the limits, as Go's `http.Error` writes it.
pub(super) fn plain_error(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Either::Left(Full::new(Bytes::from(format!(
        "{text}\n"
    ))))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if status != StatusCode::INTERNAL_SERVER_ERROR {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
