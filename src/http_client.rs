//! The HTTP clients the gateway and the command line use for outgoing calls.

use std::time::Duration;

/// An HTTP client with TLS by rustls (ring) and the system's trust roots, and timeouts, so that a
/// dead gateway fails a command rather than hanging it. It never follows redirects: an answer is
/// taken from the URL that was configured or given, so a webhook or push service cannot send the
/// gateway's request (a POST turned into a GET) somewhere else.
pub fn new() -> Result<reqwest::Client, reqwest::Error> {
    builder().build()
}

/// The client that delivers push messages to the endpoints users subscribed: [`new`]'s, and
/// unless `allow_private`, one that connects to public addresses only
/// ([`crate::notify::endpoint`]) and directly, never through a proxy (which would connect to
/// whatever address it resolved).
pub fn for_push(allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    let builder = builder();
    if allow_private {
        builder.build()
    } else {
        builder
            .no_proxy()
            .dns_resolver(crate::notify::endpoint::PublicOnly)
            .build()
    }
}

fn builder() -> reqwest::ClientBuilder {
    // Installing the provider fails only when one is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
}
