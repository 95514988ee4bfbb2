//! The ceiling for the azure benchmark rows: a raw `azure_storage_blobs` client (the
//! crate the mount's azure backend uses) doing what the mount does, on the same server.
//! `cargo bench --bench raw_azure -- OP ARGS` prints `seconds bytes`.
//!
//! Environment: AZ_URL (blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1),
//! AZ_ACCOUNT, AZ_KEY, AZ_CONTAINER.
//! OPs: create-container | put-blocks NAME SIZE PART CONC | get-parallel NAME PART CONC | size NAME

mod common;
use common::{num, parallel};

use std::time::Instant;

use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{BlobBlockType, BlockId, BlockList, ClientBuilder, ContainerClient};
use bytes::Bytes;
use futures::StreamExt;

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("set {k}"))
}

fn container() -> ContainerClient {
    let account = env("AZ_ACCOUNT");
    let location = CloudLocation::Custom { account: account.clone(), uri: env("AZ_URL") };
    let creds = StorageCredentials::access_key(account, env("AZ_KEY"));
    ClientBuilder::with_location(location, creds).container_client(env("AZ_CONTAINER"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.is_empty() {
        println!("raw_azure: no operation given; see the header of benches/raw_azure.rs");
        return;
    }
    let c = container();
    let start = Instant::now();
    let bytes: u64 = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create-container"] => {
            c.create().await.unwrap();
            0
        }
        ["put-blocks", name, size, part, conc] => {
            let (size, part) = (num(size), num(part));
            let body = Bytes::from(vec![7u8; part as usize]);
            let n = size.div_ceil(part);
            let jobs = (0..n).map(|i| {
                let blob = c.blob_client(*name);
                let len = part.min(size - i * part) as usize;
                let body = body.slice(..len);
                async move {
                    blob.put_block(BlockId::new(format!("{i:08}")), body).await.unwrap();
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            let blocks = (0..n).map(|i| BlobBlockType::Uncommitted(BlockId::new(format!("{i:08}")))).collect();
            c.blob_client(*name).put_block_list(BlockList { blocks }).await.unwrap();
            size
        }
        ["get-parallel", name, part, conc] => {
            let part = num(part);
            let size = c.blob_client(*name).get_properties().await.unwrap().blob.properties.content_length;
            let jobs = (0..size.div_ceil(part)).map(|i| {
                let blob = c.blob_client(*name);
                let range = i * part..(i * part + part).min(size);
                async move {
                    let len = range.end - range.start;
                    let mut pages = blob.get().range(range).chunk_size(len).into_stream();
                    let got = pages.next().await.unwrap().unwrap().data.collect().await.unwrap();
                    assert_eq!(got.len() as u64, len);
                }
            });
            parallel(num(conc) as usize, jobs.collect()).await;
            size
        }
        ["size", name] => {
            c.blob_client(*name).get_properties().await.map(|p| p.blob.properties.content_length).unwrap_or(0)
        }
        other => panic!("unknown operation {other:?}; see the header of benches/raw_azure.rs"),
    };
    println!("{:.3} {bytes}", start.elapsed().as_secs_f64());
}
