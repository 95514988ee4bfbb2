//! Helpers the raw benchmark clients share.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// A size such as `8M` or `1G`, in bytes.
pub fn num(s: &str) -> u64 {
    parse_size::parse_size(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Runs `jobs` with at most `conc` in flight.
pub async fn parallel<F>(conc: usize, jobs: Vec<F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(conc));
    let mut set = tokio::task::JoinSet::new();
    for job in jobs {
        let permit = sem.clone().acquire_owned().await.unwrap();
        set.spawn(async move {
            job.await;
            drop(permit);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}
