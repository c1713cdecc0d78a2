//! Setup and invitation codes: one-time links that let a person register a passkey.

use handsign_protocol::base64url;

use crate::domain::{InvitationRecord, UserId, random_bytes};
use crate::routes::webauthn::code_hash;
use crate::store::{Store, StoreError};

/// How long a setup or invitation link works.
pub const INVITATION_SECS: i64 = 3600;

/// Issues a code for `user` (or, with `None`, the setup code for the first user) and returns
/// the code; only its hash is stored. It works for an hour from `now`.
pub async fn issue(
    store: &dyn Store,
    user: Option<UserId>,
    now: i64,
) -> Result<String, StoreError> {
    let code = base64url::encode(
        random_bytes::<24>().map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?,
    );
    store
        .put_invitation(&InvitationRecord {
            code_sha256: code_hash(&code),
            user,
            expires_at: now + INVITATION_SECS,
        })
        .await?;
    Ok(code)
}
