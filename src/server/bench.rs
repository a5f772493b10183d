//! `token-sidecar bench-socket`: a load generator for a running daemon.
//!
//! It needs nothing but the socket: it registers two hosts of its own with `hello`
//! (`bench-hs256.invalid`, shared secret; `bench-rs256.invalid`, RS256 with keys from a key server
//! it runs on 127.0.0.1), mints its tokens, drives N connections with M requests in flight each,
//! and prints throughput and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::Semaphore;

use crate::config::HostSettings;
use crate::token::{AuthRequest, Verifier, base64url};

const HS_HOST: &str = "bench-hs256.invalid";
const RS_HOST: &str = "bench-rs256.invalid";
const SECRET: &str = "bench-secret";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// HS256 tokens only.
    Hs256,
    /// RS256 tokens only (keys from the tool's own key server on 127.0.0.1).
    Rs256,
    /// Half and half.
    Mixed,
}

/// Drive a running daemon and print throughput and p50/p99/p999 latency.
///
/// The tool registers its own hosts with `hello` (so the daemon needs no config), runs a key server
/// on 127.0.0.1 for RS256, and mints distinct tokens so that the daemon's cache of verified tokens
/// does not answer for it (RS256 tokens repeat after --rs256-distinct, as signing is slow).
/// Example: token-sidecar bench-socket --socket /tmp/ts.sock --connections 4 --inflight 64
/// --requests 200000 --mix hs256 --in-process
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH")]
    socket: std::path::PathBuf,
    /// Connections opened to the daemon.
    #[arg(long, default_value_t = 4, value_name = "N")]
    connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 32, value_name = "M")]
    inflight: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 100_000, value_name = "R")]
    requests: usize,
    #[arg(long, value_enum, default_value = "hs256")]
    mix: Mix,
    /// Fraction of tokens with a wrong signature (refused by the daemon).
    #[arg(long, default_value_t = 0.0, value_name = "X")]
    invalid_ratio: f64,
    /// Send at most this many requests per second in all (default: as fast as replies come).
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Distinct RS256 tokens to sign (each costs a few hundred µs to make).
    #[arg(long, default_value_t = 20_000, value_name = "K")]
    rs256_distinct: usize,
    /// Also verify the same tokens in this process (2 threads, no socket) and print the ratio.
    #[arg(long)]
    in_process: bool,
    /// Report the peak VmRSS of this process (the daemon's PID) during the run.
    #[arg(long, value_name = "PID")]
    watch_pid: Option<u32>,
}

fn hs256(claims: &Value, secret: &str) -> String {
    let input = format!(
        "{}.{}",
        base64url(json!({"alg": "HS256", "typ": "JWT"}).to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    format!(
        "{input}.{}",
        base64url(aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref())
    )
}

fn claims(n: usize, now: i64) -> Value {
    json!({"iss": "bench", "aud": "jitsi", "sub": "bench.invalid", "room": "*", "exp": now + 3600,
           "context": {"user": {"id": n.to_string(), "name": format!("user {n}")}}})
}

struct RsaSigner {
    pair: aws_lc_rs::rsa::KeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl RsaSigner {
    fn new() -> Result<(RsaSigner, String), String> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| "cannot generate an RSA key".to_owned())?;
        let der = pair
            .public_key()
            .as_der()
            .map_err(|_| "cannot encode the RSA public key".to_owned())?;
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()));
        Ok((
            RsaSigner {
                pair,
                rng: aws_lc_rs::rand::SystemRandom::new(),
            },
            pem,
        ))
    }

    fn sign(&self, claims: &Value) -> Result<String, String> {
        let input = format!(
            "{}.{}",
            base64url(
                json!({"alg": "RS256", "typ": "JWT", "kid": "bench/key1"})
                    .to_string()
                    .as_bytes()
            ),
            base64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "RSA signing failed".to_owned())?;
        Ok(format!("{input}.{}", base64url(&sig)))
    }
}

/// Serves `pem` for every GET on 127.0.0.1; returns the base URL.
async fn key_server(pem: String) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("key server: {e}"))?;
    let url = format!(
        "http://{}/",
        listener.local_addr().map_err(|e| format!("key server: {e}"))?
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/x-pem-file\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{pem}",
        pem.len()
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

struct Job {
    host: &'static str,
    token: String,
}

/// The tokens to send, in order. Invalid ones carry another token's signature.
fn make_jobs(args: &BenchArgs, signer: Option<&RsaSigner>, now: i64) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::with_capacity(args.requests);
    let mut rs_made: Vec<String> = Vec::new();
    let invalid_every = if args.invalid_ratio > 0.0 {
        (1.0 / args.invalid_ratio).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    for n in 0..args.requests {
        let rs = match args.mix {
            Mix::Hs256 => false,
            Mix::Rs256 => true,
            Mix::Mixed => n % 2 == 1,
        };
        let invalid = invalid_every != usize::MAX && n % invalid_every == 0;
        let (host, token) = if rs {
            let signer = signer.ok_or("no RSA signer")?;
            let token = if rs_made.len() < args.rs256_distinct.max(1) {
                let t = signer.sign(&claims(n, now))?;
                rs_made.push(t.clone());
                t
            } else {
                rs_made[n % rs_made.len()].clone()
            };
            (RS_HOST, token)
        } else {
            (HS_HOST, hs256(&claims(n, now), SECRET))
        };
        let token = if invalid {
            let (signed, _) = token.rsplit_once('.').ok_or("bad token")?;
            let other = if rs {
                signer.ok_or("no RSA signer")?.sign(&json!({"other": n}))?
            } else {
                hs256(&json!({"other": n}), "wrong")
            };
            let (_, sig) = other.rsplit_once('.').ok_or("bad token")?;
            format!("{signed}.{sig}")
        } else {
            token
        };
        jobs.push(Job { host, token });
    }
    Ok(jobs)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `id` and whether `ok` was true (other fields are skipped, not built).
fn scan_reply(line: &[u8]) -> Option<(u64, bool)> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: u64,
        ok: bool,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    Some((head.id, head.ok))
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime and stime are fields 14 and 15 (in clock ticks of 1/100 s on Linux).
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    ok: u64,
    refused: u64,
}

/// Drives one connection. `ids` are this connection's request ids (indices into `jobs`): `first`,
/// `first + step`, …, so `id / step` is a request's place on its connection.
async fn drive(
    path: std::path::PathBuf,
    jobs: Arc<Vec<Job>>,
    ids: Vec<usize>,
    step: usize,
    inflight: usize,
    per_second: Option<f64>,
) -> Result<Tally, String> {
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|e| format!("connect {}: {e}", path.display()))?;
    let (mut read, mut write) = stream.into_split();
    let budget = Arc::new(Semaphore::new(inflight));
    // When each request went out, in ns after `epoch`, by place on this connection (no lock: the
    // sender writes a slot before sending the request, the reader reads it after its reply).
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..ids.len()).map(|_| AtomicU64::new(0)).collect());
    let expected = ids.len();

    let reader = {
        let budget = budget.clone();
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut tally = Tally {
                latencies_ns: Vec::with_capacity(expected),
                ..Tally::default()
            };
            let mut buf = vec![0u8; 64 * 1024];
            let mut filled = 0;
            while tally.ok + tally.refused < expected as u64 {
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                let n = read.read(&mut buf[filled..]).await.map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("the daemon closed the connection".to_owned());
                }
                filled += n;
                let now = epoch.elapsed().as_nanos() as u64;
                let mut done = 0;
                let mut replies = 0;
                while let Some(end) = buf[done..filled].iter().position(|b| *b == b'\n') {
                    let line = &buf[done..done + end];
                    done += end + 1;
                    let Some((id, ok)) = scan_reply(line) else {
                        return Err(format!("unexpected reply: {}", String::from_utf8_lossy(line)));
                    };
                    let slot = sent_at
                        .get(id as usize / step)
                        .ok_or_else(|| format!("reply to an unknown id {id}"))?;
                    tally
                        .latencies_ns
                        .push(now.saturating_sub(slot.load(Ordering::Acquire)));
                    if ok {
                        tally.ok += 1;
                    } else {
                        tally.refused += 1;
                    }
                    replies += 1;
                }
                buf.copy_within(done..filled, 0);
                filled -= done;
                budget.add_permits(replies);
            }
            Ok(tally)
        })
    };

    // Open-loop pacing against absolute deadlines: request n is due at start + n / rate. A request
    // that is late (timer granularity is 1 ms) goes out at once with any others that are due, so the
    // achieved rate matches the asked one instead of drifting down as a `Delay` interval does.
    #[derive(serde::Serialize)]
    struct AuthLine<'a> {
        id: usize,
        op: &'static str,
        host: &'a str,
        token: &'a str,
    }
    let pace = per_second.map(|rate| (tokio::time::Instant::now(), Duration::from_secs_f64(1.0 / rate)));
    let mut batch = Vec::with_capacity(64 * 1024);
    // `sent_at[unsent..]` are the requests in `batch`, stamped just before the batch is written.
    let mut unsent = 0;
    for (n, id) in ids.into_iter().enumerate() {
        if let Some((start, period)) = pace {
            let due = start + period.mul_f64(n as f64);
            if due > tokio::time::Instant::now() {
                if !batch.is_empty() {
                    send(&mut write, &mut batch, &sent_at[unsent..n], epoch).await?;
                    unsent = n;
                }
                tokio::time::sleep_until(due).await;
            }
        }
        if budget.available_permits() == 0 && !batch.is_empty() {
            // About to wait for replies: what is batched must go out first.
            send(&mut write, &mut batch, &sent_at[unsent..n], epoch).await?;
            unsent = n;
        }
        budget.acquire().await.map_err(|_| "closed")?.forget();
        let job = &jobs[id];
        let line = AuthLine {
            id,
            op: "auth",
            host: job.host,
            token: &job.token,
        };
        serde_json::to_writer(&mut batch, &line).map_err(|e| e.to_string())?;
        batch.push(b'\n');
        if batch.len() > 32 * 1024 {
            send(&mut write, &mut batch, &sent_at[unsent..=n], epoch).await?;
            unsent = n + 1;
        }
    }
    send(&mut write, &mut batch, &sent_at[unsent..], epoch).await?;
    reader.await.map_err(|e| e.to_string())?
}

/// Stamps the requests in `batch` with the time now, then writes it.
async fn send(
    write: &mut OwnedWriteHalf,
    batch: &mut Vec<u8>,
    requests: &[AtomicU64],
    epoch: Instant,
) -> Result<(), String> {
    let now = epoch.elapsed().as_nanos() as u64;
    for sent in requests {
        sent.store(now, Ordering::Release);
    }
    write.write_all(batch).await.map_err(|e| format!("write: {e}"))?;
    batch.clear();
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn in_process(jobs: Arc<Vec<Job>>, hs: HostSettings) -> Result<f64, String> {
    let verifier = Arc::new(Verifier::new(hs).map_err(|e| e.to_string())?);
    let hs_jobs: Vec<usize> = (0..jobs.len()).filter(|i| jobs[*i].host == HS_HOST).collect();
    if hs_jobs.is_empty() {
        return Err("--in-process measures HS256 tokens; the mix has none".into());
    }
    let now = super::ops::unix_now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for part in hs_jobs.chunks(hs_jobs.len().div_ceil(2)) {
        let part = part.to_vec();
        let jobs = jobs.clone();
        let verifier = verifier.clone();
        tasks.push(tokio::spawn(async move {
            for i in part {
                let request = AuthRequest {
                    token: Some(&jobs[i].token),
                    ..AuthRequest::default()
                };
                let _ = std::hint::black_box(verifier.verify(&request, now).await);
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    Ok(hs_jobs.len() as f64 / start.elapsed().as_secs_f64())
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    if args.connections == 0 || args.inflight == 0 || args.requests == 0 {
        return Err("--connections, --inflight and --requests must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.invalid_ratio) {
        return Err("--invalid-ratio must be between 0 and 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let now = super::ops::unix_now();
    let hs_options = json!({"app_id": "bench", "app_secret": SECRET, "asap_accepted_issuers": ["bench"]});
    let needs_rsa = args.mix != Mix::Hs256;
    let (signer, pem) = if needs_rsa {
        let (signer, pem) = RsaSigner::new()?;
        (Some(signer), Some(pem))
    } else {
        (None, None)
    };
    let mut hosts = json!({ HS_HOST: hs_options });
    if let Some(pem) = pem {
        let url = key_server(pem).await?;
        hosts[RS_HOST] = json!({"app_id": "bench", "asap_key_server": url, "asap_accepted_issuers": ["bench"]});
    }

    // Register the hosts and fetch the RSA key once, on a control connection.
    let control = UnixStream::connect(&args.socket)
        .await
        .map_err(|e| format!("connect {}: {e} (is the daemon running?)", args.socket.display()))?;
    let mut control = BufReader::new(control);
    let hello = json!({"id": 0, "op": "hello", "version": 1, "hosts": hosts});
    control
        .get_mut()
        .write_all(format!("{hello}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    control.read_line(&mut line).await.map_err(|e| e.to_string())?;
    let reply: Value = serde_json::from_str(&line).map_err(|e| format!("hello reply {line:?}: {e}"))?;
    if reply["errors"].as_object().is_some_and(|e| !e.is_empty()) || reply["ok"] != true {
        return Err(format!("hello refused: {reply}"));
    }

    eprintln!("minting {} tokens…", args.requests);
    let jobs = Arc::new(make_jobs(&args, signer.as_ref(), now)?);
    if let Some(signer) = &signer {
        let warm = json!({"id": 1, "op": "auth", "host": RS_HOST, "token": signer.sign(&claims(usize::MAX, now))?});
        control
            .get_mut()
            .write_all(format!("{warm}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        line.clear();
        control.read_line(&mut line).await.map_err(|e| e.to_string())?;
        if !line.contains("\"ok\":true") {
            return Err(format!("RS256 warm-up refused: {line}"));
        }
    }

    let rss_at_start = args.watch_pid.and_then(rss_kib);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_at_start.unwrap_or(0)));
    let watcher = args.watch_pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    eprintln!(
        "sending {} requests over {} connections, {} in flight each…",
        args.requests, args.connections, args.inflight
    );
    let cpu_at_start = (cpu_time(None), cpu_time(args.watch_pid));
    let start = Instant::now();
    let mut drivers = Vec::new();
    for c in 0..args.connections {
        let ids: Vec<usize> = (c..args.requests).step_by(args.connections).collect();
        let per_second = args.rate.map(|r| r / args.connections as f64);
        drivers.push(tokio::spawn(drive(
            args.socket.clone(),
            jobs.clone(),
            ids,
            args.connections,
            args.inflight,
            per_second,
        )));
    }
    let mut all = Tally::default();
    for driver in drivers {
        let tally = driver.await.map_err(|e| e.to_string())??;
        all.latencies_ns.extend(tally.latencies_ns);
        all.ok += tally.ok;
        all.refused += tally.refused;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_at_end = (cpu_time(None), cpu_time(args.watch_pid));
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    all.latencies_ns.sort_unstable();
    let throughput = args.requests as f64 / elapsed;
    let l = &all.latencies_ns;
    println!(
        "mix {} connections {} inflight {} requests {} invalid-ratio {}{}",
        match args.mix {
            Mix::Hs256 => "hs256",
            Mix::Rs256 => "rs256",
            Mix::Mixed => "mixed",
        },
        args.connections,
        args.inflight,
        args.requests,
        args.invalid_ratio,
        args.rate.map(|r| format!(" rate {r}/s")).unwrap_or_default()
    );
    println!(
        "throughput {throughput:.0} req/s over {elapsed:.2} s; ok {} refused {}",
        all.ok, all.refused
    );
    println!(
        "latency µs: p50 {:.1} p99 {:.1} p999 {:.1} max {:.1}",
        percentile(l, 50.0),
        percentile(l, 99.0),
        percentile(l, 99.9),
        percentile(l, 100.0)
    );
    if let Some(start_rss) = rss_at_start {
        println!(
            "daemon RSS KiB: before {start_rss}, peak during run {}, after {}",
            peak.load(std::sync::atomic::Ordering::Relaxed),
            args.watch_pid.and_then(rss_kib).unwrap_or(0)
        );
    }
    let per_request = |before: Option<Duration>, after: Option<Duration>| {
        Some((after? - before?).as_secs_f64() * 1e6 / args.requests as f64)
    };
    let tool_cpu = per_request(cpu_at_start.0, cpu_at_end.0);
    let daemon_cpu = per_request(cpu_at_start.1, cpu_at_end.1);
    let show = |cpu: Option<f64>| cpu.map_or("?".to_owned(), |us| format!("{us:.1}"));
    println!(
        "CPU µs per request (utime+stime, 10 ms ticks): load tool {}{}",
        show(tool_cpu),
        if args.watch_pid.is_some() {
            format!(", daemon {}", show(daemon_cpu))
        } else {
            String::new()
        }
    );
    if args.in_process {
        let map = hs_options.as_object().cloned().unwrap_or_default();
        let settings = HostSettings::from_options(HS_HOST, &map, false).map_err(|e| e.to_string())?;
        let local = in_process(jobs.clone(), settings).await?;
        let hs_share = jobs.iter().filter(|j| j.host == HS_HOST).count() as f64 / jobs.len() as f64;
        println!(
            "in-process HS256 verify (2 threads): {local:.0} /s; socket/in-process ratio {:.2}",
            throughput * hs_share / local
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_scanned_for_id_and_ok() {
        assert_eq!(
            scan_reply(br#"{"claims":{"context":{"user":{"id":"9"}}},"id":42,"ok":true}"#),
            Some((42, true))
        );
        assert_eq!(scan_reply(br#"{"condition":"x","id":7,"ok":false}"#), Some((7, false)));
        assert_eq!(scan_reply(br#"{"id":null,"ok":false}"#), None);
    }
}
