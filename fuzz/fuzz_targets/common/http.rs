//! The little HTTP server side the targets that fetch keys need (shared by `token` and
//! `key_fetch`): read one request's head, whatever it asks.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads from `stream` until the end of a request head (or the connection ends).
pub async fn read_request_head(stream: &mut TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
}
