//! Every check a request passes before its handler runs, in one function, in an order that
//! never does expensive or stateful work for a request that is already refused:
//!
//! 1. `Authorization: Approval <token>` is there (`missing_token`);
//! 2. the token's header is well formed, `alg` EdDSA, `typ` right, `kid` present (no
//!    cryptography yet);
//! 3. for a route whose params are the JSON body, a JSON `Content-Type` (`415`
//!    `unsupported_media_type`), since the handler could not read anything else;
//! 4. an announced `Content-Length` over the route's body limit (`413`);
//! 5. the key for `kid` (a JWKS fetch only for an unknown `kid`, rate limited; `503` when the
//!    keys cannot be had);
//! 6. the body, buffered up to the route's limit (`413`);
//! 7. the route's params from the request, canonicalized strictly (`invalid_params`), and their
//!    hash; and the body as the handler reads it, when the route says how (`invalid_body`);
//! 8. [`token::verify`]: signature, claims, issuer, audience, time window, lifetime, action and
//!    params hash, each with its own code;
//! 9. the DPoP proof when the token is key-bound: this method, this URL, the token's hash
//!    (`ath`), made with the token's `cnf.jkt`; an unbound token only when the configuration
//!    explicitly allows it;
//! 10. a token that could have been accepted before the replay store's record began (an
//!     in-memory store after a restart) is refused (`issued_before_start`): its use may have
//!     been forgotten;
//! 11. last, the only writes: the proof's `jti` consumed until the proof is stale
//!     (`dpop_replayed`), then the token's `jti` until `exp + skew` (`token_replayed`); `503`
//!     when the store cannot be reached. A request refused by any earlier check leaves the
//!     token unused, so a mistaken request does not burn the approval.
//!
//! Only a proof that verified, with a token that verified, is recorded: a caller who is not
//! the token's agent cannot make the service store anything. The record's key is a hash of the
//! agent's key and the `jti`, so its size does not depend on what the agent sent.

use axum::extract::OriginalUri;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request, header};
use bytes::Bytes;
use handsign_protocol::base64url;
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop::{self, VerifiedProof};
use handsign_protocol::jws::CompactJws;
use handsign_protocol::keys::KeySet;
use handsign_protocol::params::{CanonicalParams, ParamsHash};
use handsign_protocol::token::{self, ApprovalClaims, TOKEN_TYP, TokenError, TokenHeader};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use sha2::{Digest as _, Sha256};

use crate::config::VerifierInner;
use crate::layer::BoxError;
use crate::layer::{Params, ParamsSource, Route};
use handsign_protocol::api::ErrorCode;

use crate::refusal::Refusal;

/// Checks `request` against the verifier's configuration and the route; on success returns
/// it with the claims in its extensions and its body replaced by the bytes that were hashed.
pub(crate) async fn check<B>(
    verifier: &VerifierInner,
    route: &Route,
    request: Request<B>,
) -> Result<Request<Full<Bytes>>, Refusal>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let token = approval_token(request.headers())?.to_owned();
    let kid = token_kid(&token)?;
    if matches!(route.params, ParamsSource::Body) {
        check_json_content_type(request.headers())?;
    }
    check_announced_length(request.headers(), route.body_limit)?;
    let keys = verifier.keys.for_kid(&kid).await?;
    let (mut parts, body) = request.into_parts();
    let body = read_body(body, route.body_limit).await?;
    let params_sha256 = params_hash(&route.params, &parts, &body, &verifier.params_limits)?;
    if let Some(body_check) = &route.body_check {
        body_check(&body).map_err(|error| Refusal::InvalidBody {
            message: format!("the body is not what this route reads: {error}"),
        })?;
    }

    let claims = accept(
        verifier,
        &token,
        &keys,
        &route.action,
        &params_sha256,
        &Holder::Request(&parts),
    )
    .await?;

    parts.extensions.insert(claims);
    Ok(Request::from_parts(parts, Full::new(body)))
}

/// The params of a direct check, hashed as the layer hashes a route's params.
pub(crate) fn value_hash(
    verifier: &VerifierInner,
    params: &serde_json::Value,
) -> Result<ParamsHash, Refusal> {
    CanonicalParams::from_value(params, &verifier.params_limits)
        .map(|params| params.hash())
        .map_err(|error| {
            Refusal::unauthorized(
                ErrorCode::InvalidParams,
                format!("the params cannot be hashed exactly as approved: {error}"),
            )
        })
}

/// Who presents the token, and how they show they hold the key it is bound to.
pub(crate) enum Holder<'a> {
    /// An HTTP request: its `DPoP` header, for its method and URL.
    Request(&'a Parts),
    /// A DPoP proof given outside HTTP, for the method and URL the service names.
    Proof {
        proof: &'a str,
        method: &'a str,
        url: &'a str,
    },
    /// The verifying process holds the agent key itself: the key's thumbprint.
    Key { jkt: &'a str },
}

/// Checks 8 to 11 of the module's list, shared by the layer and the direct check: the token's
/// signature and claims against `action` and `params_sha256`, the key binding, the replay
/// record's coverage, and last the only writes (the proof's `jti`, then the token's).
pub(crate) async fn accept(
    verifier: &VerifierInner,
    token: &str,
    keys: &KeySet,
    action: &str,
    params_sha256: &ParamsHash,
    holder: &Holder<'_>,
) -> Result<ApprovalClaims, Refusal> {
    let now = verifier.clock.now();
    let claims = token::verify(
        token,
        keys,
        &token::Expected {
            issuer: &verifier.issuer,
            audience: &verifier.audience,
            action,
            params_sha256,
            now,
            skew: verifier.skew,
        },
    )?;
    let proof = check_key_binding(verifier, holder, token, &claims, now)?;
    check_replay_record_covers(verifier, &claims)?;

    let use_token = || {
        consume(
            verifier,
            &claims.jti,
            claims.exp.saturating_add(verifier.skew),
            ErrorCode::TokenReplayed,
            "this token was used already: an approval is good for one request; ask for a new \
             approval",
        )
    };
    if let Some(proof) = proof {
        let proof_used = consume(
            verifier,
            &proof_record_id(&proof),
            proof.fresh_until(),
            ErrorCode::DpopReplayed,
            "this DPoP proof was used already: make a new proof for every request",
        )
        .await;
        if let Err(refusal) = proof_used {
            // The store could not vouch for the proof (a replica did not confirm it, say):
            // the token is recorded used all the same, as far as the store takes it, so that
            // a request refused with 503 never has its token accepted later.
            if refusal.is_unavailable() {
                let _ = use_token().await;
            }
            return Err(refusal);
        }
    }
    use_token().await?;
    Ok(claims)
}

/// Counts `outcome` in the verifier's metrics and logs a refusal: the one place the layer and
/// the direct check report what they decided.
pub(crate) fn counted<T>(
    verifier: &VerifierInner,
    action: &str,
    outcome: Result<T, Refusal>,
) -> Result<T, Refusal> {
    match &outcome {
        Ok(_) => verifier.counters.accepted(),
        Err(refusal) => {
            verifier.counters.refused(refusal.code());
            tracing::info!(
                action = %action,
                error = refusal.code().as_str(),
                "approval refused"
            );
        }
    }
    outcome
}

/// Refuses a token the replay store cannot vouch for: one that could have been accepted (its
/// `nbf` less the skew had come) by the time the store's record began, by a previous process
/// whose record is gone. Tokens from the first `skew + 1` seconds after a start are refused
/// too, since the gateway's clock may be ahead of this one by up to the skew.
fn check_replay_record_covers(
    verifier: &VerifierInner,
    claims: &ApprovalClaims,
) -> Result<(), Refusal> {
    match verifier.replay.records_since() {
        Some(since) if claims.nbf.saturating_sub(verifier.skew) <= since => {
            Err(Refusal::unauthorized(
                ErrorCode::IssuedBeforeStart,
                "this token was issued before the service started, and the service's record \
                 of used tokens (in memory) began then: whether it was used already cannot be \
                 known; ask for a new approval",
            ))
        }
        _ => Ok(()),
    }
}

/// Records `id` as used until `expires_at`; refuses with `code` and `message` when it was
/// recorded already, and with `503` when the store cannot say.
async fn consume(
    verifier: &VerifierInner,
    id: &str,
    expires_at: i64,
    code: ErrorCode,
    message: &'static str,
) -> Result<(), Refusal> {
    match verifier.replay.consume(id, expires_at).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::unauthorized(code, message)),
        Err(error) => {
            tracing::warn!(%error, "the replay store cannot be reached; refusing the request");
            Err(Refusal::Unavailable {
                code: ErrorCode::ReplayStoreUnavailable,
                message: "the service cannot record the token's use right now; try again \
                          with a new approval",
                retry_after_secs: 1,
            })
        }
    }
}

/// The replay store's id for a proof: `dpop:` and base64url SHA-256 of the agent's key
/// thumbprint and the proof's `jti`, so that agents cannot collide and the record's size is
/// fixed whatever the `jti`'s length. Token `jti`s, chosen by the gateway, never start with
/// `dpop:`.
fn proof_record_id(proof: &VerifiedProof) -> String {
    let digest = Sha256::new()
        .chain_update(proof.jkt.as_bytes())
        .chain_update(b":")
        .chain_update(proof.jti.as_bytes())
        .finalize();
    format!("dpop:{}", base64url::encode(digest))
}

/// Refuses a body that the route reads as JSON but that is not sent as JSON: the handler's
/// JSON extractor would refuse it after the token was used.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    if is_json(headers) {
        return Ok(());
    }
    let content_type = content_type(headers);
    Err(Refusal::UnsupportedMediaType {
        message: if content_type.is_empty() {
            "this route's params are the JSON body: send it with Content-Type: application/json"
                .to_owned()
        } else {
            format!(
                "this route's params are the JSON body, but the Content-Type is {:?}: send \
                 application/json",
                content_type.chars().take(100).collect::<String>()
            )
        },
    })
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The request's media type without parameters, lowercased (`application/json`); empty when
/// it names none.
pub fn media_type(headers: &HeaderMap) -> String {
    content_type(headers)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the request says its body is JSON: `application/json` or `application/*+json`,
/// parameters and case aside.
pub fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers)
        .strip_prefix("application/")
        .is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

/// The token of the single `Authorization: Approval <token>` header.
fn approval_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let missing = |message: &str| Refusal::unauthorized(ErrorCode::MissingToken, message);
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(missing(
            "send exactly one Authorization header: Authorization: Approval <token>",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| missing("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Approval") {
        return Err(missing(
            "the Authorization header does not use the Approval scheme: send \
             Authorization: Approval <token>",
        ));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(missing("the Authorization: Approval header holds no token"));
    }
    Ok(token)
}

/// The token's `kid`, after the header checks that need no key: the same checks, in the same
/// order and with the same errors, as [`token::verify`] makes before it looks the key up.
pub(crate) fn token_kid(token: &str) -> Result<String, TokenError> {
    let jws = CompactJws::parse(token)?;
    let header: TokenHeader = jws.header()?;
    if header.alg != "EdDSA" {
        return Err(TokenError::WrongAlg { found: header.alg });
    }
    if header.typ.as_deref() != Some(TOKEN_TYP) {
        return Err(TokenError::WrongTyp { found: header.typ });
    }
    header.kid.ok_or(TokenError::MissingKid)
}

/// Refuses a body announced larger than `limit` before anything else is done for it.
fn check_announced_length(headers: &HeaderMap, limit: usize) -> Result<(), Refusal> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::BodyTooLarge { limit });
    }
    Ok(())
}

/// The whole body, refusing it once more than `limit` bytes arrive (a body sent without
/// `Content-Length`, or longer than announced).
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, Refusal>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Refusal::BodyTooLarge { limit }),
        Err(error) => Err(Refusal::InvalidBody {
            message: format!("the request body could not be read: {error}"),
        }),
    }
}

/// The hash of the params the request carries, as the route declares them.
fn params_hash(
    source: &ParamsSource,
    parts: &Parts,
    body: &Bytes,
    limits: &Limits,
) -> Result<ParamsHash, Refusal> {
    let invalid = |message: String| Refusal::unauthorized(ErrorCode::InvalidParams, message);
    let canonical = match source {
        ParamsSource::Body => CanonicalParams::parse(body, limits),
        ParamsSource::Custom(extract) => match extract(parts, body).map_err(|message| {
            invalid(format!(
                "the params could not be taken from the request: {message}"
            ))
        })? {
            Params::Json(json) => CanonicalParams::parse(&json, limits),
            Params::Value(value) => CanonicalParams::from_value(&value, limits),
        },
    };
    canonical.map(|params| params.hash()).map_err(|error| {
        invalid(format!(
            "the params cannot be hashed exactly as approved: {error}"
        ))
    })
}

/// The DPoP proof for a key-bound token, verified (none when the holder is the verifying
/// process and its key is the token's); an unbound token only if the service allows it.
fn check_key_binding(
    verifier: &VerifierInner,
    holder: &Holder<'_>,
    token: &str,
    claims: &ApprovalClaims,
    now: i64,
) -> Result<Option<VerifiedProof>, Refusal> {
    let Some(cnf) = &claims.cnf else {
        if verifier.allow_unbound_tokens {
            return Ok(None);
        }
        return Err(Refusal::unauthorized(
            ErrorCode::DpopRequired,
            "the token is not bound to an agent key (no cnf.jkt), and this service accepts \
             key-bound tokens only",
        ));
    };
    let mismatch = |jkt: &str| {
        Refusal::unauthorized(
            ErrorCode::DpopKeyMismatch,
            format!(
                "the DPoP proof is made with key {jkt}, but the token is bound to key {}",
                cnf.jkt
            ),
        )
    };
    let (proof, method, url) = match holder {
        Holder::Key { jkt } if *jkt == cnf.jkt => return Ok(None),
        Holder::Key { jkt } => {
            return Err(Refusal::unauthorized(
                ErrorCode::DpopKeyMismatch,
                format!(
                    "the token is bound to key {}, not to this service's agent key {jkt}",
                    cnf.jkt
                ),
            ));
        }
        Holder::Proof { proof, method, url } => (*proof, *method, (*url).to_owned()),
        Holder::Request(parts) => (
            request_proof(parts)?,
            parts.method.as_str(),
            request_url(verifier, parts),
        ),
    };
    let verified = dpop::verify(
        proof,
        &dpop::Expected {
            method,
            url: &url,
            now,
            access_token: Some(token),
        },
    )
    .map_err(|error| Refusal::unauthorized(ErrorCode::InvalidDpop, error.to_string()))?;
    if verified.jkt != cnf.jkt {
        return Err(mismatch(&verified.jkt));
    }
    Ok(Some(verified))
}

/// The request's single `DPoP` header.
fn request_proof(parts: &Parts) -> Result<&str, Refusal> {
    let mut values = parts.headers.get_all("dpop").iter();
    match (values.next(), values.next()) {
        (None, _) => Err(Refusal::unauthorized(
            ErrorCode::DpopRequired,
            "the token is bound to an agent key (cnf.jkt): send a DPoP header with a proof \
             made with that key for this method and URL, with ath set to the token's hash",
        )),
        (Some(_), Some(_)) => Err(Refusal::unauthorized(
            ErrorCode::InvalidDpop,
            "send exactly one DPoP header",
        )),
        (Some(value), None) => value.to_str().map_err(|_| {
            Refusal::unauthorized(ErrorCode::InvalidDpop, "the DPoP header is not ASCII")
        }),
    }
}

/// The URL the agent addressed: the configured public URL plus the request's path as the
/// service received it (before any `Router::nest` stripped a prefix).
fn request_url(verifier: &VerifierInner, parts: &Parts) -> String {
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |original| original.0.path());
    // A layer is made only by a verifier that has a public URL (`Verifier::require`).
    format!(
        "{}{path}",
        verifier.public_url.as_deref().unwrap_or_default()
    )
}
