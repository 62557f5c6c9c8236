//! Sends one compressed text message that inflates to SIZE bytes (zeros as spaces) to a server with deflate on, and
//! reports the close code it gets back and the server's peak RSS (VmHWM) before and after.
//! Usage: zipbomb URL_HOST:PORT SERVER_PID INFLATED_MB
use flate2::{Compress, Compression, FlushCompress};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn hwm(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default().lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS")).collect::<Vec<_>>().join(" ")
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (host, pid, mb) = (&a[1], &a[2], a[3].parse::<usize>().unwrap());
    println!("before: {}", hwm(pid));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    println!("handshake ext: {:?}", head.lines().find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-extensions")));
    let plain = if mb == 0 { b"hello hello hello hello hello hello hello".to_vec() } else { vec![b' '; mb << 20] };
    let mut c = Compress::new(Compression::new(9), false);
    let mut out = Vec::with_capacity(plain.len() / 500 + 1024);
    c.compress_vec(&plain, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    let plain_mode = std::env::var("PLAIN").is_ok();
    if plain_mode { out = plain.clone(); }
    println!("compressed {} bytes -> inflates to {} bytes", out.len(), plain.len());
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![if plain_mode { 0x81u8 } else { 0xC1u8 }];
    if out.len() < 126 { f.push(0x80 | out.len() as u8) } else if out.len() < 65536 { f.push(0x80 | 126); f.extend_from_slice(&(out.len() as u16).to_be_bytes()) }
    else { f.push(0x80 | 127); f.extend_from_slice(&(out.len() as u64).to_be_bytes()) }
    f.extend_from_slice(&mask);
    f.extend(out.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let _ = s.write_all(&f);
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) { Ok(0) => break, Ok(n) => got.extend_from_slice(&buf[..n]), Err(e) => { println!("read: {e}"); break } }
    }
    if got.len() >= 4 && got[0] & 0x0f == 8 {
        println!("close frame code {}", u16::from_be_bytes([got[2], got[3]]));
    } else {
        println!("not a close frame; got {} bytes, first {:02x?}", got.len(), &got[..got.len().min(8)]);
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("after: {}", hwm(pid));
}
