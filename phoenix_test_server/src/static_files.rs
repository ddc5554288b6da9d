//! Plain HTTP files from [`ServerBuilder::static_dir`](crate::ServerBuilder::static_dir), like a
//! Phoenix app's `Plug.Static`: path lookup (percent-decoded, traversal refused, `index.html` for
//! directories), content types, and the streamed response.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::http;

/// A file found under the static directory, opened and ready to stream.
#[derive(Debug)]
pub(crate) struct StaticFile {
    pub file: File,
    pub len: u64,
    pub content_type: &'static str,
}

/// What a request path resolves to.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A regular file inside the directory.
    Found(StaticFile),
    /// The path is malformed or tries to leave the directory (HTTP 400, like Plug.Static's
    /// `InvalidPathError`).
    Invalid,
    /// Nothing to serve: the request gets the server's usual answer (`/` → "ok", else 404).
    Miss,
}

/// Decodes `%XX` escapes of a URL path (`+` stays `+`). `None` on a malformed escape.
fn decode_path(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The decoded, validated path segments of `path` (empty segments dropped, as in Plug's
/// `path_info`). `None` for anything Plug.Static refuses: a `.` or `..` segment, or a segment
/// holding `/` (from `%2F`), `\`, `:` or NUL, a bad escape or invalid UTF-8.
fn segments(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = String::from_utf8(decode_path(raw)?).ok()?;
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || seg.contains(['/', '\\', ':', '\0'])
            || !matches!(
                Path::new(&seg).components().collect::<Vec<_>>().as_slice(),
                [std::path::Component::Normal(_)]
            )
        {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

/// Opens `candidate` if, once symlinks are resolved, it is a regular file inside `root`
/// (`root` is canonical).
fn open_inside(root: &Path, candidate: &Path) -> Option<StaticFile> {
    let real = candidate.canonicalize().ok()?;
    if !real.starts_with(root) {
        return None;
    }
    let real = if real.is_dir() {
        let index = real.join("index.html").canonicalize().ok()?;
        if !index.starts_with(root) {
            return None;
        }
        index
    } else {
        real
    };
    let file = File::open(&real).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(StaticFile {
        file,
        len: meta.len(),
        content_type: content_type(&real),
    })
}

/// Resolves a request path (without its query) against the canonical static directory `root`.
pub(crate) fn lookup(root: &Path, path: &str) -> Lookup {
    if !path.starts_with('/') {
        return Lookup::Miss;
    }
    let Some(segs) = segments(path) else {
        return Lookup::Invalid;
    };
    let candidate: PathBuf = segs.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    match open_inside(root, &candidate) {
        Some(f) => Lookup::Found(f),
        None => Lookup::Miss,
    }
}

/// The `Content-Type` for a file name, by extension (case-insensitive).
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "ktx2" => "image/ktx2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "glb" => "model/gltf-binary",
        "gltf" => "model/gltf+json",
        _ => "application/octet-stream",
    }
}

/// Writes the 200 response for `f`: the head, then (unless `head_only`) the file streamed with
/// `io::copy`, never more than the `content-length` announced.
pub(crate) fn write_file(out: &mut impl Write, f: StaticFile, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ndate: {}\r\ncontent-length: {}\r\ncontent-type: {}\r\n\
         cache-control: no-cache\r\nconnection: close\r\n\r\n",
        http::http_date(),
        f.len,
        f.content_type
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        let copied = io::copy(&mut f.file.take(f.len), out)?;
        if copied != f.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being sent",
            ));
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn path_segments_like_plug_static() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("//a///b.js").unwrap(), ["a", "b.js"]);
        assert_eq!(segments("/a%20b/c+d").unwrap(), ["a b", "c+d"]);
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/./x",
            "/a%2F..%2Fb",
            "/a%5cb",
            "/a\\b",
            "/c:/x",
            "/a%00b",
            "/%zz",
            "/%4",
            "/%ff",
        ] {
            assert!(segments(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        let ct = |n: &str| content_type(Path::new(n));
        assert_eq!(ct("game_bg.wasm"), "application/wasm");
        assert_eq!(ct("INDEX.HTML"), "text/html; charset=utf-8");
        assert_eq!(ct("a.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ct("f.woff2"), "font/woff2");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("x.bin"), "application/octet-stream");
    }
}
