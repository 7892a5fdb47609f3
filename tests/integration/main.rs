//! Integration tests through the `portcullis` command line, compiled into one binary.
//!
//! - `admin`: the admin API (sign-in, clicks, trace, quarantine, audit) and the SIEM feeds over HTTP.
//! - `browser`: a WebDriver client driving Debian's headless Chromium through chromedriver.
//! - `console`: the console in that browser against a running gateway, screenshots of each page.
//! - `attachments`: ClamAV's test files through SMTP to a private clamd; clamd down, fail open or closed.
//! - `common`: running the binary, finding and decoding our links in output, MIME helpers.
//! - `keys_and_decode`: the key ring commands, `decode` of ours, forged and foreign links.
//! - `rewrite_html`: HTML link finding, browser parsing, `<base href>`, skip rules.
//! - `rewrite_text`: plain-text link finding, charsets, transfer encodings, line endings.
//! - `rewrite_mime`: MIME structure: attachments, nested messages, signed parts, partial flags.
//! - `malformed`: broken, huge and hostile input.
//! - `corpus`: the SpamAssassin public corpus, every message checked end to end.
//! - `classifier`: `portcullis train` on directories, mbox files and the corpus; a running gateway
//!   picking up a new model.
//! - `digest`: the quarantine digest through SMTP, its links on the click service, release requests.
//! - `detect`: detection fixtures (`tests/fixtures/detect/`) through `portcullis scan`.
//! - `export`: push export to a TCP syslog collector that comes up late, UDP and a JSON-lines file.
//! - `fuzz`: seeded mutants of the corpus and of attack structures through the rewriter and pipeline.
//! - `server`: running `portcullis serve`, and local servers speaking the providers' protocols.
//! - `click`: the click service over real HTTP.
//! - `gateway`: the SMTP gateway through real SMTP (swaks, smtp-sink, a local DNS server).
//! - `spf_suite`: the SPF test suite from mail-auth's sources through our resolver and a local DNS server.
//! - `store_once`: one stored message per accepted message, copies rendered and sealed at delivery.
//! - `hooks`: the HTTP API over HTTP, the milter over its wire protocol and behind a real Postfix,
//!   `portcullis filter` as a real Postfix's content filter.
//! - `threats`: post-delivery threats found by a feed update, a click-time verdict and an analyst.
//! - `hostile`: one regression test per class of crash, stall or missed link found by attack.

mod admin;
mod attachments;
mod browser;
mod classifier;
mod click;
mod common;
mod console;
mod corpus;
mod detect;
mod digest;
mod export;
mod fuzz;
mod gateway;
mod hooks;
mod hostile;
mod keys_and_decode;
mod malformed;
mod rewrite_html;
mod rewrite_mime;
mod rewrite_text;
mod server;
mod spf_suite;
mod store_once;
mod threats;
