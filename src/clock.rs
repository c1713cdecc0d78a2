//! The gateway's clock: one [`Clock`] in [`AppState`](crate::state::AppState), read by every
//! check of time (tokens, expiries, sessions) and every wait that ends at a time of it (long
//! polls, event streams, expiry reports). It is `handsign-verify`'s type, so a test's
//! [`TestClock`] sets the time for the gateway and the services that check its tokens alike.

pub use handsign_verify::{Clock, Deadline, TestClock};
