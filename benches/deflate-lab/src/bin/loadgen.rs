//! Pipelining WebSocket load generator written for this lab (independent of the stacks under test).
//! Usage: loadgen key=value...
//!   url=ws://127.0.0.1:9100/  mode=echo|idle  conns=100 inflight=10  msg=small|json  (small: 64-byte text, json: ~1 KB chat JSON)
//!   ext="permessage-deflate; client_max_window_bits"   (offer; empty: none)  plainsend=1: send uncompressed frames even when deflate is negotiated (the server then only compresses)  pid=SERVER_PID warm=2 secs=5 verify=0
//! Each connection writes its whole window in one write, and per read answers every echoed message with a new one in
//! one write. Client frames are compressed once per distinct message (valid with or without client context takeover).
//! Server CPU = sum over the server's threads of /proc/PID/task/*/schedstat on-CPU ns (and utime+stime ticks) over the
//! measured phase, divided by the messages echoed in that phase.
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static MSGS: AtomicU64 = AtomicU64::new(0);
static BYTES_IN: AtomicU64 = AtomicU64::new(0); // server -> client frame bytes
static BYTES_OUT: AtomicU64 = AtomicU64::new(0); // client -> server frame bytes
static COMPRESSED_IN: AtomicU64 = AtomicU64::new(0); // replies with RSV1
static CONNECTED: AtomicU64 = AtomicU64::new(0);
static ECHOED_ONCE: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

struct Args(HashMap<String, String>);
impl Args {
    fn get(&self, k: &str, d: &str) -> String { self.0.get(k).cloned().unwrap_or_else(|| d.to_string()) }
    fn num(&self, k: &str, d: u64) -> u64 { self.0.get(k).map(|v| v.parse().unwrap()).unwrap_or(d) }
}

const WORDS: &[&str] = &["the","meeting","is","moved","to","thursday","because","half","of","the","team","will","be",
 "travelling","please","update","your","calendar","and","check","whether","conflicts","appear","with","customer",
 "calls","deploy","window","tonight","rollback","plan","ready","metrics","look","good","latency","p99","dropped",
 "after","cache","change","lunch","order","pizza","salad","anyone","review","pull","request","tests","green",
 "flaky","again","retry","ticket","priority","high","low","backlog","sprint","goal","demo","friday","weekend",
 "coffee","machine","broken","fixed","thanks","great","work","everyone","question","about","api","version",
 "breaking","change","document","release","notes","draft","shared","folder","link","below","see","attached"];

fn rng(seed: &mut u64) -> u64 { *seed ^= *seed << 13; *seed ^= *seed >> 7; *seed ^= *seed << 17; *seed }

/// Distinct messages. small: 64 bytes of JSON-ish text. json: ~1 KB chat message.
fn messages(kind: &str, n: usize) -> Vec<Vec<u8>> {
    let mut seed = 0x9E3779B97F4A7C15u64;
    (0..n).map(|i| {
        if kind == "small" {
            let mut s = format!("{{\"t\":\"m\",\"id\":{},\"b\":\"", 100000 + i);
            while s.len() < 62 { s.push_str(WORDS[(rng(&mut seed) % WORDS.len() as u64) as usize]); s.push(' '); }
            s.truncate(62); s.push_str("\"}"); s.into_bytes()
        } else {
            let users = ["alice.johnson", "bob.smith", "carol.nguyen", "dave.okafor", "erin.muller"];
            let u = users[i % users.len()];
            let mut text = String::new();
            while text.len() < 520 { text.push_str(WORDS[(rng(&mut seed) % WORDS.len() as u64) as usize]); text.push(' '); }
            let s = format!(concat!("{{\"type\":\"message\",\"room\":\"engineering-general\",\"id\":\"01HZX{:08}K3QF\",",
                "\"ts\":{},\"user\":{{\"id\":{},\"name\":\"{}\",\"display\":\"{}\",\"avatar\":\"https://cdn.example.com/avatars/{}.png\",",
                "\"status\":\"online\"}},\"text\":\"{}\",\"mentions\":[\"{}\"],\"reply_to\":null,\"edited\":false,",
                "\"reactions\":{{\"thumbsup\":{},\"eyes\":{}}},\"attachments\":[]}}"),
                i, 1765000000000u64 + i as u64 * 1377, 4000 + i % 5, u, u.replace('.', " "), u, text.trim(),
                users[(i + 1) % users.len()], i % 7, i % 3);
            let mut s = s.into_bytes();
            while s.len() < 1024 { s.insert(s.len() - 1, b' '); }
            s
        }
    }).collect()
}

fn deflate_raw(data: &[u8], bits: u8) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, bits);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    while out.capacity() - out.len() < 64 { out.reserve(64); }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn frame(payload: &[u8], rsv1: bool) -> Vec<u8> {
    let mut f = vec![0x81 | if rsv1 { 0x40 } else { 0 }];
    let n = payload.len();
    if n < 126 { f.push(0x80 | n as u8) } else if n < 65536 { f.push(0x80 | 126); f.extend_from_slice(&(n as u16).to_be_bytes()) }
    else { f.push(0x80 | 127); f.extend_from_slice(&(n as u64).to_be_bytes()) }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

struct Neg { deflate: bool, client_bits: u8, response: String }

async fn handshake(host: &str, path: &str, ext: &str) -> std::io::Result<(TcpStream, Neg, Vec<u8>)> {
    let mut s = TcpStream::connect(host).await?;
    s.set_nodelay(true)?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    if !ext.is_empty() { req.push_str(&format!("Sec-WebSocket-Extensions: {ext}\r\n")); }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 { return Err(std::io::Error::other("closed during handshake")); }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_string();
            if !head.starts_with("HTTP/1.1 101") { return Err(std::io::Error::other(format!("bad response: {head}"))); }
            let mut response = String::new();
            for line in head.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if k.trim().eq_ignore_ascii_case("sec-websocket-extensions") { response = v.trim().to_string(); }
                }
            }
            let deflate = response.contains("permessage-deflate");
            let mut client_bits = 15;
            for p in response.split(';') {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim() == "client_max_window_bits" { client_bits = v.trim().trim_matches('"').parse().unwrap(); }
                }
            }
            let rest = buf[p + 4..].to_vec();
            return Ok((s, Neg { deflate, client_bits, response }, rest));
        }
    }
}

/// Parses complete frames from buf[..]; returns (consumed, Vec<(rsv1, opcode, payload range)>).
fn parse(buf: &[u8], out: &mut Vec<(bool, u8, usize, usize)>) -> usize {
    let mut i = 0;
    loop {
        if buf.len() - i < 2 { return i; }
        let b0 = buf[i]; let b1 = buf[i + 1];
        let (len, hl) = match b1 & 0x7f {
            126 => { if buf.len() - i < 4 { return i; } (u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize, 4) }
            127 => { if buf.len() - i < 10 { return i; } (u64::from_be_bytes(buf[i + 2..i + 10].try_into().unwrap()) as usize, 10) }
            n => (n as usize, 2),
        };
        if buf.len() - i < hl + len { return i; }
        out.push((b0 & 0x40 != 0, b0 & 0x0f, i + hl, i + hl + len));
        i += hl + len;
    }
}

struct Shared { host: String, path: String, ext: String, inflight: usize, plain: Vec<Vec<u8>>, verify: bool, echo: bool, plainsend: bool }

async fn conn(sh: Arc<Shared>, idx: usize) -> std::io::Result<()> {
    let (mut s, neg, mut rbuf) = handshake(&sh.host, &sh.path, &sh.ext).await?;
    if idx == 0 { eprintln!("negotiated: {:?}", neg.response); }
    CONNECTED.fetch_add(1, Relaxed);
    let frames: Vec<Vec<u8>> = sh.plain.iter().map(|m| if neg.deflate && !sh.plainsend { frame(&deflate_raw(m, neg.client_bits.max(9)), true) } else { frame(m, false) }).collect();
    let mut inflater = Decompress::new(false);
    let mut next = idx * 7;
    let mut sent: VecDeque<usize> = VecDeque::new();
    let mut wbuf = Vec::with_capacity(64 * 1024);
    let window = if sh.echo { sh.inflight } else { 1 };
    for _ in 0..window { let k = next % frames.len(); next += 1; wbuf.extend_from_slice(&frames[k]); sent.push_back(k); }
    s.write_all(&wbuf).await?; BYTES_OUT.fetch_add(wbuf.len() as u64, Relaxed); wbuf.clear();
    let mut tmp = vec![0u8; 64 * 1024];
    let mut parsed = Vec::new();
    let mut first = true;
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 { return Err(std::io::Error::other("server closed")); }
        BYTES_IN.fetch_add(n as u64, Relaxed);
        rbuf.extend_from_slice(&tmp[..n]);
        parsed.clear();
        let used = parse(&rbuf, &mut parsed);
        let mut got = 0u64;
        for &(rsv1, op, a, b) in &parsed {
            match op {
                1 | 2 => {
                    got += 1;
                    if rsv1 { COMPRESSED_IN.fetch_add(1, Relaxed); }
                    let k = sent.pop_front().unwrap_or(usize::MAX);
                    if sh.verify {
                        let data = if rsv1 {
                            let mut inp = rbuf[a..b].to_vec(); inp.extend_from_slice(&[0, 0, 0xff, 0xff]);
                            let mut out = Vec::with_capacity(sh.plain[0].len() * 2 + 1024);
                            inflater.decompress_vec(&inp, &mut out, FlushDecompress::Sync).unwrap();
                            out
                        } else { rbuf[a..b].to_vec() };
                        if k == usize::MAX || data != sh.plain[k] { eprintln!("MISMATCH conn {idx}"); ERRORS.fetch_add(1, Relaxed); }
                    }
                    if sh.echo && !STOP.load(Relaxed) {
                        let k = next % frames.len(); next += 1; wbuf.extend_from_slice(&frames[k]); sent.push_back(k);
                    }
                }
                8 => return Err(std::io::Error::other(format!("close frame {:?}", &rbuf[a..b.min(a + 40)]))),
                _ => {}
            }
        }
        rbuf.drain(..used);
        MSGS.fetch_add(got, Relaxed);
        if first && got > 0 && !sh.echo { first = false; ECHOED_ONCE.fetch_add(1, Relaxed); }
        if !wbuf.is_empty() { s.write_all(&wbuf).await?; BYTES_OUT.fetch_add(wbuf.len() as u64, Relaxed); wbuf.clear(); }
        if STOP.load(Relaxed) && sh.echo { return Ok(()); }
    }
}

fn cpu(pid: u32) -> (u64, u64) {
    // (schedstat ns summed over threads, utime+stime ticks)
    let mut ns = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = st.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = if f.len() > 13 { f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0) } else { 0 };
    (ns, ticks)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().lines()
        .find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn main() {
    let a = Args(std::env::args().skip(1).filter_map(|s| s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect());
    let url = url::Url::parse(&a.get("url", "ws://127.0.0.1:9100/")).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(80));
    let mode = a.get("mode", "echo");
    let conns = a.num("conns", 100) as usize;
    let pid = a.num("pid", 0) as u32;
    let label = a.get("label", "");
    let kind = a.get("msg", "small");
    let sh = Arc::new(Shared { host, path: url.path().to_string(), ext: a.get("ext", ""), inflight: a.num("inflight", 10) as usize,
        plain: messages(&kind, 64), verify: a.num("verify", 0) == 1, echo: mode == "echo", plainsend: a.num("plainsend", 0) == 1 });
    let msg_len = sh.plain[0].len();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        if mode == "echo" {
            for i in 0..conns { let sh = sh.clone(); tokio::spawn(async move { if let Err(e) = conn(sh, i).await { if !STOP.load(Relaxed) { eprintln!("conn {i}: {e}"); ERRORS.fetch_add(1, Relaxed); } } }); }
            while (CONNECTED.load(Relaxed) as usize) < conns && ERRORS.load(Relaxed) == 0 { tokio::time::sleep(Duration::from_millis(10)).await; }
            tokio::time::sleep(Duration::from_secs(a.num("warm", 2))).await;
            let (m0, i0, o0, c0) = (MSGS.load(Relaxed), BYTES_IN.load(Relaxed), BYTES_OUT.load(Relaxed), COMPRESSED_IN.load(Relaxed));
            let (ns0, t0) = cpu(pid); let st = Instant::now();
            tokio::time::sleep(Duration::from_secs(a.num("secs", 5))).await;
            let (ns1, t1) = cpu(pid); let el = st.elapsed().as_secs_f64();
            let (m1, i1, o1, c1) = (MSGS.load(Relaxed), BYTES_IN.load(Relaxed), BYTES_OUT.load(Relaxed), COMPRESSED_IN.load(Relaxed));
            STOP.store(true, Relaxed);
            let m = (m1 - m0) as f64;
            println!("RESULT label={label} msg={kind}({msg_len}B) msgs={} rate={:.0}/s server_us_per_msg={:.3} server_us_per_msg_ticks={:.3} server_cpu_util={:.2} wire_in_B_per_msg={:.1} wire_out_B_per_msg={:.1} compressed_replies={:.3} errors={}",
                m1 - m0, m / el, (ns1 - ns0) as f64 / 1e3 / m, (t1 - t0) as f64 * 1e4 / m, (ns1 - ns0) as f64 / 1e9 / el,
                (i1 - i0) as f64 / m, (o1 - o0) as f64 / m, (c1 - c0) as f64 / m, ERRORS.load(Relaxed));
        } else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r0 = rss_kb(pid);
            let mut hs = Vec::new();
            // handshake everything, one message each (so compressors exist), then hold
            for i in 0..conns {
                let sh = sh.clone();
                hs.push(tokio::spawn(async move { if let Err(e) = conn(sh, i).await { eprintln!("conn {i}: {e}"); ERRORS.fetch_add(1, Relaxed); } }));
                if i % 50 == 49 { tokio::time::sleep(Duration::from_millis(20)).await; }
            }
            while (ECHOED_ONCE.load(Relaxed) as usize) < conns && ERRORS.load(Relaxed) == 0 { tokio::time::sleep(Duration::from_millis(20)).await; }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r1 = rss_kb(pid);
            println!("RESULT label={label} idle conns={conns} rss_before_kb={r0} rss_after_kb={r1} per_conn_KB={:.2} errors={}",
                (r1 as f64 - r0 as f64) / conns as f64, ERRORS.load(Relaxed));
        }
        std::process::exit(0);
    });
}
