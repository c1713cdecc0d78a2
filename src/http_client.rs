//! The HTTP client the gateway and the command line use for outgoing calls.

use std::time::Duration;

/// An HTTP client with TLS by rustls (ring) and the system's trust roots, and timeouts, so that a
/// dead gateway fails a command rather than hanging it.
pub fn new() -> Result<reqwest::Client, reqwest::Error> {
    // Installing the provider fails only when one is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
}
