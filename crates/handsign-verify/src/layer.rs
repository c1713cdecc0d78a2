//! The tower [`Layer`] and [`Service`] that guard one route: the request reaches the inner
//! service (the handler) only when [`check`](crate::check) accepted it, with the verified
//! [`ApprovalClaims`](handsign_protocol::token::ApprovalClaims) in its extensions and the very
//! body bytes whose hash was checked.
//!
//! Like tower-http's layers it takes a request with any [`http_body::Body`] (axum's, hyper's
//! `Incoming`, ...), so it serves under axum, plain hyper or another tower stack; the inner
//! service gets the buffered body as [`Full<Bytes>`], which axum's routes take as well.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use crate::check;
use crate::config::VerifierInner;

/// The params of a request as a route's [`params_from`](ApprovalLayer::params_from) function
/// gives them: JSON text, canonicalized strictly (duplicate keys and imprecise numbers refused),
/// or an already built value.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// JSON text, e.g. a part of the body.
    Json(Bytes),
    /// A value built in code, e.g. from the query string or path.
    Value(serde_json::Value),
}

impl From<serde_json::Value> for Params {
    fn from(value: serde_json::Value) -> Self {
        Params::Value(value)
    }
}

impl From<Bytes> for Params {
    fn from(json: Bytes) -> Self {
        Params::Json(json)
    }
}

impl From<Vec<u8>> for Params {
    fn from(json: Vec<u8>) -> Self {
        Params::Json(json.into())
    }
}

impl From<String> for Params {
    fn from(json: String) -> Self {
        Params::Json(json.into())
    }
}

/// The error of a request body, as tower-http and hyper name it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type ParamsFn = dyn Fn(&Parts, &Bytes) -> Result<Params, String> + Send + Sync;
type BodyCheck = dyn Fn(&Bytes) -> Result<(), String> + Send + Sync;

/// Where a route's params come from.
#[derive(Clone)]
pub(crate) enum ParamsSource {
    /// The whole body, as JSON text.
    Body,
    Custom(Arc<ParamsFn>),
}

/// What one route requires.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) action: String,
    pub(crate) params: ParamsSource,
    pub(crate) body_limit: usize,
    /// What the handler reads the body as, checked before the token is used.
    pub(crate) body_check: Option<Arc<BodyCheck>>,
}

/// Guards one route: see [`Verifier::require`](crate::Verifier::require).
#[derive(Clone)]
pub struct ApprovalLayer {
    verifier: Arc<VerifierInner>,
    route: Route,
}

impl fmt::Debug for ApprovalLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalLayer")
            .field("action", &self.route.action)
            .field(
                "params",
                &match self.route.params {
                    ParamsSource::Body => "body",
                    ParamsSource::Custom(_) => "custom",
                },
            )
            .field("body_limit", &self.route.body_limit)
            .finish()
    }
}

impl ApprovalLayer {
    pub(crate) fn new(verifier: Arc<VerifierInner>, action: String, body_limit: usize) -> Self {
        ApprovalLayer {
            verifier,
            route: Route {
                action,
                params: ParamsSource::Body,
                body_limit,
                body_check: None,
            },
        }
    }

    /// Takes the route's params from the request with `extract` instead of the JSON body: from
    /// the query string, the path, a member of the body. It gets the request head and the whole
    /// (buffered) body; an `Err` refuses the request with `invalid_params` and the message.
    ///
    /// Whatever `extract` returns is what the token must approve, so it must be what the
    /// handler acts on: take care that the handler reads the same parts the same way.
    pub fn params_from<F, P>(mut self, extract: F) -> Self
    where
        F: Fn(&Parts, &Bytes) -> Result<P, String> + Send + Sync + 'static,
        P: Into<Params>,
    {
        self.route.params = ParamsSource::Custom(Arc::new(move |parts: &Parts, body: &Bytes| {
            extract(parts, body).map(Into::into)
        }));
        self
    }

    /// Refuses, before the token is used, a body that does not deserialize as `T` (JSON), with
    /// `400 invalid_body`: give the type the handler's `Json<T>` reads, so that a body the
    /// handler would refuse does not use up the approval first.
    pub fn body_parses_as<T: serde::de::DeserializeOwned>(mut self) -> Self {
        self.route.body_check = Some(Arc::new(|body: &Bytes| {
            serde_json::from_slice::<T>(body)
                .map(drop)
                .map_err(|error| error.to_string())
        }));
        self
    }

    /// Largest body buffered for this route (default: the verifier's
    /// [`body_limit`](crate::VerifierBuilder::body_limit)); larger bodies get `413` before the
    /// handler runs. Above axum's own default body limit (2 MB), raise that too
    /// (`axum::extract::DefaultBodyLimit`) for the handler to read the body.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.route.body_limit = bytes.max(1);
        self
    }
}

impl<S> Layer<S> for ApprovalLayer {
    type Service = ApprovalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApprovalService {
            inner,
            verifier: self.verifier.clone(),
            route: Arc::new(self.route.clone()),
        }
    }
}

/// The service [`ApprovalLayer`] wraps a route in.
#[derive(Clone)]
pub struct ApprovalService<S> {
    inner: S,
    verifier: Arc<VerifierInner>,
    route: Arc<Route>,
}

impl<S> fmt::Debug for ApprovalService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalService")
            .field("action", &self.route.action)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for ApprovalService<S>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    S: Service<Request<Full<Bytes>>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let route = self.route.clone();
        Box::pin(async move {
            let checked = check::check(&verifier, &route, request).await;
            match check::counted(&verifier, &route.action, checked) {
                Ok(request) => inner.call(request).await.map(IntoResponse::into_response),
                Err(refusal) => Ok(refusal.into_response()),
            }
        })
    }
}
