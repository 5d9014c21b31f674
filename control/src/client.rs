//! A control-plane client for a list of controller endpoints: it sends the bearer token with every call and moves
//! on to the next endpoint when one is unreachable or answers `UNAVAILABLE` (a standby replica says `NotLeader`),
//! until a deadline. The CLI uses it; a plugin follows the same rules (`notes/h9-api.md`).
//!
//! # Guarantees
//! - A call is retried on another endpoint only when it failed with `UNAVAILABLE` (connection refused, `NotLeader`)
//!   or because the connection was lost (`CANCELLED`, or `UNKNOWN` from a transport error: the replica was
//!   killed). Other errors are returned at once.
//! - Retrying a change is safe: re-registering an ENI, modifying a flow log and deleting a Deleting one are
//!   idempotent, and CreateFlowLog carries a ClientToken (the CLI always sends one). A retried DeregisterNetworkInterface,
//!   ActiveFlowLog or DeactiveFlowLog whose first attempt did land reports `NotFound` / `IncorrectStatus.FlowLog`.

use std::future::Future;
use std::time::{Duration, Instant};

use flowlog_proto::v1 as pb;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

/// How long [`ControlClient::call`] keeps trying endpoints by default (covers a leader election).
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(20);
/// Connect timeout per endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The generated client with the bearer-token interceptor.
pub type RawClient = pb::control_client::ControlClient<InterceptedService<Channel, BearerToken>>;

/// An error building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No endpoint was given.
    #[error("no control-plane endpoint given")]
    NoEndpoints,
    /// An endpoint is not a valid URI.
    #[error("invalid control-plane endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The token cannot be sent as gRPC metadata.
    #[error("the token must be non-empty printable ASCII without whitespace")]
    InvalidToken,
}

/// Adds `authorization: Bearer <token>` to every request (nothing without a token).
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// The interceptor for `token`.
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        token
            .map(|t| {
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ClientError::InvalidToken);
                }
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::InvalidToken)
            })
            .transpose()
            .map(BearerToken)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A client over several endpoints with fail-over.
pub struct ControlClient {
    endpoints: Vec<Endpoint>,
    token: BearerToken,
    current: usize,
    connected: Option<RawClient>,
    patience: Duration,
}

impl ControlClient {
    /// A client of `endpoints` (each `host:port` or a URL; `http://` is assumed without a scheme), sending `token`.
    pub fn new<S: AsRef<str>>(endpoints: &[S], token: Option<&str>) -> Result<Self, ClientError> {
        let endpoints = endpoints
            .iter()
            .map(|endpoint| {
                let text = endpoint.as_ref().trim();
                let uri = if text.contains("://") {
                    text.to_owned()
                } else {
                    format!("http://{text}")
                };
                Endpoint::from_shared(uri)
                    .map(|e| e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
                    .map_err(|e| ClientError::InvalidEndpoint {
                        endpoint: text.to_owned(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(ControlClient {
            endpoints,
            token: BearerToken::new(token)?,
            current: 0,
            connected: None,
            patience: DEFAULT_PATIENCE,
        })
    }

    /// How long a call keeps trying endpoints before giving up.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The endpoint in use (or to be tried next).
    pub fn endpoint(&self) -> String {
        self.endpoints[self.current].uri().to_string()
    }

    /// [`ControlClient::call`] with one request: `rpc(client, request)`, the request cloned for each attempt.
    pub async fn send<Req, T, F, Fut>(&mut self, request: Req, mut rpc: F) -> Result<T, Status>
    where
        Req: Clone,
        F: FnMut(RawClient, Req) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call(|client| rpc(client, request.clone())).await
    }

    /// Runs `call` on the serving replica: on `UNAVAILABLE` / `CANCELLED` (see [`fails_over`]) it tries the next endpoint,
    /// round after round, until the patience runs out; then it returns the last error.
    pub async fn call<T, F, Fut>(&mut self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(RawClient) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.patience;
        let mut tried_in_round = 0;
        loop {
            let outcome = match self.client().await {
                Ok(client) => call(client).await.map(Response::into_inner),
                Err(status) => Err(status),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(status) if fails_over(&status) && Instant::now() < deadline => {
                    tracing::debug!(endpoint = %self.endpoint(), %status, "trying the next control-plane endpoint");
                    self.connected = None;
                    self.current = (self.current + 1) % self.endpoints.len();
                    tried_in_round += 1;
                    if tried_in_round >= self.endpoints.len() {
                        tried_in_round = 0;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// The connected client of the current endpoint.
    async fn client(&mut self) -> Result<RawClient, Status> {
        if let Some(client) = &self.connected {
            return Ok(client.clone());
        }
        let endpoint = &self.endpoints[self.current];
        let channel = endpoint.connect().await.map_err(|e| {
            Status::unavailable(format!(
                "cannot connect to flowlog-control at {}: {e}",
                endpoint.uri()
            ))
        })?;
        let client =
            pb::control_client::ControlClient::with_interceptor(channel, self.token.clone());
        self.connected = Some(client.clone());
        Ok(client)
    }
}

/// Whether a failed call should be tried on the next endpoint: the replica is not serving (`UNAVAILABLE`), or the
/// connection to it was lost (`CANCELLED`, or `UNKNOWN` caused by a transport error such as a reset connection).
pub fn fails_over(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled => true,
        Code::Unknown => {
            let mut source = std::error::Error::source(status);
            while let Some(error) = source {
                if error.is::<tonic::transport::Error>() {
                    return true;
                }
                source = error.source();
            }
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_tokens_are_checked() {
        assert!(matches!(
            ControlClient::new::<&str>(&[], None),
            Err(ClientError::NoEndpoints)
        ));
        assert!(matches!(
            ControlClient::new(&["http://bad host:1"], None),
            Err(ClientError::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            ControlClient::new(&["127.0.0.1:1"], Some("tok\u{e9}n")),
            Err(ClientError::InvalidToken)
        ));
        let client = ControlClient::new(&["127.0.0.1:1", "http://127.0.0.1:2"], Some("t")).unwrap();
        assert_eq!(client.endpoint(), "http://127.0.0.1:1/");
    }

    #[tokio::test]
    async fn unreachable_endpoints_give_up_after_the_patience() {
        // Port 1 on loopback refuses connections at once.
        let mut client = ControlClient::new(&["127.0.0.1:1", "127.0.0.1:1"], None)
            .unwrap()
            .with_patience(Duration::from_millis(300));
        let started = Instant::now();
        let status = client
            .call(|mut c| async move { c.list_vpcs(pb::ListVpcsRequest {}).await })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("cannot connect"), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn only_unavailable_and_lost_connections_fail_over() {
        assert!(fails_over(&Status::unavailable("NotLeader: x")));
        assert!(fails_over(&Status::cancelled("connection closed")));
        assert!(!fails_over(&Status::unknown("an application error")));
        assert!(!fails_over(&Status::not_found("x")));
        assert!(!fails_over(&Status::permission_denied(
            "Forbidden.Account: x"
        )));
    }
}
