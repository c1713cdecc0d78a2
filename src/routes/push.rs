//! Devices that receive Web Push notifications: the key browsers subscribe with, and a logged-in
//! user's subscriptions (add, list, remove).

use askama::Template as _;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use handsign_protocol::api::{Device, DeviceAdded, ErrorCode, VapidKey};
use handsign_protocol::base64url;
use serde::Deserialize;

use crate::domain::{PushSubscriptionRecord, device_name, random_bytes};
use crate::error::ApiError;
use crate::notify::subscription::Subscription;
use crate::pages::dashboard::InlineText;
use crate::pages::params_view::ShownText;
use crate::routes::require_same_origin;
use crate::session::SessionUser;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/push/vapid-key", get(vapid_key))
        .route("/v1/push/subscriptions", get(list).post(add))
        .route("/v1/push/subscriptions/{id}", delete(remove))
}

async fn vapid_key(State(state): State<AppState>) -> impl IntoResponse {
    Json(VapidKey {
        public_key: state.notifier.vapid_public_key(),
    })
}

#[derive(Debug, Deserialize)]
struct AddQuery {
    /// What the person calls the device, e.g. "Pixel 9".
    #[serde(default)]
    name: Option<String>,
}

/// Adds this browser: the body is `PushSubscription.toJSON()`, the device's name a query
/// parameter.
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
