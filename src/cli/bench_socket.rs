//! `token-sidecar bench-socket`: a load generator for a running daemon.
//!
//! It needs nothing but the socket: it registers two hosts of its own with `hello`
//! (`bench-hs256.invalid`, shared secret; `bench-rs256.invalid`, RS256 with keys from a key server
//! it runs on 127.0.0.1), mints its tokens, drives N connections with M requests in flight each
//! through the protocol client, and prints throughput and latency percentiles.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use token_sidecar::clock::unix_now;
use token_sidecar::config::HostSettings;
use token_sidecar::keys::SigningKey;
use token_sidecar::protocol::client::{Client, ClientError, ReplyReader, RequestWriter};
use token_sidecar::protocol::{Auth, ReplyHead};
use token_sidecar::token::{AuthRequest, Minter, Verifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::failure::Failure;

const HS_HOST: &str = "bench-hs256.invalid";
const RS_HOST: &str = "bench-rs256.invalid";
const SECRET: &str = "bench-secret";
const KID: &str = "bench/key1";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Mix {
    /// HS256 tokens only.
    Hs256,
    /// RS256 tokens only (keys from the tool's own key server on 127.0.0.1).
    Rs256,
    /// Half and half.
    Mixed,
    /// Access tokens (`access_token` IQs of distinct occupants), HS256.
    AccessHs256,
    /// Access tokens, ES256.
    AccessEs256,
    /// Access tokens, EdDSA.
    AccessEddsa,
}

impl Mix {
    /// The algorithm of an access-token mix.
    fn access_alg(self) -> Option<Algorithm> {
        match self {
            Mix::AccessHs256 => Some(Algorithm::HS256),
            Mix::AccessEs256 => Some(Algorithm::ES256),
            Mix::AccessEddsa => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

/// The MUC component the access-token mixes register as an issuer.
const ACCESS_MUC: &str = "conference.bench.invalid";

/// The issuer entry of `hello` for an access-token mix: a fresh key of `alg`, no rate limit.
fn access_issuer(alg: Algorithm) -> Result<Map<String, Value>, Failure> {
    let key = if alg == Algorithm::HS256 {
        "bench-access-secret-0123456789abcdef".to_owned()
    } else {
        token_sidecar::keys::generate(alg)
            .map_err(failed)?
            .private_pem()
            .to_owned()
    };
    Ok(options(json!({"module": "access_token", "options": {
        "access_token_key": key, "access_token_alg": format!("{alg:?}"), "access_token_rate_limit": 0}})))
}

/// An occupant's `muc#access-token` IQ, as the shim forwards it.
fn access_request(n: usize) -> token_sidecar::access::IssueRequest {
    let room = format!("room{}@{ACCESS_MUC}", n % 100);
    token_sidecar::access::IssueRequest {
        issuer: ACCESS_MUC.to_owned(),
        door: Some(token_sidecar::access::Door::Muc),
        stanza: format!(
            "<iq type='get' id='{n}' from='u{n}@bench.invalid/r' to='{room}/focus'>\
             <query xmlns='http://jabber.org/protocol/muc#access-token'/></iq>"
        ),
        room: Some(room.clone()),
        room_exists: true,
        occupant: Some(token_sidecar::access::OccupantInfo {
            nick: format!("{room}/n{n}"),
            role: Some("participant".into()),
            affiliation: Some("none".into()),
        }),
        ..Default::default()
    }
}

/// Drive a running daemon and print throughput and p50/p99/p999 latency.
///
/// The tool registers its own hosts with `hello` (so the daemon needs no config), runs a key server
/// on 127.0.0.1 for RS256, and mints distinct tokens so that the daemon's remembered logins do not
/// answer for it (RS256 tokens repeat after --rs256-distinct, as signing is slow).
/// Example: token-sidecar bench-socket --socket /tmp/ts.sock --connections 4 --inflight 64
/// --requests 200000 --mix hs256 --in-process
#[derive(clap::Args)]
pub(super) struct BenchArgs {
    /// The daemon's socket.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
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

/// A failure of the run (the daemon, the socket, the tool's key server): exit 1.
fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::runtime(e.to_string())
}

fn claims(n: usize, now: i64) -> Value {
    json!({"iss": "bench", "aud": "jitsi", "sub": "bench.invalid", "room": "*", "exp": now + 3600,
           "context": {"user": {"id": n.to_string(), "name": format!("user {n}")}}})
}

/// The tool's signers: HS256 with the bench secret, a wrong secret for refused tokens, and RS256
/// with a fresh key (when the mix has RS256 tokens).
struct Signers {
    hs: Minter,
    wrong_hs: Minter,
    rs: Option<Minter>,
}

impl Signers {
    fn new(needs_rsa: bool) -> Result<(Signers, Option<String>), Failure> {
        let hs = Minter::new(SigningKey::hmac(SECRET.as_bytes()), Algorithm::HS256, None).map_err(failed)?;
        let wrong_hs = Minter::new(SigningKey::hmac(b"wrong"), Algorithm::HS256, None).map_err(failed)?;
        let (rs, pem) = if needs_rsa {
            let key = SigningKey::generate_rsa().map_err(failed)?;
            let der = key.public_key_der().ok_or_else(|| failed("no public key"))?;
            let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der));
            (
                Some(Minter::new(key, Algorithm::RS256, Some(KID.into())).map_err(failed)?),
                Some(pem),
            )
        } else {
            (None, None)
        };
        Ok((Signers { hs, wrong_hs, rs }, pem))
    }

    fn rs(&self) -> Result<&Minter, Failure> {
        self.rs.as_ref().ok_or_else(|| failed("no RSA signer"))
    }
}

/// Serves `pem` for every GET on 127.0.0.1 (the RS256 host's key server); returns the base URL.
/// The smallest HTTP/1.1 that reqwest accepts: the tool must not depend on anything else running.
async fn key_server(pem: String) -> Result<String, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(failed)?;
    let url = format!("http://{}/", listener.local_addr().map_err(failed)?);
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

enum Job {
    /// A login.
    Auth { host: &'static str, token: String },
    /// An access-token IQ.
    Access(Box<token_sidecar::access::IssueRequest>),
}

/// The tokens to send, in order. Invalid ones carry another token's signature.
fn make_jobs(args: &BenchArgs, signers: &Signers, now: i64) -> Result<Vec<Job>, Failure> {
    let mut jobs = Vec::with_capacity(args.requests);
    let mut rs_made: Vec<String> = Vec::new();
    let invalid_every = if args.invalid_ratio > 0.0 {
        (1.0 / args.invalid_ratio).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    for n in 0..args.requests {
        if args.mix.access_alg().is_some() {
            jobs.push(Job::Access(Box::new(access_request(n))));
            continue;
        }
        let rs = match args.mix {
            Mix::Rs256 => true,
            Mix::Mixed => n % 2 == 1,
            _ => false,
        };
        let invalid = invalid_every != usize::MAX && n % invalid_every == 0;
        let (host, token) = if rs {
            let token = if rs_made.len() < args.rs256_distinct.max(1) {
                let t = signers.rs()?.sign(&claims(n, now)).map_err(failed)?;
                rs_made.push(t.clone());
                t
            } else {
                rs_made[n % rs_made.len()].clone()
            };
            (RS_HOST, token)
        } else {
            (HS_HOST, signers.hs.sign(&claims(n, now)).map_err(failed)?)
        };
        let token = if invalid {
            let (signed, _) = token.rsplit_once('.').ok_or_else(|| failed("bad token"))?;
            let other = if rs { signers.rs()? } else { &signers.wrong_hs }
                .sign(&json!({"other": n}))
                .map_err(failed)?;
            let (_, sig) = other.rsplit_once('.').ok_or_else(|| failed("bad token"))?;
            format!("{signed}.{sig}")
        } else {
            token
        };
        jobs.push(Job::Auth { host, token });
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

/// Reads this connection's replies: `id / step` is a request's place on its connection.
async fn read_replies(
    mut replies: ReplyReader,
    budget: Arc<Semaphore>,
    sent_at: Arc<Vec<AtomicU64>>,
    step: usize,
    epoch: Instant,
) -> Result<Tally, Failure> {
    let expected = sent_at.len();
    let mut tally = Tally {
        latencies_ns: Vec::with_capacity(expected),
        ..Tally::default()
    };
    while tally.ok + tally.refused < expected as u64 {
        let line = replies
            .next_line()
            .await
            .map_err(failed)?
            .ok_or_else(|| failed(ClientError::Closed))?;
        let now = epoch.elapsed().as_nanos() as u64;
        let head: ReplyHead<u64> = serde_json::from_slice(line)
            .map_err(|_| failed(format!("unexpected reply: {}", String::from_utf8_lossy(line))))?;
        let slot = sent_at
            .get(head.id as usize / step)
            .ok_or_else(|| failed(format!("reply to an unknown id {}", head.id)))?;
        tally
            .latencies_ns
            .push(now.saturating_sub(slot.load(Ordering::Acquire)));
        if head.ok {
            tally.ok += 1;
        } else {
            tally.refused += 1;
        }
        budget.add_permits(1);
    }
    Ok(tally)
}

/// Drives one connection. `ids` are this connection's request ids (indices into `jobs`): `first`,
/// `first + step`, …
async fn drive(
    path: PathBuf,
    jobs: Arc<Vec<Job>>,
    ids: Vec<usize>,
    step: usize,
    inflight: usize,
    per_second: Option<f64>,
) -> Result<Tally, Failure> {
    let client = Client::connect(&path)
        .await
        .map_err(|e| failed(format!("connect {}: {e}", path.display())))?;
    let (mut requests, replies) = client.split();
    let budget = Arc::new(Semaphore::new(inflight));
    // When each request went out, in ns after `epoch`, by place on this connection (no lock: the
    // sender writes a slot before sending the request, the reader reads it after its reply).
    let epoch = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..ids.len()).map(|_| AtomicU64::new(0)).collect());
    let reader = tokio::spawn(read_replies(replies, budget.clone(), sent_at.clone(), step, epoch));

    // Open-loop pacing against absolute deadlines: request n is due at start + n / rate. A request
    // that is late (timer granularity is 1 ms) goes out at once with any others that are due, so the
    // achieved rate matches the asked one instead of drifting down as a `Delay` interval does.
    let pace = per_second.map(|rate| (tokio::time::Instant::now(), Duration::from_secs_f64(1.0 / rate)));
    // `sent_at[unsent..]` are the requests queued, stamped just before they are written.
    let mut unsent = 0;
    for (n, id) in ids.into_iter().enumerate() {
        if let Some((start, period)) = pace {
            let due = start + period.mul_f64(n as f64);
            if due > tokio::time::Instant::now() {
                send(&mut requests, &sent_at[unsent..n], epoch).await?;
                unsent = n;
                tokio::time::sleep_until(due).await;
            }
        }
        if budget.available_permits() == 0 {
            // About to wait for replies: what is queued must go out first.
            send(&mut requests, &sent_at[unsent..n], epoch).await?;
            unsent = n;
        }
        budget.acquire().await.map_err(failed)?.forget();
        match &jobs[id] {
            Job::Auth { host, token } => {
                let auth = Auth {
                    host: Cow::Borrowed(host),
                    token: Some(Cow::Borrowed(token)),
                    ..Auth::default()
                };
                requests.queue(id, &auth);
            }
            Job::Access(request) => requests.queue(id, request.as_ref()),
        }
        if requests.queued() > 32 * 1024 {
            send(&mut requests, &sent_at[unsent..=n], epoch).await?;
            unsent = n + 1;
        }
    }
    send(&mut requests, &sent_at[unsent..], epoch).await?;
    reader.await.map_err(failed)?
}

/// Stamps the queued requests with the time now, then writes them.
async fn send(requests: &mut RequestWriter, stamps: &[AtomicU64], epoch: Instant) -> Result<(), Failure> {
    if requests.queued() == 0 {
        return Ok(());
    }
    let now = epoch.elapsed().as_nanos() as u64;
    for sent in stamps {
        sent.store(now, Ordering::Release);
    }
    requests.flush().await.map_err(|e| failed(format!("write: {e}")))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn in_process(jobs: Arc<Vec<Job>>, hs: HostSettings) -> Result<f64, Failure> {
    let verifier = Arc::new(Verifier::new(hs).map_err(failed)?);
    let hs_token = |job: &Job| match job {
        Job::Auth { host, token } if *host == HS_HOST => Some(token.clone()),
        _ => None,
    };
    let hs_jobs: Vec<String> = jobs.iter().filter_map(hs_token).collect();
    if hs_jobs.is_empty() {
        return Err(Failure::usage("--in-process measures HS256 tokens; the mix has none"));
    }
    let now = unix_now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for part in hs_jobs.chunks(hs_jobs.len().div_ceil(2)) {
        let part = part.to_vec();
        let verifier = verifier.clone();
        tasks.push(tokio::spawn(async move {
            for token in &part {
                let request = AuthRequest {
                    token: Some(token),
                    ..AuthRequest::default()
                };
                let _ = std::hint::black_box(verifier.verify(&request, now).await);
            }
        }));
    }
    for task in tasks {
        task.await.map_err(failed)?;
    }
    Ok(hs_jobs.len() as f64 / start.elapsed().as_secs_f64())
}

pub(super) fn run(args: BenchArgs) -> Result<ExitCode, Failure> {
    if args.connections == 0 || args.inflight == 0 || args.requests == 0 {
        return Err(Failure::usage(
            "--connections, --inflight and --requests must be at least 1",
        ));
    }
    if !(0.0..=1.0).contains(&args.invalid_ratio) {
        return Err(Failure::usage("--invalid-ratio must be between 0 and 1"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(failed)?;
    runtime.block_on(bench(args))?;
    Ok(ExitCode::SUCCESS)
}

fn options(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

async fn bench(args: BenchArgs) -> Result<(), Failure> {
    let now = unix_now();
    let hs_options = options(json!({"app_id": "bench", "app_secret": SECRET, "asap_accepted_issuers": ["bench"]}));
    let (signers, pem) = Signers::new(matches!(args.mix, Mix::Rs256 | Mix::Mixed))?;
    let mut hosts = BTreeMap::from([(HS_HOST.to_owned(), hs_options.clone())]);
    if let Some(pem) = pem {
        let url = key_server(pem).await?;
        hosts.insert(
            RS_HOST.to_owned(),
            options(json!({"app_id": "bench", "asap_key_server": url, "asap_accepted_issuers": ["bench"]})),
        );
    }

    // Register the hosts and fetch the RSA key once, on a control connection.
    let mut control = Client::connect(&args.socket).await.map_err(|e| {
        failed(format!(
            "connect {}: {e} (is the daemon running?)",
            args.socket.display()
        ))
    })?;
    let mut issuers = BTreeMap::new();
    if let Some(alg) = args.mix.access_alg() {
        issuers.insert(ACCESS_MUC.to_owned(), access_issuer(alg)?);
    }
    let hello = control
        .register(token_sidecar::protocol::Hello {
            version: token_sidecar::protocol::PROTOCOL_VERSION,
            hosts,
            issuers,
            instance: None,
        })
        .await
        .map_err(failed)?;
    if !hello.ok || !hello.errors.is_empty() || !hello.issuer_errors.is_empty() {
        return Err(failed(format!("hello refused: {hello:?}")));
    }

    eprintln!("minting {} tokens…", args.requests);
    let jobs = Arc::new(make_jobs(&args, &signers, now)?);
    if let Some(rs) = &signers.rs {
        let warm = rs.sign(&claims(usize::MAX, now)).map_err(failed)?;
        let auth = Auth {
            host: Cow::Borrowed(RS_HOST),
            token: Some(Cow::Owned(warm)),
            ..Auth::default()
        };
        let reply = control.call(&auth).await.map_err(failed)?;
        if reply["ok"] != true {
            return Err(failed(format!("RS256 warm-up refused: {reply}")));
        }
    }

    let rss_at_start = args.watch_pid.and_then(rss_kib);
    let peak = Arc::new(AtomicU64::new(rss_at_start.unwrap_or(0)));
    let watcher = args.watch_pid.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
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
        let tally = driver.await.map_err(failed)??;
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
            Mix::AccessHs256 => "access-hs256",
            Mix::AccessEs256 => "access-es256",
            Mix::AccessEddsa => "access-eddsa",
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
            peak.load(Ordering::Relaxed),
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
        let settings = HostSettings::from_options(HS_HOST, &hs_options, false).map_err(failed)?;
        let local = in_process(jobs.clone(), settings).await?;
        let hs_share = jobs
            .iter()
            .filter(|j| matches!(j, Job::Auth { host, .. } if *host == HS_HOST))
            .count() as f64
            / jobs.len() as f64;
        println!(
            "in-process HS256 verify (2 threads): {local:.0} /s; socket/in-process ratio {:.2}",
            throughput * hs_share / local
        );
    }
    Ok(())
}
