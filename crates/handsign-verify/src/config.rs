//! The service's configuration: which gateway it trusts, who it is, where the keys come from,
//! and where used tokens are recorded. Built once with [`Verifier::builder`], checked at build
//! time so that a misconfiguration is an error at start rather than a hole at run time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use handsign_protocol::canonical::Limits;
use handsign_protocol::keys::KeySet;
use handsign_protocol::token::MAX_SKEW_SECS;

use crate::clock::Clock;
use crate::key_source::{JwksCache, KeySource};
use crate::layer::ApprovalLayer;
use crate::metrics::{Counters, VerifierMetrics};
use crate::replay::{MemoryReplayStore, ReplayStore};

/// Default clock skew allowed between the gateway's clock and this service's.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Default shortest time between two fetches of the JWKS.
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default age after which cached JWKS keys are fetched again.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// Default largest request body buffered to compute the params hash.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// Where the gateway's public keys come from.
#[derive(Debug, Clone)]
pub struct Keys(KeysKind);

#[derive(Debug, Clone)]
enum KeysKind {
    JwksUrl(String),
    Fixed(KeySet),
}

impl Keys {
    /// The gateway's JWKS, e.g. `https://handsign.example/.well-known/jwks.json`: fetched on the
    /// first request, cached, fetched again when a token names an unknown `kid` (at most once
    /// per [`VerifierBuilder::jwks_refresh_interval`]) or when the cache is older than
    /// [`VerifierBuilder::jwks_max_age`]. Must be `https` unless the host is loopback.
    pub fn jwks_url(url: impl Into<String>) -> Self {
        Keys(KeysKind::JwksUrl(url.into()))
    }

    /// A key set given at start and never changed: for tests, or for services that are
    /// redeployed when the gateway's keys change.
    pub fn fixed(keys: KeySet) -> Self {
        Keys(KeysKind::Fixed(keys))
    }
}

/// A configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("{0} is not set: call VerifierBuilder::{0}(...)")]
    Missing(&'static str),
    #[error("the issuer must be the gateway's public URL, got an empty string")]
    EmptyIssuer,
    #[error("the audience must be this service's audience string, got an empty string")]
    EmptyAudience,
    #[error(
        "public_url {url:?} is not usable: {reason}; give the absolute http(s) URL clients \
         address this service with, e.g. https://travel.example"
    )]
    InvalidPublicUrl { url: String, reason: String },
    #[error("jwks_url {url:?} is not usable: {reason}")]
    InvalidJwksUrl { url: String, reason: String },
    #[error("the fixed key set is empty: every token would be refused")]
    EmptyKeySet,
    #[error("clock skew {0:?} is over the {MAX_SKEW_SECS} s the protocol allows")]
    SkewTooLarge(Duration),
    #[error("the body limit must be at least 1 byte")]
    ZeroBodyLimit,
    #[error("the HTTP client for the JWKS could not be built: {0}")]
    HttpClient(String),
    #[error(
        "action {action:?} is not usable: {reason}; actions are 1 to 128 of A-Z a-z 0-9 . _ : -"
    )]
    InvalidAction {
        action: String,
        reason: &'static str,
    },
}

/// The verified configuration shared by every route of the service; cheap to clone.
///
/// Make one with [`Verifier::builder`], then one [`ApprovalLayer`] per route with
/// [`Verifier::require`].
#[derive(Clone)]
pub struct Verifier {
    pub(crate) inner: Arc<VerifierInner>,
}

pub(crate) struct VerifierInner {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    /// The public base URL without a trailing slash; the DPoP `htu` is this plus the path.
    /// Only routes need it: [`Verifier::verify_token`] is given the method and URL.
    pub(crate) public_url: Option<String>,
    pub(crate) keys: KeySource,
    pub(crate) skew: i64,
    pub(crate) replay: Arc<dyn ReplayStore>,
    pub(crate) params_limits: Limits,
    pub(crate) body_limit: usize,
    pub(crate) allow_unbound_tokens: bool,
    pub(crate) clock: Clock,
    /// What the layers decided, for [`Verifier::metrics`].
    pub(crate) counters: Counters,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Verifier")
            .field("issuer", &inner.issuer)
            .field("audience", &inner.audience)
            .field("public_url", &inner.public_url)
            .field("skew", &inner.skew)
            .field("body_limit", &inner.body_limit)
            .field("allow_unbound_tokens", &inner.allow_unbound_tokens)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// A layer for one route that performs `action`: the route's handler runs only for a
    /// request carrying a token that approves `action` with exactly the params of this request.
    /// Params are the JSON body unless [`ApprovalLayer::params_from`] says otherwise.
    pub fn require(&self, action: &str) -> Result<ApprovalLayer, BuildError> {
        if self.inner.public_url.is_none() {
            return Err(BuildError::Missing("public_url"));
        }
        check_action(action)?;
        Ok(ApprovalLayer::new(
            self.inner.clone(),
            action.to_owned(),
            self.inner.body_limit,
        ))
    }

    /// How many requests this verifier's layers (every route made with [`Self::require`],
    /// on clones too) and its [`Self::verify_token`] calls let through and refused since it
    /// was built, by refusal code; render it
    /// with [`VerifierMetrics::to_prometheus`] to serve on the service's own `/metrics`.
    pub fn metrics(&self) -> VerifierMetrics {
        self.inner.counters.snapshot()
    }
}

/// Builds a [`Verifier`]; [`build`](VerifierBuilder::build) says what is missing or wrong.
///
/// Required: [`issuer`](Self::issuer), [`audience`](Self::audience), [`keys`](Self::keys);
/// and [`public_url`](Self::public_url) for routes ([`Verifier::require`]).
pub struct VerifierBuilder {
    issuer: Option<String>,
    audience: Option<String>,
    public_url: Option<String>,
    keys: Option<Keys>,
    clock_skew: Duration,
    replay_store: Option<Arc<dyn ReplayStore>>,
    params_limits: Limits,
    body_limit: usize,
    jwks_refresh_interval: Duration,
    jwks_max_age: Duration,
    http_client: Option<reqwest::Client>,
    allow_unbound_tokens: bool,
    allow_insecure_jwks_url: bool,
    clock: Clock,
}

impl Default for VerifierBuilder {
    fn default() -> Self {
        VerifierBuilder {
            issuer: None,
            audience: None,
            public_url: None,
            keys: None,
            clock_skew: DEFAULT_CLOCK_SKEW,
            replay_store: None,
            params_limits: Limits::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            http_client: None,
            allow_unbound_tokens: false,
            allow_insecure_jwks_url: false,
            clock: Clock::system(),
        }
    }
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("public_url", &self.public_url)
            .field("keys", &self.keys)
            .field("clock_skew", &self.clock_skew)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// The gateway's issuer URL (its public URL), compared exactly with the token's `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// This service's audience, compared exactly with the token's `aud`: a token approved for
    /// another service is refused here.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The URL clients address this service with (scheme, host, port, and a path prefix if a
    /// proxy strips one), e.g. `https://travel.example`. A DPoP proof must name this plus the
    /// request's path: the URL as the agent sent it, which a proxy in front may have rewritten.
    /// Needed by [`Verifier::require`]; a verifier used only through
    /// [`Verifier::verify_token`] goes without.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Where the gateway's public keys come from.
    pub fn keys(mut self, keys: Keys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Clock difference tolerated on `nbf` and `exp` (default and maximum 5 s; whole seconds).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Where consumed token ids are recorded (default: a [`MemoryReplayStore`] for this
    /// process, which refuses tokens issued before it started). Every instance of a service
    /// must share one store; a store outliving the process (Redis) also accepts the tokens
    /// issued just before a restart.
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay_store = Some(store);
        self
    }

    /// Limits on the canonical params (default: 64 KiB canonical, depth 32, as the gateway's).
    pub fn params_limits(mut self, limits: Limits) -> Self {
        self.params_limits = limits;
        self
    }

    /// Largest request body buffered to hash the params (default 256 KiB); larger bodies get
    /// `413`. A route can set its own with [`ApprovalLayer::body_limit`].
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Shortest time between two JWKS fetches (default 30 s), so that tokens with made-up
    /// `kid`s cannot make this service hammer the gateway. A key the gateway starts signing
    /// with is picked up at most this long after the previous fetch.
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.jwks_refresh_interval = interval;
        self
    }

    /// Age after which the cached JWKS is fetched again (default 5 minutes), so that a key the
    /// gateway withdrew stops being trusted.
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.jwks_max_age = age;
        self
    }

    /// The HTTP client used to fetch the JWKS (default: rustls with the ring provider, 5 s to
    /// connect, 10 s in all, no redirects).
    pub fn jwks_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The clock the time checks read (default: the system clock), so that tests can set the
    /// time rather than wait for it. A [`MemoryReplayStore`] given with
    /// [`replay_store`](Self::replay_store) should read the same clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Accepts tokens that are not bound to an agent key (no `cnf.jkt`) without a DPoP proof.
    ///
    /// Dangerous: such a token is a bearer token, usable by anyone who sees it (a log line, a
    /// proxy) within its 30 seconds. Without this option an unbound token is refused with
    /// `dpop_required`.
    pub fn danger_allow_unbound_tokens(mut self) -> Self {
        self.allow_unbound_tokens = true;
        self
    }

    /// Allows a plain `http` JWKS URL on a non-loopback host.
    ///
    /// Dangerous: whoever can alter that traffic can serve their own keys and mint any
    /// approval. Only for a network path that is private end to end.
    pub fn danger_allow_insecure_jwks_url(mut self) -> Self {
        self.allow_insecure_jwks_url = true;
        self
    }

    pub fn build(self) -> Result<Verifier, BuildError> {
        let issuer = self.issuer.ok_or(BuildError::Missing("issuer"))?;
        if issuer.is_empty() {
            return Err(BuildError::EmptyIssuer);
        }
        let audience = self.audience.ok_or(BuildError::Missing("audience"))?;
        if audience.is_empty() {
            return Err(BuildError::EmptyAudience);
        }
        let public_url = self
            .public_url
            .as_deref()
            .map(check_public_url)
            .transpose()?;
        if self.clock_skew > Duration::from_secs(MAX_SKEW_SECS.unsigned_abs()) {
            return Err(BuildError::SkewTooLarge(self.clock_skew));
        }
        if self.body_limit == 0 {
            return Err(BuildError::ZeroBodyLimit);
        }
        let keys = match self.keys.ok_or(BuildError::Missing("keys"))?.0 {
            KeysKind::Fixed(keys) if keys.is_empty() => return Err(BuildError::EmptyKeySet),
            KeysKind::Fixed(keys) => KeySource::Fixed(Arc::new(keys)),
            KeysKind::JwksUrl(url) => {
                check_jwks_url(&url, self.allow_insecure_jwks_url)?;
                let client = match self.http_client {
                    Some(client) => client,
                    None => default_http_client()?,
                };
                KeySource::Jwks(JwksCache::new(
                    url,
                    client,
                    self.jwks_refresh_interval,
                    self.jwks_max_age,
                ))
            }
        };
        let clock = self.clock;
        let replay = self
            .replay_store
            .unwrap_or_else(|| Arc::new(MemoryReplayStore::with_clock(clock.clone())));
        Ok(Verifier {
            inner: Arc::new(VerifierInner {
                issuer,
                audience,
                public_url,
                keys,
                skew: i64::try_from(self.clock_skew.as_secs()).unwrap_or(MAX_SKEW_SECS),
                replay,
                params_limits: self.params_limits,
                body_limit: self.body_limit,
                allow_unbound_tokens: self.allow_unbound_tokens,
                clock,
                counters: Counters::default(),
            }),
        })
    }
}

fn check_public_url(url: &str) -> Result<String, BuildError> {
    let invalid = |reason: &str| BuildError::InvalidPublicUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(invalid("not an http(s) URL with a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it has a query or fragment"));
    }
    let text: String = parsed.into();
    Ok(text.trim_end_matches('/').to_owned())
}

fn check_jwks_url(url: &str, allow_insecure: bool) -> Result<(), BuildError> {
    let invalid = |reason: String| BuildError::InvalidJwksUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(invalid("it has no host".into())),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure => Ok(()),
        "http" => Err(invalid(
            "plain http lets anyone on the path serve their own keys; use https \
             (or danger_allow_insecure_jwks_url on a private network)"
                .into(),
        )),
        other => Err(invalid(format!("scheme {other:?} is not http(s)"))),
    }
}

fn default_http_client() -> Result<reqwest::Client, BuildError> {
    // Installing the provider fails only when one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| BuildError::HttpClient(e.to_string()))
}

fn check_action(action: &str) -> Result<(), BuildError> {
    let invalid = |reason| BuildError::InvalidAction {
        action: action.to_owned(),
        reason,
    };
    if action.is_empty() || action.len() > 128 {
        return Err(invalid("wrong length"));
    }
    if !action
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(invalid("it holds a character outside the allowed set"));
    }
    if action.starts_with("handsign.") {
        return Err(invalid(
            "the handsign. prefix is reserved for the gateway itself",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use handsign_protocol::keys::SigningKey;

    fn complete() -> VerifierBuilder {
        Verifier::builder()
            .issuer("https://handsign.example")
            .audience("https://travel.example")
            .public_url("https://travel.example/")
            .keys(Keys::fixed(KeySet::from_signing_keys([
                &SigningKey::from_seed(&[1; 32]),
            ])))
    }

    #[test]
    fn builds_and_trims_the_public_url() {
        let verifier = complete().build().unwrap();
        assert_eq!(
            verifier.inner.public_url.as_deref(),
            Some("https://travel.example")
        );
        assert_eq!(verifier.inner.skew, 5);
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let err = |b: VerifierBuilder| b.build().unwrap_err();
        assert_eq!(err(Verifier::builder()), BuildError::Missing("issuer"));
        assert_eq!(
            err(complete().clock_skew(Duration::from_secs(6))),
            BuildError::SkewTooLarge(Duration::from_secs(6))
        );
        assert!(matches!(
            err(complete().public_url("travel.example")),
            BuildError::InvalidPublicUrl { .. }
        ));
        assert!(matches!(
            err(complete().keys(Keys::jwks_url("http://handsign.example/jwks"))),
            BuildError::InvalidJwksUrl { .. }
        ));
        assert_eq!(
            err(complete().keys(Keys::fixed(KeySet::default()))),
            BuildError::EmptyKeySet
        );
        assert!(
            complete()
                .keys(Keys::jwks_url("http://127.0.0.1:9/jwks"))
                .build()
                .is_ok()
        );
        let verifier = complete().build().unwrap();
        assert!(verifier.require("flights.book").is_ok());
        let mut no_url = complete();
        no_url.public_url = None;
        assert!(matches!(
            no_url.build().unwrap().require("flights.book"),
            Err(BuildError::Missing("public_url"))
        ));
        for bad in [
            "",
            "flights book",
            "handsign.agent.enroll",
            &"a".repeat(129),
        ] {
            assert!(matches!(
                verifier.require(bad),
                Err(BuildError::InvalidAction { .. })
            ));
        }
    }
}
