//! The gateway's public keys: fixed at start, or fetched from its JWKS and cached.
//!
//! The gateway rotates keys: a token may name a `kid` this service has never seen, and the
//! right answer is to fetch the JWKS again. But `kid` is chosen by whoever sends the request, so
//! fetching for every unknown `kid` would let anyone make this service hammer the gateway.
//! Hence: at most one fetch per refresh interval, one fetch at a time (concurrent requests wait
//! for the fetch in progress rather than start their own), and a request whose `kid` stays
//! unknown is refused as `unknown_kid`, or with `503` when the last fetch failed, since then
//! the key may well exist and this service just cannot see it.
//!
//! Cached keys are also refreshed once they are older than the maximum age, so that a key the
//! gateway withdrew (say, after a compromise) stops being trusted. If that refresh fails, the
//! cached keys stay in use: an outage of the gateway must not stop services from accepting the
//! tokens it already issued.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use handsign_protocol::keys::{Jwks, KeySet};

use handsign_protocol::api::ErrorCode;

use crate::refusal::Refusal;

/// Largest JWKS document read; a real one is a few hundred bytes per key.
const MAX_JWKS_BYTES: usize = 256 * 1024;

pub(crate) enum KeySource {
    Fixed(Arc<KeySet>),
    Jwks(JwksCache),
}

impl KeySource {
    /// The key set to verify a token naming `kid` with. The set may lack `kid`: then the token
    /// check refuses it as `unknown_kid`.
    pub(crate) async fn for_kid(&self, kid: &str) -> Result<Arc<KeySet>, Refusal> {
        match self {
            KeySource::Fixed(keys) => Ok(keys.clone()),
            KeySource::Jwks(cache) => cache.for_kid(kid).await,
        }
    }
}

pub(crate) struct JwksCache {
    url: String,
    client: reqwest::Client,
    refresh_interval: Duration,
    max_age: Duration,
    state: RwLock<CacheState>,
    /// Held while fetching, so that concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Clone, Default)]
struct CacheState {
    keys: Arc<KeySet>,
    /// When the keys were fetched; `None` before the first successful fetch.
    fetched_at: Option<Instant>,
    /// When the last fetch started, successful or not: the rate limit counts from it.
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl JwksCache {
    pub(crate) fn new(
        url: String,
        client: reqwest::Client,
        refresh_interval: Duration,
        max_age: Duration,
    ) -> Self {
        JwksCache {
            url,
            client,
            refresh_interval,
            max_age,
            state: RwLock::new(CacheState::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> CacheState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The cached keys when they hold `kid` and are not older than the maximum age.
    fn fresh_with(&self, kid: &str) -> Option<Arc<KeySet>> {
        let state = self.state();
        let fresh = state.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
        (fresh && state.keys.contains(kid)).then_some(state.keys)
    }

    async fn for_kid(&self, kid: &str) -> Result<Arc<KeySet>, Refusal> {
        if let Some(keys) = self.fresh_with(kid) {
            return Ok(keys);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(keys) = self.fresh_with(kid) {
            return Ok(keys);
        }
        let may_fetch = self
            .state()
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.refresh_interval);
        if may_fetch {
            self.refresh().await;
        }
        let state = self.state();
        if state.keys.contains(kid) || !state.last_failed {
            return Ok(state.keys);
        }
        let waited = state.last_attempt.map_or(Duration::ZERO, |t| t.elapsed());
        let retry_after = self
            .refresh_interval
            .saturating_sub(waited)
            .as_secs()
            .max(1);
        Err(Refusal::Unavailable {
            code: ErrorCode::KeysUnavailable,
            message: "the token names a key this service does not know, and the gateway's \
                      keys cannot be fetched right now; try again later",
            retry_after_secs: retry_after,
        })
    }

    async fn refresh(&self) {
        let started = Instant::now();
        let result = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.last_attempt = Some(started);
        match result {
            Ok(keys) => {
                tracing::debug!(url = %self.url, kids = ?keys.kids().collect::<Vec<_>>(), "fetched the gateway's JWKS");
                state.keys = Arc::new(keys);
                state.fetched_at = Some(started);
                state.last_failed = false;
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "could not fetch the gateway's JWKS");
                state.last_failed = true;
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the JWKS URL answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let jwks: Jwks =
            serde_json::from_slice(&body).map_err(|e| format!("the JWKS is not valid: {e}"))?;
        KeySet::from_jwks(&jwks).map_err(|e| format!("the JWKS holds an unusable key: {e}"))
    }
}
