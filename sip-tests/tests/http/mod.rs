//! A minimal HTTP/1.1 client over loopback TCP for the metrics, report and wallboard tests
//! (one request per connection, `Connection: close`).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Status, lower-cased headers and body of one response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// `GET path` with extra header lines (`"Authorization: Bearer …"`).
pub async fn get(addr: SocketAddr, path: &str, headers: &[String]) -> anyhow::Result<Reply> {
    let (status, headers, body) = request(addr, "GET", path, headers).await?;
    let body = String::from_utf8(body).context("response is not UTF-8")?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&body)? } else { body };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `method path` with extra header lines and no body: status, lower-cased headers and the
/// raw body (not de-chunked: for answers with a Content-Length, e.g. a WAV).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
) -> anyhow::Result<(u16, Vec<(String, String)>, Vec<u8>)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timeout")??;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .context("response timeout")??;
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no header end in {:?}", String::from_utf8_lossy(&raw));
    };
    let head = std::str::from_utf8(&raw[..end]).context("header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, raw[end + 4..].to_vec()))
}

fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("chunk size line")?;
        let n = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("short chunk")?);
        s = rest.get(n + 2..).context("chunk end")?;
    }
}

/// Prometheus text → `name{labels}` → value (labels in the order the code gives them).
pub fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
