//! The console's files: one page, its script, style sheet and logo, embedded in the binary and
//! served by the admin listener under `/console/` with a policy that lets the page load nothing
//! else (no inline script or style, no other origin, no framing). The page talks only to the API.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

use crate::redirect::Body;

const INDEX: &str = include_str!("../static/console/index.html");
const SCRIPT: &str = include_str!("../static/console/console.js");
const STYLE: &str = include_str!("../static/console/console.css");
const LOGO: &str = include_str!("../static/console/logo.svg");

/// The console's content security policy: its own files and API calls, nothing else.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's answer for `path`, or `None` when the path is not the console's.
pub fn response(method: &Method, path: &str) -> Option<Response<Body>> {
    let (content_type, body) = match path {
        "/" => return Some(redirect("/console/")),
        "/console" => return Some(redirect("/console/")),
        "/console/" | "/console/index.html" => ("text/html; charset=utf-8", INDEX),
        "/console/console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/console/console.css" => ("text/css; charset=utf-8", STYLE),
        "/console/logo.svg" => ("image/svg+xml", LOGO),
        _ if path.starts_with("/console/") => ("", ""),
        _ => return None,
    };
    if body.is_empty() {
        return Some(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    let mut response = Response::new(Body::new(if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(body.as_bytes())
    }));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers);
    Some(response)
}

/// The headers every console answer carries.
fn secure(headers: &mut hyper::HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = plain(StatusCode::FOUND, "");
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_nothing_inline() {
        // The policy forbids inline script and style: the page must not need them.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style=") && !INDEX.contains("<style"));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML") && !SCRIPT.contains("eval("));
        for asset in ["/console/console.js", "/console/console.css", "/console/logo.svg"] {
            assert!(INDEX.contains(asset), "{asset}");
            assert_eq!(response(&Method::GET, asset).unwrap().status(), StatusCode::OK);
        }
        assert_eq!(
            response(&Method::GET, "/console/nope").unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            response(&Method::POST, "/console/").unwrap().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(response(&Method::GET, "/metrics").is_none());
    }
}
