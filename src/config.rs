//! `handsign serve` configuration: every option is a flag with a `HANDSIGN_` environment
//! variable, checked once at start so a bad value stops the gateway with a clear message rather
//! than weakening it.

use std::net::SocketAddr;
use std::path::PathBuf;

use handsign_protocol::canonical::Limits;
use handsign_protocol::token::MAX_LIFETIME_SECS;
use url::Url;

/// The per-user data directory (XDG Base Directory): `$XDG_DATA_HOME/handsign`, else
/// `$HOME/.local/share/handsign`; `handsign-data` in the working directory only when neither is
/// set. One place for `serve` and the operator commands, whatever directory they run from.
pub fn default_data_dir() -> PathBuf {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(data_home) = absolute("XDG_DATA_HOME") {
        data_home.join("handsign")
    } else if let Some(home) = absolute("HOME") {
        home.join(".local/share/handsign")
    } else {
        PathBuf::from("handsign-data")
    }
}

impl ServeArgs {
    /// The public URL as given, else `http://localhost:PORT` on the port of --listen: so that
    /// `--listen 127.0.0.1:9000` alone gives a gateway whose pages work at
    /// `http://localhost:9000`, rather than one whose passkey origin names another port.
    pub fn public_url(&self) -> Result<Url, url::ParseError> {
        match &self.public_url {
            Some(url) => Ok(url.clone()),
            None => Url::parse(&format!("http://localhost:{}", self.listen.port())),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HANDSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL people and agents reach the gateway at: the token issuer, the WebAuthn origin, and
    /// its host is the RP ID. `http://` is accepted for `localhost` only. Default:
    /// `http://localhost:PORT`, PORT being the port of --listen.
    #[arg(long, env = "HANDSIGN_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Where the gateway keeps its store and signing key (created on first start) unless it
    /// uses Redis. Default: `$XDG_DATA_HOME/handsign`, else `~/.local/share/handsign`.
    #[arg(long, env = "HANDSIGN_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// Keep everything in Redis instead of the data directory, so that any number of gateway
    /// instances share it: a `redis://` URL, or several comma-separated for a Redis Cluster's
    /// seed nodes.
    #[arg(long, env = "HANDSIGN_REDIS_URL")]
    pub redis_url: Option<String>,
    /// With Redis replicas: how once-only writes wait for them (docs/operations.md).
    #[command(flatten)]
    pub redis_replicas: handsign_verify::replicas::ReplicaArgs,
    /// Approval token lifetime in seconds (at most 30).
    #[arg(long, env = "HANDSIGN_TOKEN_LIFETIME", default_value_t = MAX_LIFETIME_SECS,
          value_parser = clap::value_parser!(i64).range(1..=MAX_LIFETIME_SECS))]
    pub token_lifetime: i64,
    #[command(flatten)]
    pub limits: RequestLimits,
    #[command(flatten)]
    pub connections: ConnectionLimits,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Log format.
    #[arg(long, env = "HANDSIGN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub webhooks: crate::notify::webhooks::WebhookArgs,
    /// The operator's contact for push services (VAPID subject): a mailto: or https: URL.
    /// Defaults to the public URL when it is https.
    #[arg(long, env = "HANDSIGN_PUSH_SUBJECT")]
    pub push_subject: Option<String>,
    /// Accept plain-http push endpoints (only for a push service on loopback, in tests):
    /// encryption still protects the message, but not who receives it.
    #[arg(long, env = "HANDSIGN_DANGER_ALLOW_HTTP_PUSH_ENDPOINTS")]
    pub danger_allow_http_push_endpoints: bool,
    /// Accept push endpoints on loopback, private, link-local and other non-public addresses
    /// (only for a push service on the gateway's own network, or in tests): otherwise any user
    /// could make the gateway send requests into that network.
    #[arg(long, env = "HANDSIGN_DANGER_ALLOW_PRIVATE_PUSH_ENDPOINTS")]
    pub danger_allow_private_push_endpoints: bool,
    /// Most devices one user may have receiving notifications.
    #[arg(long, env = "HANDSIGN_MAX_DEVICES_PER_USER", default_value_t = 10)]
    pub max_devices_per_user: usize,
}

/// Limits on what agents may ask, so that a misbehaving agent cannot flood a person with prompts
/// or the gateway with work.
#[derive(Debug, Clone, clap::Args)]
pub struct RequestLimits {
    /// Largest request body, in bytes.
    #[arg(long, env = "HANDSIGN_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Largest params, in bytes of canonical JSON.
    #[arg(long, env = "HANDSIGN_MAX_PARAMS_BYTES", default_value_t = 64 * 1024)]
    pub max_params_bytes: usize,
    /// Deepest nesting of params.
    #[arg(long, env = "HANDSIGN_MAX_PARAMS_DEPTH", default_value_t = 32)]
    pub max_params_depth: usize,
    /// Longest time a request may wait for a person, in seconds.
    #[arg(long, env = "HANDSIGN_MAX_TTL", default_value_t = 3600)]
    pub max_ttl: i64,
    /// Most requests one agent may have pending at once.
    #[arg(long, env = "HANDSIGN_MAX_PENDING_PER_AGENT", default_value_t = 20)]
    pub max_pending_per_agent: usize,
    /// Most requests one agent may create per minute.
    #[arg(long, env = "HANDSIGN_AGENT_REQUESTS_PER_MINUTE", default_value_t = 30)]
    pub agent_requests_per_minute: u64,
    /// Most requests one person may be asked to decide per minute, across all their agents and
    /// enrollments: a bound on prompt fatigue that no number of agents gets around.
    #[arg(long, env = "HANDSIGN_USER_PROMPTS_PER_MINUTE", default_value_t = 60)]
    pub user_prompts_per_minute: u64,
    /// Most agents that may wait at once for one person to decide their enrollment.
    #[arg(long, env = "HANDSIGN_MAX_PENDING_ENROLLMENTS", default_value_t = 5)]
    pub max_pending_enrollments: usize,
    /// Most enrollment requests per minute from one client address, and for one person.
    #[arg(long, env = "HANDSIGN_ENROLLMENTS_PER_MINUTE", default_value_t = 5)]
    pub enrollments_per_minute: u64,
    /// Most passkey ceremonies (login, registration, decision) one client address may start per
    /// minute: each keeps its state in the store until finished or expired.
    #[arg(long, env = "HANDSIGN_CEREMONIES_PER_MINUTE", default_value_t = 60)]
    pub ceremonies_per_minute: u64,
    /// The header in which the reverse proxy in front of the gateway puts the client's address
    /// (e.g. X-Forwarded-For; its last address counts). Without it, limits per address count the
    /// TCP peer, which behind a proxy is the proxy. Set it only when a proxy you run sets it.
    #[arg(long, env = "HANDSIGN_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
}

/// Who may read `/metrics`. By default anyone who reaches the gateway: the page holds counts
/// only, but an operator may not want them public.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Serve `/metrics` on this address only (e.g. an internal interface for Prometheus), not on
    /// the main listener.
    #[arg(long, env = "HANDSIGN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// A file holding a bearer token (at least 16 characters) that every `/metrics` request
    /// must carry: `Authorization: Bearer TOKEN`.
    #[arg(long, env = "HANDSIGN_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
}

/// Bounds on the gateway's connections, so that idle or slow clients cannot hold what others
/// need (see [`crate::connections`]). The timeouts bound how long a client may take to *send* a
/// request; an answer being waited for (a long poll, an event stream) has no deadline.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimits {
    /// Seconds a new connection has to send its first request's line and headers.
    #[arg(long, env = "HANDSIGN_HEADER_READ_TIMEOUT", default_value_t = ConnectionLimits::DEFAULT.header_read_timeout,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a request's body has to arrive in full, from the end of its headers.
    #[arg(long, env = "HANDSIGN_BODY_READ_TIMEOUT", default_value_t = ConnectionLimits::DEFAULT.body_read_timeout,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout: u64,
    /// Seconds a kept-alive connection may stay open after an answer without having sent the
    /// line and headers of its next request.
    #[arg(long, env = "HANDSIGN_IDLE_TIMEOUT", default_value_t = ConnectionLimits::DEFAULT.idle_timeout,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Most connections open at once. Defaults to the process's limit on open files less 128,
    /// which are kept for the store, Redis, outgoing calls and the metrics listener.
    #[arg(long, env = "HANDSIGN_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
}

impl ConnectionLimits {
    /// The defaults of `handsign serve`.
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        header_read_timeout: 10,
        body_read_timeout: 30,
        idle_timeout: 60,
        max_connections: None,
    };
    /// Open files [`max_connections`](Self::max_connections) leaves for everything else.
    const RESERVED_FILES: u64 = 128;
    /// The default cap when the open-file limit is unlimited or unknown.
    const FALLBACK_MAX_CONNECTIONS: u64 = 65_536;

    /// The cap on open connections: the configured one, or what the open-file limit allows.
    pub fn max_connections(&self) -> usize {
        let max = self.max_connections.unwrap_or_else(|| {
            rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .map_or(Self::FALLBACK_MAX_CONNECTIONS, |files| {
                    files
                        .saturating_sub(Self::RESERVED_FILES)
                        .clamp(1, Self::FALLBACK_MAX_CONNECTIONS)
                })
        });
        usize::try_from(max).unwrap_or(usize::MAX)
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl RequestLimits {
    pub fn params(&self) -> Limits {
        Limits {
            max_bytes: self.max_params_bytes,
            max_depth: self.max_params_depth,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The shortest and default `ttl` of a request, in seconds.
pub const MIN_TTL: i64 = 10;
pub const DEFAULT_TTL: i64 = 300;

/// The gateway's identity on the web, derived from the public URL.
#[derive(Debug, Clone)]
pub struct PublicUrl {
    /// Without a trailing slash: the token `iss`, and the prefix of every URL the gateway gives.
    pub issuer: String,
    /// `scheme://host[:port]`: the only origin browser requests and assertions may come from.
    pub origin: String,
    pub url: Url,
    pub rp_id: String,
}

impl PublicUrl {
    pub fn parse(url: &Url) -> Result<Self, String> {
        let host = url
            .host_str()
            .ok_or_else(|| format!("public URL {url} has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" if host == "localhost" => {}
            _ => {
                return Err(format!(
                    "public URL {url} must be https (http is allowed for localhost only): passkeys need a secure origin"
                ));
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "public URL {url} must not have a query or fragment"
            ));
        }
        let issuer = url.as_str().trim_end_matches('/').to_owned();
        let origin = url.origin().ascii_serialization();
        Ok(PublicUrl {
            issuer,
            origin,
            url: url.clone(),
            rp_id: host.to_owned(),
        })
    }

    /// The absolute URL of a gateway path (starting with `/`).
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
