//! `handsign health`: asks a running gateway whether it can serve, for a container's healthcheck
//! (so the image needs no curl).
//!
//! Exit status: 0 when the URL answers 2xx, 1 otherwise, including when nothing answers within
//! the timeout: a healthcheck knows only healthy (0) and unhealthy (1); Docker reserves 2.

use std::time::Duration;

use url::Url;

use super::Outcome;

/// How long the whole check may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The most of the answer's first line that is repeated in the verdict.
const MAX_DETAIL_CHARS: usize = 200;
/// The most of the answer that is read to find that line.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to check: `/readyz` answers 200 only when the gateway's store answers.
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    url: Url,
}

pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let url = args.url;
    let client = match crate::http_client::new() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("handsign health: unhealthy: cannot make an HTTP client: {e}");
            return Ok(Outcome::Refused);
        }
    };
    let response = match client.get(url.clone()).timeout(TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            eprintln!(
                "handsign health: unhealthy: {url} did not answer within {} s",
                TIMEOUT.as_secs()
            );
            return Ok(Outcome::Refused);
        }
        Err(e) => {
            eprintln!(
                "handsign health: unhealthy: cannot reach {url}: {:#}",
                anyhow::Error::new(e)
            );
            return Ok(Outcome::Refused);
        }
    };
    let status = response.status();
    let detail = first_line(response).await;
    let detail = if detail.is_empty() {
        detail
    } else {
        format!(": {detail}")
    };
    if status.is_success() {
        println!("healthy: {url} answered {status}{detail}");
        Ok(Outcome::Accepted)
    } else {
        eprintln!("handsign health: unhealthy: {url} answered {status}{detail}");
        Ok(Outcome::Refused)
    }
}

/// The first line of the answer (`ready`, `not ready: ...`), without control characters and cut
/// to a length fit for one line. It is only a detail: a body that does not arrive in time, or at
/// all, leaves it empty rather than changing the verdict, and no more than a few KiB are read.
async fn first_line(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES && !body.contains(&b'\n') {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    let line: Vec<char> = body
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if line.len() > MAX_DETAIL_CHARS {
        let mut cut: String = line.iter().take(MAX_DETAIL_CHARS).collect();
        cut.push('…');
        cut
    } else {
        line.into_iter().collect()
    }
}
