//! The ceiling for benchmarks: a raw aws-sdk-s3 client doing what the mount does, on
//! the same server. `cargo bench --bench raw_s3 -- OP ARGS` prints `seconds count`.
//! Like the mount, it sends PUT and part bodies with a CRC32 checksum and no payload
//! SHA-256; `RAW_QUICKACK=1` gives it the mount's HTTP client too.
//!
//! OPs: populate PREFIX N SIZE CONC | list PREFIX | list-tree PREFIX |
//!      put-dir DIR PREFIX CONC | get-prefix PREFIX CONC |
//!      put-multipart KEY SIZE PART CONC | get-parallel KEY PART CONC | get-first KEY LEN | head KEY | count PREFIX (files, not markers) |
//!      read-file PATH LEN (open + read of a mounted file, for time to first byte)

mod common;
use common::{num, parallel};

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("set {k}"))
}

async fn client() -> Client {
    let creds = aws_sdk_s3::config::Credentials::new(
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "bench",
    );
    let mut conf = aws_sdk_s3::config::Builder::new();
    // RAW_QUICKACK=1: the mount's own HTTP client (ACKs at once), to compare like with like.
    if std::env::var("RAW_QUICKACK").is_ok_and(|v| v == "1") {
        conf = conf.http_client(rstore_mount::backend::quickack_http_client());
    }
    let conf = conf
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(env("BENCH_ENDPOINT"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// A PUT as the mount sends it: CRC32 checksum, unsigned payload.
async fn put(c: &Client, b: &str, key: &str, body: Vec<u8>) {
    c.put_object()
        .bucket(b)
        .key(key)
        .body(ByteStream::from(body))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .unwrap();
}

async fn list(c: &Client, b: &str, prefix: &str) -> (usize, Vec<String>) {
    let (mut n, mut dirs, mut token) = (0, Vec::new(), None);
    loop {
        let out = c
            .list_objects_v2()
            .bucket(b)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        n += out.contents().len() + out.common_prefixes().len();
        dirs.extend(out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return (n, dirs),
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.is_empty() {
        // `cargo test --all-targets` runs this target without arguments: nothing to measure.
        println!("raw_s3: no operation given; see the header of benches/raw_s3.rs");
        return;
    }
    let (c, b) = (client().await, env("BENCH_BUCKET"));
    let start = Instant::now();
    let count: u64 = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["populate", prefix, n, size, conc] => {
            let body = vec![b'x'; num(size) as usize];
            let jobs = (0..num(n)).map(|i| {
                let (c, b, key, body) = (c.clone(), b.clone(), format!("{prefix}f{i:06}"), body.clone());
                async move {
                    put(&c, &b, &key, body).await;
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            num(n)
        }
        ["list", prefix] => list(&c, &b, prefix).await.0 as u64,
        ["list-tree", prefix] => {
            let (mut total, mut queue) = (0, vec![prefix.to_string()]);
            while let Some(p) = queue.pop() {
                let (n, dirs) = list(&c, &b, &p).await;
                total += n;
                queue.extend(dirs);
            }
            total as u64
        }
        ["put-dir", dir, prefix, conc] => {
            let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            let n = files.len() as u64;
            let jobs = files.into_iter().map(|p| {
                let (c, b) = (c.clone(), b.clone());
                let key = format!("{prefix}{}", p.file_name().unwrap().to_string_lossy());
                async move {
                    let body = tokio::fs::read(&p).await.unwrap();
                    put(&c, &b, &key, body).await;
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            n
        }
        ["get-prefix", prefix, conc] => {
            let out = c.list_objects_v2().bucket(&b).prefix(*prefix).max_keys(1000).send().await.unwrap();
            let keys: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
            let n = keys.len() as u64;
            let jobs = keys.into_iter().map(|k| {
                let (c, b) = (c.clone(), b.clone());
                async move {
                    let o = c.get_object().bucket(b).key(k).send().await.unwrap();
                    o.body.collect().await.unwrap();
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            n
        }
        ["put-multipart", key, size, part, conc] => {
            let (size, part) = (num(size), num(part));
            let id = c.create_multipart_upload().bucket(&b).key(*key).send().await.unwrap().upload_id.unwrap();
            let parts = Arc::new(std::sync::Mutex::new(Vec::new()));
            let body = bytes::Bytes::from(vec![7u8; part as usize]);
            let jobs = (0..size.div_ceil(part)).map(|i| {
                let (c, b, k, id, parts) = (c.clone(), b.clone(), key.to_string(), id.clone(), parts.clone());
                let len = part.min(size - i * part) as usize;
                let body = body.slice(..len);
                async move {
                    let n = i as i32 + 1;
                    let r = c
                        .upload_part()
                        .bucket(b)
                        .key(k)
                        .upload_id(id)
                        .part_number(n)
                        .body(body.into())
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await;
                    let etag = r.unwrap().e_tag.unwrap();
                    parts.lock().unwrap().push(CompletedPart::builder().part_number(n).e_tag(etag).build());
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            let mut parts = std::mem::take(&mut *parts.lock().unwrap());
            parts.sort_by_key(|p| p.part_number());
            let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
            c.complete_multipart_upload()
                .bucket(&b)
                .key(*key)
                .upload_id(id)
                .multipart_upload(done)
                .send()
                .await
                .unwrap();
            size
        }
        ["get-parallel", key, part, conc] => {
            let size = c.head_object().bucket(&b).key(*key).send().await.unwrap().content_length.unwrap() as u64;
            let part = num(part);
            let jobs = (0..size.div_ceil(part)).map(|i| {
                let (c, b, k) = (c.clone(), b.clone(), key.to_string());
                let range = format!("bytes={}-{}", i * part, (i * part + part).min(size) - 1);
                async move {
                    let o = c.get_object().bucket(b).key(k).range(range).send().await.unwrap();
                    o.body.collect().await.unwrap();
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            size
        }
        ["count", prefix] => {
            let (mut n, mut token) = (0u64, None);
            loop {
                let out =
                    c.list_objects_v2().bucket(&b).prefix(*prefix).set_continuation_token(token).send().await.unwrap();
                // Files only: mounts may also store `dir/` markers.
                n += out.contents().iter().filter(|o| !o.key().unwrap_or_default().ends_with('/')).count() as u64;
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break n,
                }
            }
        }
        ["head", key] => match c.head_object().bucket(&b).key(*key).send().await {
            Ok(o) => o.content_length.unwrap_or(0) as u64,
            Err(_) => 0,
        },
        ["get-first", key, len] => {
            let range = format!("bytes=0-{}", num(len) - 1);
            let o = c.get_object().bucket(&b).key(*key).range(range).send().await.unwrap();
            o.body.collect().await.unwrap().into_bytes().len() as u64
        }
        // Not S3: open + read of a path (a mount), timed the same way as get-first.
        ["read-file", path, len] => {
            use std::io::Read;
            let mut buf = vec![0u8; num(len) as usize];
            let mut f = std::fs::File::open(path).unwrap();
            f.read_exact(&mut buf).unwrap();
            buf.len() as u64
        }
        other => panic!("unknown op {other:?}; see the header of benches/raw_s3.rs"),
    };
    println!("{:.4} {count}", start.elapsed().as_secs_f64());
}
