//! `DownloadCache`: pinned artifacts fetched once, verified against their sha256 and kept
//! under `<dir>/<sha256>/<file name>`. Sources: HTTP(S) URLs, `file://` paths on the
//! controller, and `pip download` (through pip's own index and proxy configuration).
//!
//! A download is streamed into a temporary file in the same directory while it is hashed; only
//! bytes that match the pin are renamed into place, so the cache never holds a partial or
//! unverified file under its final name. A cached file is hashed again before each reuse.

use async_trait::async_trait;
use kbz_core::artifact::{ArtifactPin, ArtifactSource};
use kbz_core::cache::{Cache, CacheError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A verified download cache in a local directory.
#[derive(Debug, Clone)]
pub struct DownloadCache {
    dir: PathBuf,
    client: reqwest::Client,
    pip: Vec<String>,
}

/// How many artifacts [`DownloadCache::fetch_all`] fetches at the same time.
pub const PARALLEL_FETCHES: usize = 4;

/// One artifact [`DownloadCache::fetch_all`] could not provide: its pin's name and why.
#[derive(Debug, thiserror::Error)]
#[error("artifact {name}: {error}")]
pub struct FetchFailed {
    /// The pin's name (`[artifacts.NAME]`).
    pub name: String,
    /// Why (its E-code is this error's).
    #[source]
    pub error: CacheError,
}

impl kbz_errors::HasCode for FetchFailed {
    fn code(&self) -> kbz_errors::Code {
        self.error.code()
    }
}

/// The default pip command for `pip:` sources.
pub const DEFAULT_PIP: &[&str] = &["python3", "-m", "pip"];

impl DownloadCache {
    /// A cache in `dir` (created on first use) with a default HTTP client: 30 s to connect,
    /// 30 min per download, the system's proxy settings.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(30 * 60))
            .user_agent(concat!("kbz/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CacheError::Io {
                path: dir.display().to_string(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            dir,
            client,
            pip: DEFAULT_PIP.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Uses this command for `pip:` sources instead of `python3 -m pip` (the program and its
    /// leading arguments, e.g. `["/opt/venv/bin/pip"]`).
    pub fn with_pip(mut self, command: Vec<String>) -> Self {
        if !command.is_empty() {
            self.pip = command;
        }
        self
    }

    /// A cache in `dir` using the given HTTP client.
    pub fn with_client(dir: impl Into<PathBuf>, client: reqwest::Client) -> Self {
        Self {
            dir: dir.into(),
            client,
            pip: DEFAULT_PIP.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact for `url` pinned to `sha256` is (or will be) stored.
    pub fn path_for(&self, url: &str, sha256: &str) -> PathBuf {
        self.dir
            .join(sha256.to_ascii_lowercase())
            .join(file_name_of(url))
    }

    async fn download(&self, url: &str, pin: &str, dest: &Path) -> Result<(), CacheError> {
        let shown = redact(url);
        let parent = dest.parent().unwrap_or(&self.dir).to_path_buf();
        let io_err = |path: &Path, e: std::io::Error| CacheError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| io_err(&parent, e))?;
        let temp = tempfile::Builder::new()
            .prefix(".part-")
            .tempfile_in(&parent)
            .map_err(|e| io_err(&parent, e))?;
        // Dropping `temp_path` deletes the partial file on every early return below.
        let (file, temp_path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let dl_err = |reason: String| CacheError::Download {
            url: shown.clone(),
            reason,
        };
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| dl_err(describe_reqwest(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(dl_err(format!("the server answered HTTP {status}")));
        }
        let mut hasher = Sha256::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| dl_err(describe_reqwest(e)))?
        {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| io_err(&temp_path, e))?;
        }
        file.flush().await.map_err(|e| io_err(&temp_path, e))?;
        file.sync_all().await.map_err(|e| io_err(&temp_path, e))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if actual != pin {
            // `temp_path` is dropped here: the bad bytes are deleted, never renamed into place.
            return Err(CacheError::Checksum {
                url: shown,
                expected: pin.to_string(),
                actual,
            });
        }
        temp_path.persist(dest).map_err(|e| CacheError::Io {
            path: dest.display().to_string(),
            reason: e.error.to_string(),
        })?;
        Ok(())
    }
}

impl DownloadCache {
    /// The bytes of `url` pinned to `sha256`: from the cache when a verified copy is there,
    /// else downloaded, verified, then kept.
    pub async fn fetch_url(&self, url: &str, sha256: &str) -> Result<PathBuf, CacheError> {
        let pin = sha256.trim().to_ascii_lowercase();
        if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CacheError::Checksum {
                url: redact(url),
                expected: sha256.to_string(),
                actual: "(not downloaded: the pin is not a 64-digit hex sha256)".into(),
            });
        }
        let dest = self.path_for(url, &pin);
        if dest.is_file() {
            let path = dest.clone();
            let cached = tokio::task::spawn_blocking(move || sha256_file(&path))
                .await
                .map_err(|e| CacheError::Io {
                    path: dest.display().to_string(),
                    reason: e.to_string(),
                })?
                .map_err(|e| CacheError::Io {
                    path: dest.display().to_string(),
                    reason: e.to_string(),
                })?;
            if cached == pin {
                tracing::debug!(path = %dest.display(), "cache hit");
                return Ok(dest);
            }
            // A cached file that no longer matches its pin was damaged: fetch it again.
            tracing::warn!(path = %dest.display(), "cached file fails its checksum, downloading again");
            tokio::fs::remove_file(&dest)
                .await
                .map_err(|e| CacheError::Io {
                    path: dest.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        self.download(url, &pin, &dest).await?;
        Ok(dest)
    }

    /// A verified copy of a file on the controller.
    async fn fetch_file(&self, name: &str, src: &Path, pin: &str) -> Result<PathBuf, CacheError> {
        if let Some(hit) = self.cached(pin).await? {
            return Ok(hit);
        }
        let file = src
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let dest = self.dir.join(pin).join(safe_name(&file));
        let parent = self.dir.join(pin);
        let (src, parent2) = (src.to_path_buf(), parent.clone());
        let shown = format!("file://{}", src.display());
        let temp = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            std::fs::create_dir_all(&parent2)?;
            let mut t = tempfile::Builder::new()
                .prefix(".part-")
                .tempfile_in(&parent2)?;
            let mut f = std::fs::File::open(&src)?;
            std::io::copy(&mut f, t.as_file_mut())?;
            t.as_file().sync_all()?;
            Ok(t)
        })
        .await
        .map_err(|e| io_error(&parent, e.to_string()))?
        .map_err(|e| CacheError::Download {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        self.keep_if_pinned(temp, &shown, pin, &dest).await
    }

    /// `pip download --no-deps --only-binary=:all: NAME==VERSION`, verified.
    async fn fetch_pip(
        &self,
        package: &str,
        version: &str,
        pin: &str,
    ) -> Result<PathBuf, CacheError> {
        if let Some(hit) = self.cached(pin).await? {
            return Ok(hit);
        }
        let parent = self.dir.join(pin);
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| io_error(&parent, e.to_string()))?;
        let work = tempfile::Builder::new()
            .prefix(".pip-")
            .tempdir_in(&parent)
            .map_err(|e| io_error(&parent, e.to_string()))?;
        let spec = format!("{package}=={version}");
        let shown = format!("pip:{spec}");
        let (program, lead) = self.pip.split_first().ok_or_else(|| CacheError::Source {
            name: package.into(),
            reason: "no pip command configured".into(),
        })?;
        let out = tokio::process::Command::new(program)
            .args(lead)
            .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--dest"])
            .arg(work.path())
            .arg(&spec)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| CacheError::Source {
                name: package.into(),
                reason: format!(
                    "cannot run `{}`: {e}; install pip on this machine (`apt-get install -y python3-pip`)",
                    self.pip.join(" ")
                ),
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(6).collect();
            return Err(CacheError::Download {
                url: shown,
                reason: format!(
                    "`pip download` exited with {}: {}",
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            });
        }
        let mut files = Vec::new();
        let mut rd = tokio::fs::read_dir(work.path())
            .await
            .map_err(|e| io_error(work.path(), e.to_string()))?;
        while let Some(e) = rd
            .next_entry()
            .await
            .map_err(|e| io_error(work.path(), e.to_string()))?
        {
            if e.file_type().await.map(|t| t.is_file()).unwrap_or(false) {
                files.push(e.path());
            }
        }
        let [file] = files.as_slice() else {
            return Err(CacheError::Download {
                url: shown,
                reason: format!(
                    "`pip download` left {} files instead of one wheel",
                    files.len()
                ),
            });
        };
        let file_name = file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| package.to_string());
        let dest = parent.join(safe_name(&file_name));
        let file = file.clone();
        let actual = tokio::task::spawn_blocking({
            let file = file.clone();
            move || sha256_file(&file)
        })
        .await
        .map_err(|e| io_error(&file, e.to_string()))?
        .map_err(|e| io_error(&file, e.to_string()))?;
        if actual != pin {
            return Err(CacheError::Checksum {
                url: format!("{shown} ({file_name})"),
                expected: pin.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&file, &dest)
            .await
            .map_err(|e| io_error(&dest, e.to_string()))?;
        Ok(dest)
    }

    /// A file already in `<dir>/<pin>/` whose bytes still match the pin.
    async fn cached(&self, pin: &str) -> Result<Option<PathBuf>, CacheError> {
        let sub = self.dir.join(pin);
        let pin = pin.to_string();
        tokio::task::spawn_blocking(move || {
            let Ok(rd) = std::fs::read_dir(&sub) else {
                return Ok(None);
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') || !p.is_file() {
                    continue;
                }
                match sha256_file(&p) {
                    Ok(h) if h == pin => return Ok(Some(p)),
                    _ => {
                        tracing::warn!(path = %p.display(), "cached file fails its checksum, fetching again");
                        std::fs::remove_file(&p).map_err(|e| io_error(&p, e.to_string()))?;
                    }
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| io_error(&self.dir, e.to_string()))?
    }

    async fn keep_if_pinned(
        &self,
        temp: tempfile::NamedTempFile,
        shown: &str,
        pin: &str,
        dest: &Path,
    ) -> Result<PathBuf, CacheError> {
        let path = temp.path().to_path_buf();
        let (temp, actual) = tokio::task::spawn_blocking(move || {
            let h = sha256_file(&path);
            (temp, h)
        })
        .await
        .map_err(|e| io_error(dest, e.to_string()))?;
        let actual = actual.map_err(|e| io_error(dest, e.to_string()))?;
        if actual != pin {
            return Err(CacheError::Checksum {
                url: shown.to_string(),
                expected: pin.to_string(),
                actual,
            });
        }
        temp.persist(dest)
            .map_err(|e| io_error(dest, e.error.to_string()))?;
        Ok(dest.to_path_buf())
    }
}

impl DownloadCache {
    /// Fetches every pin (as [`Cache::fetch`] does, each verified), [`PARALLEL_FETCHES`] at a
    /// time; pins of the same bytes from the same source are fetched once. The local paths
    /// come back in the order of `pins`; when any fetch fails, every failure comes back
    /// instead, each named by its pin and sorted by name (the other fetches still finish
    /// and stay cached).
    pub async fn fetch_all(&self, pins: &[ArtifactPin]) -> Result<Vec<PathBuf>, Vec<FetchFailed>> {
        let key = |p: &ArtifactPin| {
            (
                p.sha256.trim().to_ascii_lowercase(),
                p.source.clone(),
                p.version.clone(),
            )
        };
        let mut unique: Vec<&ArtifactPin> = Vec::new();
        let mut slot = Vec::with_capacity(pins.len());
        for p in pins {
            match unique.iter().position(|u| key(u) == key(p)) {
                Some(i) => slot.push(i),
                None => {
                    slot.push(unique.len());
                    unique.push(p);
                }
            }
        }
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL_FETCHES));
        let mut set = tokio::task::JoinSet::new();
        let mut task_of = std::collections::HashMap::new();
        for (i, pin) in unique.iter().enumerate() {
            let (cache, pin, sem) = (self.clone(), (*pin).clone(), sem.clone());
            let handle = set.spawn(async move {
                let _permit = sem.acquire_owned().await.ok();
                (i, cache.fetch(&pin).await)
            });
            task_of.insert(handle.id(), i);
        }
        let mut got: Vec<Option<PathBuf>> = vec![None; unique.len()];
        let mut failed = Vec::new();
        while let Some(joined) = set.join_next_with_id().await {
            match joined {
                Ok((_, (i, Ok(path)))) => got[i] = Some(path),
                Ok((_, (i, Err(error)))) => failed.push(FetchFailed {
                    name: unique[i].name.clone(),
                    error,
                }),
                Err(e) => {
                    let i = task_of.get(&e.id()).copied().unwrap_or_default();
                    failed.push(FetchFailed {
                        name: unique.get(i).map(|p| p.name.clone()).unwrap_or_default(),
                        error: io_error(&self.dir, format!("the download task failed: {e}")),
                    });
                }
            }
        }
        if !failed.is_empty() {
            failed.sort_by(|a, b| a.name.cmp(&b.name));
            return Err(failed);
        }
        Ok(slot
            .into_iter()
            .filter_map(|i| got.get(i).cloned().flatten())
            .collect())
    }
}

#[async_trait]
impl Cache for DownloadCache {
    async fn fetch(&self, pin: &ArtifactPin) -> Result<PathBuf, CacheError> {
        let bad = |reason: String| CacheError::Source {
            name: pin.name.clone(),
            reason,
        };
        if pin.sha256.trim().is_empty() {
            // Upstream publishes no checksum for some files (raw manifests): kbz never
            // fetches bytes nobody has pinned.
            return Err(CacheError::Checksum {
                url: pin.describe(),
                expected: "(none pinned)".into(),
                actual: format!(
                    "(not downloaded: compute it with `curl -fsSL URL | sha256sum` and set \
                     [artifacts.{}] sha256 in kbz.toml)",
                    pin.name
                ),
            });
        }
        if let Some(problem) = pin.check().into_iter().next() {
            return Err(bad(problem));
        }
        let sha = pin.sha256.trim().to_ascii_lowercase();
        match pin.resolved_source().map_err(bad)? {
            ArtifactSource::Url(url) => self.fetch_url(&url, &sha).await,
            ArtifactSource::File(path) => self.fetch_file(&pin.name, Path::new(&path), &sha).await,
            ArtifactSource::Pip(package) => self.fetch_pip(&package, &pin.version, &sha).await,
        }
    }
}

fn io_error(path: &Path, reason: String) -> CacheError {
    CacheError::Io {
        path: path.display().to_string(),
        reason,
    }
}

fn safe_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("download{clean}")
    } else {
        clean
    }
}

/// The lowercase hex sha256 of a file's bytes.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The last path segment of a URL, restricted to safe characters.
fn file_name_of(url: &str) -> String {
    let path = reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        "download".into()
    } else {
        clean
    }
}

/// A URL safe to show: user, password and query (signed URLs carry tokens there) are masked.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() {
                let _ = u.set_username("****");
            }
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            if u.query().is_some() {
                u.set_query(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// A reqwest error with its causes but without the URL it embeds (the caller shows the
/// redacted one).
fn describe_reqwest(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Reads one HTTP request's head from `stream` and returns its request line.
    fn read_request(stream: &std::net::TcpStream) -> String {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        let _ = reader.read_line(&mut request_line);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        request_line
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving fixed bytes; counts the requests.
    struct Server {
        port: u16,
        hits: Arc<AtomicUsize>,
    }

    fn serve(body: &'static [u8]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let request_line = read_request(&stream);
                let (status, payload): (&str, &[u8]) = if request_line.contains("/missing") {
                    ("404 Not Found", b"no")
                } else {
                    ("200 OK", body)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = stream.write_all(payload);
            }
        });
        Server { port, hits }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
    }

    const BODY: &[u8] = b"#!/bin/sh\necho pinned artifact\n";

    fn pin() -> String {
        kbz_core::shell::sha256_hex(BODY)
    }

    #[tokio::test]
    async fn downloads_verifies_and_reuses() {
        let srv = serve(BODY);
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let url = format!("http://127.0.0.1:{}/releases/v1/tool-linux-amd64", srv.port);
        let path = cache.fetch_url(&url, &pin()).await.expect("fetch");
        assert_eq!(path, dir.path().join(pin()).join("tool-linux-amd64"));
        assert_eq!(std::fs::read(&path).expect("read"), BODY);
        let again = cache
            .fetch_url(&url, &pin().to_uppercase())
            .await
            .expect("fetch again");
        assert_eq!(again, path);
        assert_eq!(
            srv.hits.load(Ordering::SeqCst),
            1,
            "the second fetch must hit the cache"
        );
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary files left behind: {leftovers:?}"
        );
    }

    #[tokio::test]
    async fn checksum_mismatch_is_e030_and_leaves_nothing() {
        let srv = serve(b"tampered bytes");
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let url = format!("http://127.0.0.1:{}/tool", srv.port);
        let err = cache.fetch_url(&url, &pin()).await.expect_err("must fail");
        match &err {
            CacheError::Checksum {
                expected, actual, ..
            } => {
                assert_eq!(expected, &pin());
                assert_eq!(actual, &kbz_core::shell::sha256_hex(b"tampered bytes"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(kbz_errors::HasCode::code(&err), kbz_errors::Code::E030);
        let sub = dir.path().join(pin());
        let files: Vec<_> = std::fs::read_dir(&sub)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(files.is_empty(), "bad bytes kept: {files:?}");
    }

    #[tokio::test]
    async fn damaged_cached_file_is_downloaded_again() {
        let srv = serve(BODY);
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let url = format!("http://127.0.0.1:{}/tool", srv.port);
        let path = cache.path_for(&url, &pin());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"corrupted").expect("write");
        let got = cache.fetch_url(&url, &pin()).await.expect("fetch");
        assert_eq!(std::fs::read(got).expect("read"), BODY);
        assert_eq!(srv.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn http_errors_and_bad_pins_are_reported_without_secrets() {
        let srv = serve(BODY);
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let url = format!(
            "http://user:hunter2@127.0.0.1:{}/missing?token=s3cret",
            srv.port
        );
        let err = cache.fetch_url(&url, &pin()).await.expect_err("404");
        assert!(matches!(err, CacheError::Download { .. }), "{err:?}");
        assert_eq!(kbz_errors::HasCode::code(&err), kbz_errors::Code::E020);
        let text = err.to_string();
        assert!(text.contains("404"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );

        let err = cache
            .fetch_url(&url, "not-a-pin")
            .await
            .expect_err("bad pin");
        assert!(matches!(err, CacheError::Checksum { .. }), "{err:?}");

        let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let err = cache
            .fetch_url(&format!("http://127.0.0.1:{port}/x"), &pin())
            .await
            .expect_err("refused");
        assert!(matches!(err, CacheError::Download { .. }), "{err:?}");
    }

    /// An HTTP server that holds every answer until `gate` requests are open at the same
    /// time (or 3 s passed, so a sequential client still finishes): it records the most
    /// requests it ever had in flight. The body is the request path.
    struct GatedServer {
        port: u16,
        hits: Arc<AtomicUsize>,
        max_in_flight: Arc<AtomicUsize>,
    }

    fn serve_gated(gate: usize) -> GatedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let state = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
        let (h, m) = (hits.clone(), max_in_flight.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (h, m, state) = (h.clone(), m.clone(), state.clone());
                std::thread::spawn(move || {
                    let request_line = read_request(&stream);
                    h.fetch_add(1, Ordering::SeqCst);
                    let (lock, cv) = &*state;
                    let mut open = lock.lock().expect("lock");
                    *open += 1;
                    m.fetch_max(*open, Ordering::SeqCst);
                    cv.notify_all();
                    let deadline = std::time::Instant::now() + Duration::from_secs(3);
                    while *open < gate && std::time::Instant::now() < deadline {
                        open = cv
                            .wait_timeout(open, Duration::from_millis(50))
                            .expect("wait")
                            .0;
                    }
                    drop(open);
                    let body = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.flush();
                    *lock.lock().expect("lock") -= 1;
                });
            }
        });
        GatedServer {
            port,
            hits,
            max_in_flight,
        }
    }

    fn gated_pins(port: u16, n: usize) -> Vec<ArtifactPin> {
        (0..n)
            .map(|i| {
                let path = format!("/a{i}/tool{i}");
                ArtifactPin::new(
                    &format!("tool{i}"),
                    "1.0.0",
                    &kbz_core::shell::sha256_hex(path.as_bytes()),
                    &format!("http://127.0.0.1:{port}{path}"),
                )
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_all_downloads_artifacts_concurrently() {
        let srv = serve_gated(PARALLEL_FETCHES);
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let mut pins = gated_pins(srv.port, PARALLEL_FETCHES);
        // The same bytes pinned twice are fetched once.
        pins.push(pins[0].clone());
        let paths = cache.fetch_all(&pins).await.expect("fetch all");
        assert_eq!(paths.len(), pins.len());
        for (p, pin) in paths.iter().zip(&pins) {
            assert_eq!(std::fs::read(p).expect("read").len(), 9, "{}", pin.name);
        }
        assert_eq!(paths[0], paths[PARALLEL_FETCHES]);
        assert_eq!(srv.hits.load(Ordering::SeqCst), PARALLEL_FETCHES);
        assert_eq!(
            srv.max_in_flight.load(Ordering::SeqCst),
            PARALLEL_FETCHES,
            "every download must be in flight at the same time"
        );
        cache.fetch_all(&pins).await.expect("again");
        assert_eq!(srv.hits.load(Ordering::SeqCst), PARALLEL_FETCHES, "cached");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_all_is_bounded_and_names_every_failure() {
        let srv = serve_gated(PARALLEL_FETCHES + 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DownloadCache::with_client(dir.path(), client());
        let mut pins = gated_pins(srv.port, PARALLEL_FETCHES + 2);
        pins[1].sha256 = kbz_core::shell::sha256_hex(b"other bytes");
        pins[4].sha256 = String::new();
        let failed = cache.fetch_all(&pins).await.expect_err("two fail");
        let names: Vec<_> = failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["tool1", "tool4"]);
        assert!(
            matches!(failed[0].error, CacheError::Checksum { .. }),
            "{failed:?}"
        );
        assert_eq!(
            kbz_errors::HasCode::code(&failed[0]),
            kbz_errors::Code::E030
        );
        assert!(
            failed[1].to_string().starts_with("artifact tool4: "),
            "{}",
            failed[1]
        );
        assert_eq!(srv.hits.load(Ordering::SeqCst), PARALLEL_FETCHES + 1);
        assert_eq!(
            srv.max_in_flight.load(Ordering::SeqCst),
            PARALLEL_FETCHES,
            "never more than PARALLEL_FETCHES downloads at once"
        );
        assert!(
            cache.path_for(&pins[0].source, &pins[0].sha256).is_file(),
            "the good downloads stay cached"
        );
    }

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(file_name_of("https://h/a/k3s-v1.30+k3s1"), "k3s-v1.30+k3s1");
        assert_eq!(file_name_of("https://h/dir/"), "download");
        assert_eq!(file_name_of("https://h/../.."), "download");
        assert_eq!(file_name_of("https://h/a%2Fb"), "a2Fb");
        assert_eq!(file_name_of("not a url"), "download");
    }
}
