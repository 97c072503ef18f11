//! `DownloadCache` through the `Cache` trait, one test per source kind: an HTTP server on
//! loopback, a `file://` path, and `pip download` played by a fake `pip` program (a shell
//! script that checks its arguments and writes a wheel), so none of them needs the network.

use kbz_core::artifact::ArtifactPin;
use kbz_core::cache::{Cache, CacheError};
use kbz_core::shell::sha256_hex;
use kbz_errors::{Code, HasCode};
use kbz_exec::DownloadCache;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serves `body` at every path on 127.0.0.1; counts requests.
fn serve(body: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (port, hits)
}

fn cache(dir: &tempfile::TempDir) -> DownloadCache {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    DownloadCache::with_client(dir.path(), client)
}

#[tokio::test]
async fn an_http_pin_is_downloaded_once_with_its_version_in_the_url() {
    const BODY: &[u8] = b"k3s binary bytes";
    let (port, hits) = serve(BODY);
    let dir = tempfile::tempdir().expect("dir");
    let c = cache(&dir);
    let pin = ArtifactPin::new(
        "k3s",
        "v1.31.4+k3s1",
        &sha256_hex(BODY),
        &format!("http://127.0.0.1:{port}/releases/{{version}}/k3s"),
    );
    let p = c.fetch(&pin).await.expect("fetch");
    assert_eq!(std::fs::read(&p).expect("read"), BODY);
    assert_eq!(p.file_name().and_then(|f| f.to_str()), Some("k3s"));
    c.fetch(&pin).await.expect("again");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second fetch must hit the cache"
    );

    let wrong = ArtifactPin {
        sha256: "f".repeat(64),
        ..pin.clone()
    };
    let err = c.fetch(&wrong).await.expect_err("mismatch");
    assert_eq!(err.code(), Code::E030);
    let text = err.to_string();
    assert!(
        text.contains(&"f".repeat(64)) && text.contains(&sha256_hex(BODY)),
        "{text}"
    );

    let bad = ArtifactPin {
        sha256: "abc".into(),
        ..pin
    };
    let err = c.fetch(&bad).await.expect_err("bad pin");
    assert!(matches!(err, CacheError::Source { .. }), "{err:?}");
    assert!(err.to_string().contains("64 hexadecimal"), "{err}");
}

#[tokio::test]
async fn a_file_source_is_verified_and_copied_into_the_cache() {
    let src = tempfile::tempdir().expect("src");
    let dir = tempfile::tempdir().expect("dir");
    let c = cache(&dir);
    let file = src.path().join("garage-2.5.0");
    std::fs::write(&file, b"garage").expect("write");
    let pin = ArtifactPin::new(
        "garage",
        "2.5.0",
        &sha256_hex(b"garage"),
        &format!("file://{}/garage-{{version}}", src.path().display()),
    );
    let p = c.fetch(&pin).await.expect("fetch");
    assert!(
        p.starts_with(dir.path()),
        "{} is not in the cache",
        p.display()
    );
    assert_eq!(std::fs::read(&p).expect("read"), b"garage");
    // The cached copy serves once the source is gone.
    std::fs::remove_file(&file).expect("rm");
    assert_eq!(c.fetch(&pin).await.expect("cached"), p);

    // Changed bytes at the source with the old pin: E030, and the cache keeps nothing new.
    std::fs::write(&file, b"tampered").expect("write");
    let other = ArtifactPin {
        sha256: sha256_hex(b"other"),
        ..pin.clone()
    };
    let err = c.fetch(&other).await.expect_err("mismatch");
    assert_eq!(err.code(), Code::E030, "{err}");
    let kept: Vec<_> = std::fs::read_dir(dir.path().join(&other.sha256))
        .expect("list")
        .flatten()
        .collect();
    assert!(kept.is_empty(), "bad bytes kept: {kept:?}");

    let missing = ArtifactPin {
        source: "file:///nonexistent/kbz-test-artifact".into(),
        sha256: sha256_hex(b"x"),
        ..pin
    };
    let err = c.fetch(&missing).await.expect_err("missing");
    assert_eq!(err.code(), Code::E020, "{err}");
    assert!(
        err.to_string().contains("/nonexistent/kbz-test-artifact"),
        "{err}"
    );
}

/// A fake `pip` that checks it was asked for exactly one pinned package without
/// dependencies, counts its runs, and writes `WHEEL` (or fails when told to).
fn fake_pip(dir: &std::path::Path, wheel_body: &str) -> std::path::PathBuf {
    let script = dir.join("pip");
    let log = dir.join("runs");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
set -eu
echo run >> '{log}'
[ "$1" = download ] || {{ echo "unexpected command $1" >&2; exit 3; }}
shift
dest=''
spec=''
nodeps=0
binary=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-deps) nodeps=1 ;;
    --only-binary=:all:) binary=1 ;;
    --disable-pip-version-check) ;;
    --dest) dest="$2"; shift ;;
    -*) echo "unexpected option $1" >&2; exit 3 ;;
    *) spec="$1" ;;
  esac
  shift
done
[ "$nodeps" = 1 ] && [ "$binary" = 1 ] || {{ echo 'missing --no-deps/--only-binary' >&2; exit 3; }}
case "$spec" in
  patroni==4.0.6) printf '%s' '{wheel_body}' > "$dest/patroni-4.0.6-py3-none-any.whl" ;;
  *) echo "ERROR: No matching distribution found for $spec" >&2; exit 1 ;;
esac
"#,
            log = log.display()
        ),
    )
    .expect("write fake pip");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[tokio::test]
async fn a_pip_source_runs_pip_download_once_and_verifies_the_wheel() {
    let bin = tempfile::tempdir().expect("bin");
    let dir = tempfile::tempdir().expect("dir");
    let pip = fake_pip(bin.path(), "wheel-bytes");
    let c = cache(&dir).with_pip(vec![pip.display().to_string()]);
    let pin = ArtifactPin::new(
        "patroni",
        "4.0.6",
        &sha256_hex(b"wheel-bytes"),
        "pip:patroni",
    );
    let p = c.fetch(&pin).await.expect("fetch");
    assert_eq!(
        p.file_name().and_then(|f| f.to_str()),
        Some("patroni-4.0.6-py3-none-any.whl")
    );
    assert_eq!(std::fs::read(&p).expect("read"), b"wheel-bytes");
    assert_eq!(c.fetch(&pin).await.expect("cached"), p);
    let runs = std::fs::read_to_string(bin.path().join("runs")).expect("runs");
    assert_eq!(runs.lines().count(), 1, "pip must run once");
    // No temporary pip directory is left behind.
    let left: Vec<_> = std::fs::read_dir(p.parent().expect("parent"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    let wrong = ArtifactPin {
        sha256: sha256_hex(b"other"),
        ..pin.clone()
    };
    let err = c.fetch(&wrong).await.expect_err("mismatch");
    assert_eq!(err.code(), Code::E030);
    assert!(
        err.to_string().contains("patroni-4.0.6-py3-none-any.whl"),
        "{err}"
    );

    let absent = ArtifactPin {
        version: "9.9.9".into(),
        sha256: sha256_hex(b"9.9.9"),
        ..pin.clone()
    };
    let err = c.fetch(&absent).await.expect_err("no such version");
    assert_eq!(err.code(), Code::E020);
    assert!(
        err.to_string()
            .contains("No matching distribution found for patroni==9.9.9"),
        "{err}"
    );

    let nopip = cache(&dir).with_pip(vec!["/nonexistent/pip".into()]);
    let fresh = ArtifactPin {
        sha256: sha256_hex(b"fresh"),
        ..pin
    };
    let err = nopip.fetch(&fresh).await.expect_err("no pip");
    assert!(
        err.to_string().contains("apt-get install -y python3-pip"),
        "{err}"
    );
}
