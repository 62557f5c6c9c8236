//! Cost of compressing / inflating the ~1 KB chat JSON with flate2 + zlib-rs (the backend both stacks use), to size
//! what compress-once fan-out would save per member. Usage: zbench
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::time::Instant;

fn main() {
    let msg = {
        let mut s = String::from("{\"type\":\"message\",\"room\":\"engineering-general\",\"id\":\"01HZX00000007K3QF\",\"ts\":1765000009639,\"user\":{\"id\":4002,\"name\":\"carol.nguyen\",\"display\":\"carol nguyen\",\"avatar\":\"https://cdn.example.com/avatars/carol.nguyen.png\",\"status\":\"online\"},\"text\":\"");
        let words = ["the","meeting","is","moved","to","thursday","because","half","team","deploy","window","tonight","rollback","plan","metrics","latency","cache","review","tests","green","flaky","retry","ticket","sprint","demo","coffee","thanks","api","version","release","notes"];
        let mut x = 12345u64; while s.len() < 900 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; s.push_str(words[(x % words.len() as u64) as usize]); s.push(' '); }
        s.push_str("\",\"attachments\":[]}"); s.into_bytes()
    };
    let n = 20000;
    for level in [1u32, 6] {
        for bits in [15u8, 9] {
            for ctx in [true, false] {
                let mut c = Compress::new_with_window_bits(Compression::new(level), false, bits);
                let mut out = Vec::with_capacity(4096);
                let mut total = 0usize;
                let t = Instant::now();
                for _ in 0..n {
                    out.clear();
                    c.compress_vec(&msg, &mut out, FlushCompress::Sync).unwrap();
                    total += out.len() - 4;
                    if !ctx { c.reset(); }
                }
                let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                // inflate one compressed copy (no context) for the receive side
                let mut c2 = Compress::new_with_window_bits(Compression::new(level), false, bits);
                let mut one = Vec::with_capacity(4096); c2.compress_vec(&msg, &mut one, FlushCompress::Sync).unwrap();
                let mut d = Decompress::new_with_window_bits(false, 15);
                let mut o = Vec::with_capacity(4096);
                let t = Instant::now();
                for _ in 0..n { o.clear(); d.decompress_vec(&one, &mut o, FlushDecompress::Sync).unwrap(); d.reset(false); }
                let el2 = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                println!("level={level} window_bits={bits} context_takeover={ctx} msg={}B compressed_avg={}B deflate_us={:.2} inflate_us={:.2}",
                    msg.len(), total / n, el, el2);
            }
        }
    }
}
