//! A proxy that passes a set number of Redis commands and then cuts the connection, to show
//! what a step made of several commands leaves behind when the connection dies between two of
//! them (a gateway killed, a network partition).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards to `127.0.0.1:upstream` the first `commands` commands clients send (counted over
/// every connection, as the RESP arrays every client library sends; answers pass unchanged), then closes the connection that
/// sends one more, and every connection after it, without passing that command on. Stops on
/// drop.
pub struct CuttingProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl CuttingProxy {
    pub async fn start(upstream: u16, commands: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the proxy could not bind a loopback port: {e}"));
        let port = listener.local_addr().expect("a bound address").port();
        let left = Arc::new(AtomicUsize::new(commands));
        let cut = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let cut = cut.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, left.clone(), cut.clone()));
                }
            }
        });
        CuttingProxy { port, cut, accept }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether a connection was cut: a client sent more than the commands it passes.
    pub fn cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Passes commands from `client` to `server` while `left` allows, answers back unchanged.
async fn relay(client: TcpStream, server: TcpStream, left: Arc<AtomicUsize>, cut: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        while let Some(length) = frame_length(&pending) {
            let granted = left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !granted || cut.load(Ordering::SeqCst) {
                cut.store(true, Ordering::SeqCst);
                answers.abort();
                return; // both halves of both sockets drop: closed
            }
            if server_write.write_all(&pending[..length]).await.is_err() {
                break;
            }
            pending.drain(..length);
        }
    }
    answers.abort();
}

/// The length of the complete RESP command (an array of bulk strings) at the start of
/// `bytes`, if it is all there.
fn frame_length(bytes: &[u8]) -> Option<usize> {
    let (count, mut at) = header(bytes, b'*')?;
    for _ in 0..count {
        let (length, start) = header(&bytes[at..], b'$')?;
        at += start + length + 2;
        if bytes.len() < at {
            return None;
        }
    }
    Some(at)
}

/// A `<kind><number>\r\n` line at the start of `bytes`: the number and the line's length.
fn header(bytes: &[u8], kind: u8) -> Option<(usize, usize)> {
    if bytes.first() != Some(&kind) {
        return None;
    }
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&bytes[1..end]).ok()?.parse().ok()?;
    Some((number, end + 2))
}
