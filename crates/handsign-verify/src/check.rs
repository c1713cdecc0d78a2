//! Every check a request passes before its handler runs, in one function, in an order that
//! never does expensive or stateful work for a request that is already refused:
//!
//! 1. `Authorization: Approval <token>` is there (`missing_token`);
//! 2. the token's header is well formed, `alg` EdDSA, `typ` right, `kid` present (no
//!    cryptography yet);
//! 3. an announced `Content-Length` over the route's body limit (`413`);
//! 4. the key for `kid` (a JWKS fetch only for an unknown `kid`, rate limited; `503` when the
//!    keys cannot be had);
//! 5. the body, buffered up to the route's limit (`413`);
//! 6. the route's params from the request, canonicalized strictly (`invalid_params`), and their
//!    hash;
//! 7. [`token::verify`]: signature, claims, issuer, audience, time window, lifetime, action and
//!    params hash, each with its own code;
//! 8. the DPoP proof when the token is key-bound: this method, this URL, the token's hash
//!    (`ath`), made with the token's `cnf.jkt`; an unbound token only when the configuration
//!    explicitly allows it;
//! 9. last, the only write: the `jti` consumed in the replay store until `exp + skew`
//!    (`token_replayed`; `503` when the store cannot be reached). A request refused by any
//!    earlier check leaves the token unused, so a mistaken request does not burn the approval.
//!
//! Proof `jti`s are not recorded: a proof names its token in `ath`, and the token is accepted
//! once, so a replayed proof arrives with a token that is already consumed.

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request, header};
use bytes::Bytes;
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::jws::CompactJws;
use handsign_protocol::params::{CanonicalParams, ParamsHash};
use handsign_protocol::token::{self, ApprovalClaims, TOKEN_TYP, TokenError, TokenHeader};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::config::VerifierInner;
use crate::layer::{Params, ParamsSource, Route};
use crate::refusal::{Refusal, codes};

/// Checks `request` against the verifier's configuration and the route; on success returns
/// it with the claims in its extensions and its body replaced by the bytes that were hashed.
pub(crate) async fn check(
    verifier: &VerifierInner,
    route: &Route,
    request: Request<Body>,
) -> Result<Request<Body>, Refusal> {
    let token = approval_token(request.headers())?.to_owned();
    let kid = token_kid(&token)?;
    check_announced_length(request.headers(), route.body_limit)?;
    let keys = verifier.keys.for_kid(&kid).await?;
    let (mut parts, body) = request.into_parts();
    let body = read_body(body, route.body_limit).await?;
    let params_sha256 = params_hash(&route.params, &parts, &body, &verifier.params_limits)?;

    let now = crate::unix_now();
    let claims = token::verify(
        &token,
        &keys,
        &token::Expected {
            issuer: &verifier.issuer,
            audience: &verifier.audience,
            action: &route.action,
            params_sha256: &params_sha256,
            now,
            skew: verifier.skew,
        },
    )?;
    check_key_binding(verifier, &parts, &token, &claims, now)?;

    let expires_at = claims.exp.saturating_add(verifier.skew);
    match verifier.replay.consume(&claims.jti, expires_at).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Refusal::unauthorized(
                codes::TOKEN_REPLAYED,
                "this token was used already: an approval is good for one request; ask for a \
                 new approval",
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "the replay store cannot be reached; refusing the request");
            return Err(Refusal::Unavailable {
                code: codes::REPLAY_STORE_UNAVAILABLE,
                message: "the service cannot record the token's use right now; try again \
                          with a new approval",
                retry_after_secs: 1,
            });
        }
    }

    parts.extensions.insert(claims);
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// The token of the single `Authorization: Approval <token>` header.
fn approval_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let missing = |message: &str| Refusal::unauthorized(codes::MISSING_TOKEN, message);
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
fn token_kid(token: &str) -> Result<String, TokenError> {
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
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Refusal> {
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
    let invalid = |message: String| Refusal::unauthorized(codes::INVALID_PARAMS, message);
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

/// The DPoP proof for a key-bound token; an unbound token only if the service allows it.
fn check_key_binding(
    verifier: &VerifierInner,
    parts: &Parts,
    token: &str,
    claims: &ApprovalClaims,
    now: i64,
) -> Result<(), Refusal> {
    let Some(cnf) = &claims.cnf else {
        if verifier.allow_unbound_tokens {
            return Ok(());
        }
        return Err(Refusal::unauthorized(
            codes::DPOP_REQUIRED,
            "the token is not bound to an agent key (no cnf.jkt), and this service accepts \
             key-bound tokens only",
        ));
    };
    let mut values = parts.headers.get_all("dpop").iter();
    let proof = match (values.next(), values.next()) {
        (None, _) => {
            return Err(Refusal::unauthorized(
                codes::DPOP_REQUIRED,
                "the token is bound to an agent key (cnf.jkt): send a DPoP header with a proof \
                 made with that key for this method and URL, with ath set to the token's hash",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Refusal::unauthorized(
                codes::INVALID_DPOP,
                "send exactly one DPoP header",
            ));
        }
        (Some(value), None) => value.to_str().map_err(|_| {
            Refusal::unauthorized(codes::INVALID_DPOP, "the DPoP header is not ASCII")
        })?,
    };
    let url = request_url(verifier, parts);
    let verified = dpop::verify(
        proof,
        &dpop::Expected {
            method: parts.method.as_str(),
            url: &url,
            now,
            access_token: Some(token),
        },
    )
    .map_err(|error| Refusal::unauthorized(codes::INVALID_DPOP, error.to_string()))?;
    if verified.jkt != cnf.jkt {
        return Err(Refusal::unauthorized(
            codes::DPOP_KEY_MISMATCH,
            format!(
                "the DPoP proof is made with key {}, but the token is bound to key {}",
                verified.jkt, cnf.jkt
            ),
        ));
    }
    Ok(())
}

/// The URL the agent addressed: the configured public URL plus the request's path as the
/// service received it (before any `Router::nest` stripped a prefix).
fn request_url(verifier: &VerifierInner, parts: &Parts) -> String {
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |original| original.0.path());
    format!("{}{path}", verifier.public_url)
}
