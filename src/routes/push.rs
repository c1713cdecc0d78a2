//! Devices that receive Web Push notifications: the key browsers subscribe with, and a logged-in
//! user's subscriptions (add, list, remove).

use askama::Template as _;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handsign_protocol::api::{Device, DeviceAdded, ErrorBody, ErrorCode, VapidKey};
use handsign_protocol::base64url;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::{PushSubscriptionRecord, device_name, random_bytes};
use crate::error::ApiError;
use crate::notify::subscription::Subscription;
use crate::pages::dashboard::InlineText;
use crate::pages::params_view::ShownText;
use crate::routes::require_same_origin;
use crate::session::SessionUser;
use crate::state::AppState;

/// The push routes, each registered with its OpenAPI description (`tag = "push"`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vapid_key))
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

#[utoipa::path(get, path = "/v1/push/vapid-key", tag = "push",
    responses((status = 200, body = VapidKey)))]
async fn vapid_key(State(state): State<AppState>) -> impl IntoResponse {
    Json(VapidKey {
        public_key: state.notifier.vapid_public_key(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AddQuery {
    /// What the person calls the device, e.g. "Pixel 9".
    #[serde(default)]
    name: Option<String>,
}

/// Adds this browser: the body is `PushSubscription.toJSON()`, the device's name a query
/// parameter.
#[utoipa::path(post, path = "/v1/push/subscriptions", tag = "push", params(AddQuery),
    request_body(content = Object, description = "`PushSubscription.toJSON()`: `{\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}`; with the session cookie, from the gateway's origin"),
    responses((status = 201, body = DeviceAdded), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was stored", body = ErrorBody)))]
async fn add(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    headers: HeaderMap,
    Query(query): Query<AddQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let subscription = Subscription::from_json(&body, state.notifier.allows_http_push_endpoints())
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidSubscription, e.to_string()))?;
    state
        .notifier
        .check_endpoint(&subscription)
        .await
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidSubscription, e.to_string()))?;
    let default_name = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("a browser");
    let name = device_name(query.name.as_deref(), default_name)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidName, e))?;
    // Checked before adding: two adds at the same instant may pass it together, which lets a
    // user exceed the cap by the requests their session sends at once, not more. A browser
    // subscribing again replaces its old subscription, so that one does not count.
    let max = state.notifier.max_devices_per_user();
    let others = state
        .store
        .push_subscriptions(&user)
        .await?
        .iter()
        .filter(|device| device.subscription.endpoint() != subscription.endpoint())
        .count();
    if others >= max {
        return Err(ApiError::conflict(
            ErrorCode::TooManyDevices,
            format!(
                "{user} already has {max} devices receiving notifications, the most allowed; \
                 remove one first"
            ),
        ));
    }
    let device = PushSubscriptionRecord {
        id: base64url::encode(random_bytes::<12>().map_err(ApiError::internal)?),
        user: user.clone(),
        name,
        subscription,
        created_at: state.clock.now(),
    };
    state.store.add_push_subscription(&device).await?;
    tracing::info!(%user, device = %device.id, "device subscribed to notifications");
    Ok((StatusCode::CREATED, Json(DeviceAdded { id: device.id })).into_response())
}

/// The user's devices; the push address itself is a capability and is shown by host only.
#[utoipa::path(get, path = "/v1/push/subscriptions", tag = "push",
    responses((status = 200, description = "the logged-in user's devices (session cookie)", body = Vec<Device>), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
) -> Result<Response, ApiError> {
    let devices = state.store.push_subscriptions(&user).await?;
    let listed = devices
        .iter()
        .map(|device| {
            let host = device
                .subscription
                .endpoint()
                .host_str()
                .unwrap_or_default();
            // The name as the dashboard shows it, every hidden character marked.
            let name_html = InlineText {
                text: &ShownText::new(&device.name),
            }
            .render()
            .map_err(ApiError::internal)?;
            Ok(Device {
                id: device.id.clone(),
                name: device.name.clone(),
                name_html,
                endpoint_host: host.to_owned(),
                created_at: device.created_at,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(listed).into_response())
}

/// Removes one of the logged-in user's devices; another user's is "not found".
#[utoipa::path(delete, path = "/v1/push/subscriptions/{id}", tag = "push", params(("id" = String, Path, description = "the device's id")),
    responses((status = 204, description = "removed"), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    state.store.delete_push_subscription(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
