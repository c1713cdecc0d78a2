//! The gateway's clock: unix seconds, in one place so every check reads the same time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now. A clock before 1970 reads as 0, which expires everything: failing closed.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
