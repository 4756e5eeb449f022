//! The object store a remote lives on, reached through `object_store`: the
//! few primitives the layout needs (get with its ETag, create-only put,
//! compare-and-swap put, existence, listing, streaming a blob to a file).

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use super::address::{check_address, check_endpoint, redact, redact_all};
use crate::config::RemoteConfig;
use crate::error::ArtifactError;
use crate::fsx::fault::{self, Point};

/// Files larger than this go up in parts.
const MULTIPART_THRESHOLD: u64 = 32 << 20;

/// Parts of a multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 8;

/// How a request that failed on the network or with a server error is
/// tried again: for `retry_timeout` seconds, the budget that binds; the
/// count `retries` is a cap set high enough not to (pauses average over a
/// second once grown, so the default 100 last minutes).
fn retry_config(config: &RemoteConfig) -> RetryConfig {
    RetryConfig {
        // Pauses drawn between 0.1 s and four times the last one: a blip is
        // retried after 0.1 s, and within a few tries they reach 2 s, the
        // most a server that came back waits to be noticed. The count
        // alone could not promise a time: ten such pauses can end in 4 s.
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 4.0,
        },
        max_retries: config.retries as usize,
        retry_timeout: Duration::from_secs(config.retry_timeout.into()),
    }
}

/// The part size for a file of `size` bytes: 8 MiB, as awscli uses (S3
/// servers keep parts that size in memory), larger only to stay under the
/// 10,000 parts S3 allows.
fn part_size(size: u64) -> usize {
    const MIN: u64 = 8 << 20;
    let part = size.div_ceil(9_000).max(MIN);
    // Whole MiB.
    (part.div_ceil(1 << 20) << 20) as usize
}

pub struct Backend {
    store: Place,
    /// The key prefix inside the bucket (`bondtrader` of `s3://b/bondtrader`).
    prefix: String,
    /// The remote's URL with any secret removed, for messages.
    pub shown: String,
    /// What a failure message says of retries: the remote's name and its
    /// `retry_timeout`.
    retried: (String, u32),
}

/// Where the objects are.
enum Place {
    Object(Arc<dyn ObjectStore>),
    /// A `file://` remote: a folder on a shared mount (see `dir`).
    Dir(std::path::PathBuf),
}

/// An object read with the version a compare-and-swap must name.
pub struct Got {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
}

/// One listed object.
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// What a conditional put did.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Done,
    /// Create-only and something is there.
    Exists,
    /// Compare-and-swap and the object changed meanwhile.
    Conflict,
}

/// How a put may replace what is there.
pub enum Mode {
    Create,
    /// Replace whatever is there (a blob re-uploaded to refresh its time).
    Overwrite,
    /// Replace the object read with this ETag.
    Update(String),
}

impl Backend {
    pub fn open(name: &str, config: &RemoteConfig) -> Result<Backend, ArtifactError> {
        let shown = redact(&config.url);
        if config.retry_timeout == 0 {
            // 0 reads as "no limit" as easily as "no retries": say which.
            return Err(ArtifactError::usage(format!(
                "remote '{name}': retry_timeout = 0 leaves no time to retry a failed request; set the seconds a failing request is retried (default 30), or retries = 0 to fail at the first error"
            )));
        }
        check_address(name, "url", &config.url)?;
        if !config.endpoint.is_empty() {
            check_address(name, "endpoint", &config.endpoint)?;
            check_endpoint(name, &config.endpoint)?;
        }
        if let Some(path) = config.url.strip_prefix("file://") {
            let root = std::path::PathBuf::from(path);
            if !root.is_absolute() {
                return Err(ArtifactError::usage(format!(
                    "remote '{name}': url {shown} is not an absolute path; use file:///PATH/TO/FOLDER"
                )));
            }
            return Ok(Backend {
                store: Place::Dir(root),
                prefix: String::new(),
                shown,
                retried: (name.to_string(), config.retry_timeout),
            });
        }
        let Some(rest) = config.url.strip_prefix("s3://") else {
            return Err(ArtifactError::usage(format!(
                "remote '{name}': url {shown} is not supported; use s3://BUCKET/PREFIX or file:///PATH"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ArtifactError::usage(format!(
                "remote '{name}': url {shown} names no bucket; use s3://BUCKET/PREFIX"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            // Every upload carries its SHA-256 (already computed to sign
            // it), so the server checks each part as it lands. A multipart
            // upload named no algorithm otherwise, and some servers then
            // checksum the whole object again on completion (moto buffers
            // and CRC64s all of it: seconds per GiB).
            .with_checksum_algorithm(Checksum::SHA256)
            .with_retry(retry_config(config));
        if !config.endpoint.is_empty() {
            let plain = config.endpoint.starts_with("http://");
            builder = builder
                .with_endpoint(&config.endpoint)
                .with_allow_http(plain);
            // No TLS to set up: reading the system's certificates costs a
            // few milliseconds per command. Only with keys in the
            // environment, since other credential sources may use HTTPS.
            if plain && std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
                builder = builder.with_config(
                    AmazonS3ConfigKey::Client(ClientConfigKey::NoSystemCertificates),
                    "true",
                );
            }
        }
        if !config.region.is_empty() {
            builder = builder.with_region(&config.region);
        }
        let store = builder.build().map_err(|e| {
            ArtifactError::usage(format!(
                "remote '{name}' ({shown}) cannot be used: {}; check its url, endpoint and region, and the AWS credentials in the environment",
                redact_all(&e.to_string())
            ))
        })?;
        Ok(Backend {
            store: Place::Object(Arc::new(store)),
            prefix: prefix.trim_matches('/').to_string(),
            shown,
            retried: (name.to_string(), config.retry_timeout),
        })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn fail(&self, key: &str, e: object_store::Error) -> anyhow::Error {
        let (name, seconds) = &self.retried;
        anyhow::anyhow!(
            "remote {} failed on {key}: {}; check that the server is reachable (network errors are retried for {seconds} s, [remotes.{name}] retry_timeout), the bucket exists and the AWS credentials are allowed to use it",
            self.shown,
            redact_all(&e.to_string())
        )
    }

    fn object(&self) -> Result<&Arc<dyn ObjectStore>, &std::path::Path> {
        match &self.store {
            Place::Object(store) => Ok(store),
            Place::Dir(root) => Err(root),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Got>> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::get(root, key),
        };
        match store.get(&self.path(key)).await {
            Ok(r) => {
                let etag = r.meta.e_tag.clone();
                let bytes = r.bytes().await.map_err(|e| self.fail(key, e))?;
                Ok(Some(Got {
                    bytes: bytes.to_vec(),
                    etag,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return Ok(root.join(key).symlink_metadata().is_ok()),
        };
        match store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    /// When `key` was last written, `None` when it is absent.
    pub async fn modified(&self, key: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => {
                let path = root.join(key);
                return match path.symlink_metadata() {
                    Ok(meta) => Ok(Some(meta.modified()?.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
                };
            }
        };
        match store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>, mode: Mode) -> Result<Put> {
        written(key, self.put_now(key, bytes, mode).await)
    }

    async fn put_now(&self, key: &str, bytes: Vec<u8>, mode: Mode) -> Result<Put> {
        fault::hit(Point::RemoteWrite)?;
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::put(root, key, &bytes, mode),
        };
        let mode = match mode {
            Mode::Create => PutMode::Create,
            Mode::Overwrite => PutMode::Overwrite,
            Mode::Update(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match store
            .put_opts(&self.path(key), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(Put::Done),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::Exists),
            Err(object_store::Error::Precondition { .. }) => Ok(Put::Conflict),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    /// Upload the local file `src` to `key` create-only (or replacing it
    /// with `replace`), in parts when it is large; `expected` is its
    /// BLAKE3, checked on the bytes sent so the remote never holds content
    /// under the wrong name. `on_bytes` hears of the bytes as they go.
    pub async fn put_file(
        &self,
        key: &str,
        src: &FsPath,
        expected: &str,
        replace: bool,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<Put> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => {
                fault::hit(Point::RemoteWrite)?;
                let put = super::dir::put_file(root, key, src, expected, replace);
                if put.is_ok() {
                    if let Ok(meta) = std::fs::metadata(src) {
                        on_bytes(meta.len());
                    }
                }
                return written(key, put);
            }
        };
        let size = std::fs::metadata(src)
            .with_context(|| format!("cannot read {}", src.display()))?
            .len();
        if size <= MULTIPART_THRESHOLD {
            let bytes =
                std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
            check_hash(src, expected, &crate::store::manifest::hash_bytes(&bytes))?;
            let mode = if replace {
                Mode::Overwrite
            } else {
                Mode::Create
            };
            let len = bytes.len() as u64;
            let put = self.put(key, bytes, mode).await?;
            on_bytes(len);
            return Ok(put);
        }
        // Content-addressed: a part upload that replaces an identical
        // object is harmless, so the multipart path needs no create-only.
        // The content is hashed as it goes up, and the upload is abandoned
        // before it completes if the hash is not its name.
        fault::hit(Point::RemoteWrite)?;
        let mut upload = store
            .put_multipart(&self.path(key))
            .await
            .map_err(|e| self.fail(key, e))?;
        let part = part_size(size);
        let file =
            std::fs::File::open(src).with_context(|| format!("cannot read {}", src.display()))?;
        // The disk is read and hashed on a blocking thread, one part ahead
        // of the uploads: this runtime has one thread, and every moment it
        // spent reading was one no part went out.
        let mut reading =
            tokio::task::spawn_blocking(move || read_part(file, blake3::Hasher::new(), part));
        let mut parts = tokio::task::JoinSet::new();
        let hash = loop {
            let read = match reading.await {
                Ok(read) => read,
                Err(e) => Err(std::io::Error::other(e)),
            };
            let (file, hasher, chunk) = match read {
                Ok(read) => read,
                Err(e) => {
                    abort(parts, upload).await;
                    return Err(e).with_context(|| format!("cannot read {}", src.display()));
                }
            };
            if chunk.is_empty() {
                break hasher.finalize().to_hex().to_string();
            }
            reading = tokio::task::spawn_blocking(move || read_part(file, hasher, part));
            if let Err(e) = capacity(&mut parts, PARTS_IN_FLIGHT).await {
                abort(parts, upload).await;
                return Err(self.fail(key, e));
            }
            let n = chunk.len() as u64;
            parts.spawn(upload.put_part(PutPayload::from(chunk)));
            on_bytes(n);
        };
        if let Err(e) = check_hash(src, expected, &hash) {
            abort(parts, upload).await;
            return Err(e);
        }
        if let Err(e) = capacity(&mut parts, 1).await {
            abort(parts, upload).await;
            return Err(self.fail(key, e));
        }
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(self.fail(key, e));
        }
        written(key, Ok(Put::Done))
    }

    /// Stream `key` into `file`, returning its BLAKE3 and size; `on_bytes`
    /// hears of the bytes as they come.
    pub async fn get_into(
        &self,
        key: &str,
        file: &mut std::fs::File,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<(String, u64)>> {
        use std::io::Write;
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::get_into(root, key, file, on_bytes),
        };
        let r = match store.get(&self.path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail(key, e)),
        };
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut stream = r.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fail(key, e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            crate::fsx::fault::hit(crate::fsx::fault::Point::Write)?;
            file.write_all(&chunk)
                .context("cannot write a pulled file")?;
            on_bytes(chunk.len() as u64);
        }
        Ok(Some((hasher.finalize().to_hex().to_string(), size)))
    }

    /// The bytes of `key` in each of `ranges` (near ranges are fetched in
    /// one request), `None` when it is absent. A range reaching past the
    /// end comes back short.
    pub async fn get_ranges(
        &self,
        key: &str,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::get_ranges(root, key, ranges),
        };
        match store.get_ranges(&self.path(key), ranges).await {
            Ok(parts) => Ok(Some(parts.into_iter().map(|b| b.to_vec()).collect())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    /// Remove `key`; absent is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        fault::hit(Point::RemoteWrite)?;
        let deleted = self.delete_now(key).await;
        written(key, deleted)
    }

    async fn delete_now(&self, key: &str) -> Result<()> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => {
                let path = root.join(key);
                return crate::fsx::remote::remove_object(&path)
                    .with_context(|| format!("cannot remove {}", path.display()));
            }
        };
        match store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(key, e)),
        }
    }

    /// What a listed object's location starts with before its key: the
    /// remote's prefix and a `/`, or nothing.
    fn listed_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// Every key under `prefix` with its size and last change.
    pub async fn list_meta(&self, prefix: &str) -> Result<Vec<Listed>> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::list_meta(root, prefix),
        };
        let root = self.path(prefix);
        let strip = self.listed_prefix();
        let mut stream = store.list(Some(&root));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.fail(prefix, e))?;
            let key = meta.location.to_string();
            out.push(Listed {
                key: key.strip_prefix(&strip).unwrap_or(&key).to_string(),
                size: meta.size,
                modified: meta.last_modified,
            });
        }
        Ok(out)
    }

    /// The keys under `prefix` in listing order, stopping once `budget` keys
    /// are read (a listing page holds up to 1,000): the keys and whether the
    /// listing is complete.
    pub async fn list_until(&self, prefix: &str, budget: usize) -> Result<(Vec<String>, bool)> {
        let store = match self.object() {
            Ok(store) => store,
            // A folder costs no requests to read whole.
            Err(root) => return Ok((super::dir::list(root, prefix)?, true)),
        };
        let root = self.path(prefix);
        let strip = self.listed_prefix();
        let mut stream = store.list(Some(&root));
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            if keys.len() >= budget {
                return Ok((keys, false));
            }
            let meta = meta.map_err(|e| self.fail(prefix, e))?;
            let key = meta.location.to_string();
            keys.push(key.strip_prefix(&strip).unwrap_or(&key).to_string());
        }
        Ok((keys, true))
    }

    /// Every key under `prefix` (relative to the remote's root).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let store = match self.object() {
            Ok(store) => store,
            Err(root) => return super::dir::list(root, prefix),
        };
        let root = self.path(prefix);
        let strip = self.listed_prefix();
        let mut stream = store.list(Some(&root));
        let mut keys = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.fail(prefix, e))?;
            let key = meta.location.to_string();
            keys.push(key.strip_prefix(&strip).unwrap_or(&key).to_string());
        }
        Ok(keys)
    }
}

/// The next part of `file`: up to `size` bytes (fewer only at its end,
/// none past it), added to `hasher`.
fn read_part(
    mut file: std::fs::File,
    mut hasher: blake3::Hasher,
    size: usize,
) -> std::io::Result<(std::fs::File, blake3::Hasher, Vec<u8>)> {
    use std::io::Read;
    let mut chunk = Vec::with_capacity(size);
    (&mut file).take(size as u64).read_to_end(&mut chunk)?;
    hasher.update(&chunk);
    Ok((file, hasher, chunk))
}

/// Wait until fewer than `limit` part uploads are in flight (1: until all
/// are done); the first that failed is the error.
async fn capacity(
    parts: &mut tokio::task::JoinSet<object_store::Result<()>>,
    limit: usize,
) -> object_store::Result<()> {
    while parts.len() >= limit {
        match parts.join_next().await {
            Some(Ok(done)) => done?,
            Some(Err(source)) => return Err(object_store::Error::JoinError { source }),
            None => break,
        }
    }
    Ok(())
}

/// Give up a multipart upload: stop its parts in flight and ask the server
/// to drop the parts it holds (best effort: an upload never completed is
/// never visible).
async fn abort(
    mut parts: tokio::task::JoinSet<object_store::Result<()>>,
    mut upload: Box<dyn object_store::MultipartUpload>,
) {
    parts.shutdown().await;
    let _ = upload.abort().await;
}

/// Reach `remote-written` after a write that succeeded (fault tests stop
/// there: the object is on the remote, the caller has not gone on).
fn written<T>(key: &str, result: Result<T>) -> Result<T> {
    let value = result?;
    fault::hit(Point::RemoteWritten).with_context(|| format!("after writing {key}"))?;
    Ok(value)
}

fn check_hash(src: &FsPath, expected: &str, actual: &str) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(ArtifactError::corrupt(format!(
        "{} does not match its manifest (BLAKE3 {actual}, recorded {expected}); nothing of it was pushed: `artifactctl verify` shows the damage",
        src.display()
    ))
    .into())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_retry_budget_is_the_configured_time_with_short_capped_pauses() {
        let config = crate::config::RemoteConfig {
            retry_timeout: 7,
            ..Default::default()
        };
        let retry = super::retry_config(&config);
        assert_eq!(retry.retry_timeout, std::time::Duration::from_secs(7));
        assert_eq!(retry.max_retries, 100);
        assert_eq!(
            retry.backoff.init_backoff,
            std::time::Duration::from_millis(100)
        );
        assert_eq!(retry.backoff.max_backoff, std::time::Duration::from_secs(2));
    }

    #[test]
    fn parts_are_8_mib_until_a_file_needs_more_than_9000() {
        assert_eq!(super::part_size(1 << 30), 8 << 20);
        let huge: u64 = 200 << 30;
        let part = super::part_size(huge) as u64;
        assert!(
            huge.div_ceil(part) <= 9_000 && part % (1 << 20) == 0,
            "{part}"
        );
    }
}
