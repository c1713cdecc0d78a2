//! A small payments API standing in for a real one (Stripe-like): it takes an API key in
//! `Authorization: Bearer <key>` and nothing else, so whoever holds the key can charge. It is
//! what `handsign gate` is for: the gate holds the key, the agent never sees it, and a charge
//! goes through only when a person approved exactly that charge.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most charges and refunds kept; an example, not a ledger.
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Default)]
struct Ledger {
    charges: Vec<Value>,
    refunds: Vec<Value>,
}

#[derive(Clone)]
struct Api {
    key: Arc<str>,
    ledger: Arc<Mutex<Ledger>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCharge {
    /// In the currency's smallest unit (cents).
    amount: u64,
    currency: String,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRefund {
    charge: String,
    #[serde(default)]
    amount: Option<u64>,
}

/// The API's routes, accepting `api_key` only.
pub fn app(api_key: &str) -> Router {
    let api = Api {
        key: api_key.into(),
        ledger: Arc::default(),
    };
    Router::new()
        .route("/v1/charges", post(create_charge).get(list_charges))
        .route("/v1/charges/{id}", get(charge))
        .route("/v1/refunds", post(create_refund))
        .with_state(api)
}

impl Api {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        given == Some(&*self.key)
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "send Authorization: Bearer <API key>",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn create_charge(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(new): Json<NewCharge>,
) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    let mut ledger = api.ledger();
    if ledger.charges.len() >= MAX_RECORDS {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "ledger_full",
            "restart the example",
        );
    }
    let charge = json!({
        "id": format!("ch_{}", ledger.charges.len() + 1),
        "amount": new.amount,
        "currency": new.currency,
        "customer": new.customer,
        "description": new.description,
        "status": "succeeded",
    });
    ledger.charges.push(charge.clone());
    (StatusCode::CREATED, Json(charge)).into_response()
}

async fn list_charges(State(api): State<Api>, headers: HeaderMap) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    Json(json!({"data": api.ledger().charges})).into_response()
}

async fn charge(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    let ledger = api.ledger();
    match ledger
        .charges
        .iter()
        .find(|charge| charge["id"] == id.as_str())
    {
        Some(charge) => Json(charge.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_such_charge",
            "no charge with this id",
        ),
    }
}

async fn create_refund(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(new): Json<NewRefund>,
) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    let mut ledger = api.ledger();
    let Some(charge) = ledger
        .charges
        .iter()
        .find(|c| c["id"] == new.charge.as_str())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_charge",
            "no charge with this id",
        );
    };
    let amount = new
        .amount
        .unwrap_or_else(|| charge["amount"].as_u64().unwrap_or(0));
    if ledger.refunds.len() >= MAX_RECORDS {
        return error(
            StatusCode::INSUFFICIENT_STORAGE,
            "ledger_full",
            "restart the example",
        );
    }
    let refund = json!({
        "id": format!("re_{}", ledger.refunds.len() + 1),
        "charge": new.charge,
        "amount": amount,
        "status": "succeeded",
    });
    ledger.refunds.push(refund.clone());
    (StatusCode::CREATED, Json(refund)).into_response()
}
