//! Finding and rewriting the links in a whole RFC 5322 message: the MIME walk (transfer encodings,
//! charsets), HTML (lol_html), plain text (our own scanner, in `text`) and the skip rules.
//!
//! Parts we do not change are copied through byte for byte. In a part we change, only the bytes of
//! each link are replaced, in the part's own charset, and the part keeps its transfer encoding.

pub(crate) mod charset;
mod html;
pub mod mime;
pub(crate) mod target;
pub(crate) mod text;
mod transfer;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;
use url::Url;

use crate::config::RewriteConfig;
use crate::patterns::UrlPatterns;
use crate::token::{ForeignVendor, KeyRing, LinkContext, LinkError, LiveKeyRing, is_own_link, unwrap_foreign};
use mime::{ContentType, Headers, line_ending, parse_headers, split_multipart};
use target::{decode_entities, resolve, resolve_in};
use transfer::TransferEncoding;

pub use target::SkipReason;

/// The header that says what was left unrewritten.
pub const PARTIAL_HEADER: &str = "X-Portcullis-Rewrite";

/// Why part of a message was left unrewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftReason {
    /// S/MIME or PGP signed or encrypted (including inline PGP).
    Signed,
    /// Nested deeper than `max_depth`, or an encoded `message/rfc822` deeper than `max_encoded_nesting`.
    TooDeep,
    /// A transfer encoding we cannot decode, or content that does not decode.
    Undecodable,
    /// A text part over `max_part_bytes`.
    TooLarge,
    /// More MIME entities than `max_parts`.
    TooManyParts,
    /// A multipart without a usable boundary, or HTML the parser refused.
    Malformed,
    /// A charset whose text cannot be mapped back to its bytes (UTF-7, UTF-32, ISO-2022-KR…).
    Charset,
}

impl LeftReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeftReason::Signed => "signed",
            LeftReason::TooDeep => "too-deep",
            LeftReason::Undecodable => "undecodable",
            LeftReason::TooLarge => "too-large",
            LeftReason::TooManyParts => "too-many-parts",
            LeftReason::Malformed => "malformed",
            LeftReason::Charset => "charset",
        }
    }
}

/// What happened to one link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRecord {
    /// The destination as a browser resolves it (or the raw text when it does not resolve).
    pub url: String,
    /// `rewritten`, or the skip reason.
    pub action: String,
    /// For foreign wrappers: the vendor and the URL inside, which reputation checks use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<ForeignRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForeignRecord {
    pub vendor: ForeignVendor,
    pub inner: String,
}

/// What the rewriter did to one message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub links_found: usize,
    pub links_rewritten: usize,
    pub links_skipped: BTreeMap<SkipReason, usize>,
    pub foreign_wrappers: usize,
    pub text_parts: usize,
    pub parts_rewritten: usize,
    /// Entities left unrewritten, by reason. Non-empty means the message is flagged partial.
    pub left_unrewritten: BTreeMap<LeftReason, usize>,
    pub links: Vec<LinkRecord>,
}

impl Report {
    pub fn is_partial(&self) -> bool {
        !self.left_unrewritten.is_empty()
    }

    /// The value of [`PARTIAL_HEADER`], when the message is partial.
    pub fn partial_header_value(&self) -> Option<String> {
        if !self.is_partial() {
            return None;
        }
        let reasons: Vec<&str> = self.left_unrewritten.keys().map(|r| r.as_str()).collect();
        let count: usize = self.left_unrewritten.values().sum();
        Some(format!("partial; reason={}; parts={count}", reasons.join(",")))
    }

    fn left(&mut self, reason: LeftReason) {
        *self.left_unrewritten.entry(reason).or_default() += 1;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("input is not an RFC 5322 message: it has no header fields")]
    NotAMessage,
    #[error("cannot sign links: {0}")]
    Signing(#[from] LinkError),
}

/// The rewritten message and what was done to it.
#[derive(Debug)]
pub struct Rewritten {
    pub message: Vec<u8>,
    pub report: Report,
}

/// Who a message's links are for.
#[derive(Debug, Clone, Default)]
pub struct MessageContext {
    /// Opaque message reference (at most 64 bytes).
    pub message_ref: Vec<u8>,
    /// The recipient this copy is for; `None` for one copy per message.
    pub recipient: Option<String>,
    /// Unix seconds.
    pub issued_at: u32,
    /// Policy flags signed into every link ([`crate::token::policy`]).
    pub flags: u8,
}

/// Rewrites links with one key ring and one configuration.
pub struct Rewriter {
    keys: LiveKeyRing,
    base_url: String,
    settings: RewriteConfig,
    do_not_rewrite: UrlPatterns,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rewrite,
    /// Parse, scan and classify exactly as a rewrite does, but sign and change nothing.
    Scan,
}

/// A byte range of the input and what replaces it.
type Edit = (Range<usize>, Vec<u8>);

impl Rewriter {
    pub fn new(keys: impl Into<LiveKeyRing>, base_url: &str, settings: RewriteConfig) -> Self {
        let do_not_rewrite = UrlPatterns::new(&settings.do_not_rewrite);
        Self {
            keys: keys.into(),
            base_url: base_url.trim_end_matches('/').to_string(),
            settings,
            do_not_rewrite,
        }
    }

    /// The key ring as it is now (a running server reloads it when the file changes).
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.current()
    }

    /// Rewrites every http(s) link in `message` into a signed link for `context`.
    pub fn rewrite(&self, message: &[u8], context: &MessageContext) -> Result<Rewritten, RewriteError> {
        self.run(message, context, Mode::Rewrite)
    }

    /// The same walk, parse and link scan as [`Rewriter::rewrite`] without changing anything: the
    /// baseline the rewrite benchmark compares against, and a cheap way to list a message's links.
    pub fn scan(&self, message: &[u8]) -> Result<Report, RewriteError> {
        self.run(message, &MessageContext::default(), Mode::Scan)
            .map(|r| r.report)
    }

    fn run(&self, message: &[u8], context: &MessageContext, mode: Mode) -> Result<Rewritten, RewriteError> {
        if parse_headers(message).fields.is_empty() {
            return Err(RewriteError::NotAMessage);
        }
        // One snapshot of the ring for the whole message: a reload never splits a message.
        let keys = self.keys.current();
        let recipient_ref = match (&context.recipient, mode) {
            (Some(address), Mode::Rewrite) => keys.recipient_ref(address)?,
            _ => Vec::new(),
        };
        let link_context = LinkContext {
            message_ref: context.message_ref.clone(),
            recipient_ref,
            issued_at: context.issued_at,
            flags: context.flags,
        };
        // Reject an unusable context or key ring before touching the message, not on its first link.
        if mode == Mode::Rewrite {
            link_context.check().map_err(LinkError::from)?;
            keys.active().ok_or(LinkError::NoActiveKey)?;
        }
        let mut walk = Walk {
            rewriter: self,
            keys,
            link_context,
            mode,
            report: Report::default(),
            entities: 0,
        };
        let edits = walk.message(message, 0, 0);
        let mut report = walk.report;
        let mut output = apply_edits(message, edits);
        if mode == Mode::Rewrite
            && let Some(value) = report.partial_header_value()
        {
            let eol = line_ending(&message[..parse_headers(message).body_start]);
            let mut stamped = Vec::with_capacity(output.len() + 80);
            stamped.extend_from_slice(format!("{PARTIAL_HEADER}: {value}").as_bytes());
            stamped.extend_from_slice(eol);
            stamped.extend_from_slice(&output);
            output = stamped;
        }
        report.links.shrink_to_fit();
        Ok(Rewritten {
            message: output,
            report,
        })
    }
}

/// `content` with each range replaced by its bytes (ranges sorted). An edit that overlaps the one
/// before it (two finders reporting the same link) is dropped rather than splicing garbage.
fn splice(content: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + edits.iter().map(|(_, b)| b.len()).sum::<usize>());
    let mut copied = 0;
    for (range, bytes) in edits {
        if range.start < copied || range.end > content.len() || range.start > range.end {
            continue;
        }
        out.extend_from_slice(&content[copied..range.start]);
        out.extend_from_slice(bytes);
        copied = range.end;
    }
    out.extend_from_slice(&content[copied..]);
    out
}

fn apply_edits(input: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by_key(|(range, _)| range.start);
    splice(input, &edits)
}

/// One pass over one message (and, recursively, over encoded attached messages).
struct Walk<'a> {
    rewriter: &'a Rewriter,
    keys: Arc<KeyRing>,
    link_context: LinkContext,
    mode: Mode,
    report: Report,
    entities: usize,
}

impl Walk<'_> {
    /// Walks the MIME tree of `buf` with an explicit stack (no recursion, so nesting depth costs
    /// memory, not stack) and returns the edits to make.
    fn message(&mut self, buf: &[u8], encoded_depth: usize, depth: usize) -> Vec<Edit> {
        let mut edits = Vec::new();
        let mut stack = vec![(0..buf.len(), ContentType::text_plain(), depth)];
        while let Some((range, default_type, depth)) = stack.pop() {
            self.entities += 1;
            if self.entities > self.rewriter.settings.max_parts {
                self.report.left(LeftReason::TooManyParts);
                continue;
            }
            if depth > self.rewriter.settings.max_depth {
                self.report.left(LeftReason::TooDeep);
                continue;
            }
            let headers = parse_headers(&buf[range.clone()]);
            let content_type = headers
                .get("content-type")
                .and_then(ContentType::parse)
                .unwrap_or(default_type);
            let body = range.start + headers.body_start..range.end;
            let (kind, subtype) = (content_type.kind.as_str(), content_type.subtype.as_str());
            match (kind, subtype) {
                ("multipart", "signed" | "encrypted") => self.report.left(LeftReason::Signed),
                ("application", "pkcs7-mime" | "x-pkcs7-mime" | "pgp-encrypted" | "pgp-signature") => {
                    self.report.left(LeftReason::Signed)
                }
                ("multipart", _) => {
                    let parts = content_type
                        .param("boundary")
                        .and_then(|b| split_multipart(&buf[body.clone()], b));
                    let Some(parts) = parts else {
                        self.report.left(LeftReason::Malformed);
                        continue;
                    };
                    let child_default = if subtype == "digest" {
                        ContentType::message_rfc822()
                    } else {
                        ContentType::text_plain()
                    };
                    for part in parts.into_iter().rev() {
                        stack.push((
                            body.start + part.start..body.start + part.end,
                            child_default.clone(),
                            depth + 1,
                        ));
                    }
                }
                ("message", "rfc822" | "global") => match transfer_encoding(&headers) {
                    Some(TransferEncoding::Identity) => stack.push((body, ContentType::text_plain(), depth + 1)),
                    Some(encoding) => edits.extend(self.encoded_message(buf, body, encoding, encoded_depth, depth + 1)),
                    None => self.report.left(LeftReason::Undecodable),
                },
                ("text", "plain" | "html") => {
                    edits.extend(self.text_part(buf, range, &headers, &content_type));
                }
                _ => {}
            }
        }
        edits
    }

    /// A base64 or quoted-printable `message/rfc822`: decode, walk, encode again.
    fn encoded_message(
        &mut self,
        buf: &[u8],
        body: Range<usize>,
        encoding: TransferEncoding,
        encoded_depth: usize,
        depth: usize,
    ) -> Option<Edit> {
        if encoded_depth >= self.rewriter.settings.max_encoded_nesting {
            self.report.left(LeftReason::TooDeep);
            return None;
        }
        let encoded = &buf[body.clone()];
        let Some(inner) = decode_transfer(encoded, encoding) else {
            self.report.left(LeftReason::Undecodable);
            return None;
        };
        let inner_edits = self.message(&inner, encoded_depth + 1, depth);
        if inner_edits.is_empty() {
            return None;
        }
        let rewritten = apply_edits(&inner, inner_edits);
        Some((body, encode_transfer(&rewritten, encoding, encoded)))
    }

    fn text_part(
        &mut self,
        buf: &[u8],
        entity: Range<usize>,
        headers: &Headers,
        content_type: &ContentType,
    ) -> Option<Edit> {
        let body_range = entity.start + headers.body_start..entity.end;
        let body = &buf[body_range.clone()];
        let Some(encoding) = transfer_encoding(headers) else {
            self.report.left(LeftReason::Undecodable);
            return None;
        };
        if body.len() > self.rewriter.settings.max_part_bytes.saturating_mul(2) {
            self.report.left(LeftReason::TooLarge);
            return None;
        }
        // Quoted-printable keeps a line map so untouched lines keep their exact bytes.
        let (content, qp_lines) = match encoding {
            TransferEncoding::QuotedPrintable => {
                let (content, lines) = transfer::decode_quoted_printable_lines(body);
                (Cow::Owned(content), lines)
            }
            _ => match decode_transfer(body, encoding) {
                Some(content) => (content, Vec::new()),
                None => {
                    self.report.left(LeftReason::Undecodable);
                    return None;
                }
            },
        };
        if content.len() > self.rewriter.settings.max_part_bytes {
            self.report.left(LeftReason::TooLarge);
            return None;
        }
        if is_inline_pgp(&content) {
            self.report.left(LeftReason::Signed);
            return None;
        }
        self.report.text_parts += 1;
        let Some(charset) = charset::resolve(content_type.param("charset"), &content) else {
            self.report.left(LeftReason::Charset);
            return None;
        };
        let replacements = if content_type.subtype == "html" {
            self.html_replacements(&content, charset)?
        } else {
            self.text_replacements(&content, charset)
        };
        if replacements.is_empty() {
            return None;
        }
        let mut edits: Vec<Edit> = replacements
            .into_iter()
            .map(|(range, text)| (range, charset::encode_ascii(&text, charset)))
            .collect();
        // Every later step (splice, quoted-printable re-encoding) needs sorted, disjoint edits.
        edits.sort_by_key(|(range, _)| range.start);
        let mut end = 0;
        edits.retain(|(range, _)| {
            let keep = range.start >= end && range.start <= range.end && range.end <= content.len();
            if keep {
                end = range.end;
            }
            keep
        });
        self.report.parts_rewritten += 1;
        let eol = line_ending(&buf[entity.clone()]);
        if encoding == TransferEncoding::QuotedPrintable {
            let bytes = transfer::reencode_quoted_printable(body, &qp_lines, &edits);
            return Some(with_header_end(body_range, bytes, headers, eol));
        }
        let changed = splice(&content, &edits);
        if encoding == TransferEncoding::Identity && transfer::has_overlong_line(&changed) {
            // SMTP forbids lines over 998 octets: this part has to become quoted-printable.
            let mut rebuilt = headers_with_qp(&buf[entity.clone()], headers, eol);
            rebuilt.extend_from_slice(&transfer::encode_quoted_printable(&changed, eol));
            return Some((entity, rebuilt));
        }
        let encoded = encode_transfer(&changed, encoding, body);
        Some(with_header_end(body_range, encoded, headers, eol))
    }

    fn html_replacements(
        &mut self,
        content: &[u8],
        charset: &'static encoding_rs::Encoding,
    ) -> Option<Vec<(Range<usize>, String)>> {
        let found = html::scan(content, charset);
        if found.unparsable {
            self.report.left(LeftReason::Malformed);
            return None;
        }
        // A mail client resolves relative links against <base href>; so do we, or the baseStriker
        // trick (relative links plus a hostile base) would slip past.
        let base = found
            .base
            .as_deref()
            .and_then(|b| resolve_in(&decode_entities(b), None, Some(charset)).ok());
        let mut replacements = Vec::new();
        for link in found.links {
            if let Some(new) = self.decide(&decode_entities(&link.raw), base.as_ref(), Some(charset)) {
                replacements.push((link.range, crate::escape::html(&new)));
            }
        }
        Some(replacements)
    }

    fn text_replacements(
        &mut self,
        content: &[u8],
        charset: &'static encoding_rs::Encoding,
    ) -> Vec<(Range<usize>, String)> {
        let mapped = charset::decode_mapped(content, charset);
        let mut replacements = Vec::new();
        for link in text::find(&mapped.text) {
            // A mail client opens a plain-text link as a UTF-8 URL, whatever the part's charset.
            if let Some(new) = self.decide(&link.url, None, None) {
                replacements.push((mapped.original_range(link.range.start, link.range.end), new));
            }
        }
        replacements
    }

    /// Classifies one link and returns its replacement, or `None` to leave it as written.
    /// `query_encoding`: the HTML document's charset, in which a browser sends the link's query.
    fn decide(
        &mut self,
        raw: &str,
        base: Option<&Url>,
        query_encoding: Option<&'static encoding_rs::Encoding>,
    ) -> Option<String> {
        let rewriter = self.rewriter;
        self.report.links_found += 1;
        let url = match resolve_in(raw, base, query_encoding) {
            Ok(url) => url,
            Err(reason) => return self.skip(raw.trim().to_string(), reason),
        };
        if is_own_link(&rewriter.base_url, url.as_str()) {
            return self.skip(url.into(), SkipReason::Ours);
        }
        if rewriter.do_not_rewrite.matches(&url) {
            return self.skip(url.into(), SkipReason::DoNotRewrite);
        }
        let foreign = unwrap_foreign(url.as_str());
        let mut destination: Cow<'_, str> = Cow::Borrowed(url.as_str());
        if let Some(foreign) = &foreign {
            self.report.foreign_wrappers += 1;
            if rewriter.settings.unwrap_foreign
                && let Ok(inner) = resolve(&foreign.inner, None)
            {
                destination = Cow::Owned(inner.into());
            }
        }
        let link = match self.mode {
            Mode::Scan => None,
            // Context and key ring were checked in `run`, so signing cannot fail here.
            Mode::Rewrite => self
                .keys
                .sign(&rewriter.base_url, &destination, &self.link_context)
                .ok(),
        };
        if link.is_some() {
            self.report.links_rewritten += 1;
        }
        self.report.links.push(LinkRecord {
            url: url.into(),
            action: "rewritten".into(),
            foreign: foreign.map(|f| ForeignRecord {
                vendor: f.vendor,
                inner: f.inner,
            }),
        });
        link
    }

    fn skip(&mut self, url: String, reason: SkipReason) -> Option<String> {
        *self.report.links_skipped.entry(reason).or_default() += 1;
        self.report.links.push(LinkRecord {
            url,
            action: reason.as_str().into(),
            foreign: None,
        });
        None
    }
}

fn transfer_encoding(headers: &Headers) -> Option<TransferEncoding> {
    TransferEncoding::from_header(headers.get("content-transfer-encoding"))
}

fn decode_transfer(body: &[u8], encoding: TransferEncoding) -> Option<Cow<'_, [u8]>> {
    match encoding {
        TransferEncoding::Identity => Some(Cow::Borrowed(body)),
        TransferEncoding::QuotedPrintable => Some(Cow::Owned(transfer::decode_quoted_printable(body))),
        TransferEncoding::Base64 => transfer::decode_base64(body).ok().map(Cow::Owned),
    }
}

/// Encodes changed content the way `original` (the encoded body it replaces) was encoded.
fn encode_transfer(content: &[u8], encoding: TransferEncoding, original: &[u8]) -> Vec<u8> {
    let eol = line_ending(original);
    match encoding {
        TransferEncoding::Identity => content.to_vec(),
        TransferEncoding::QuotedPrintable => transfer::encode_quoted_printable(content, eol),
        TransferEncoding::Base64 => {
            let trailing = original.ends_with(b"\n");
            let mut out = transfer::leading_whitespace(original).to_vec();
            out.extend(transfer::encode_base64(
                content,
                transfer::base64_line_len(original),
                eol,
                trailing,
            ));
            out
        }
    }
}

/// A body edit for an entity whose header block had no blank line after it (lenient parsers,
/// ours included, start the body at the first line that is not a field): the edit writes the
/// blank line too, or a link we put at the start of that body (`http://host:port/…`) would read
/// as a header field to the next parser.
fn with_header_end(body: Range<usize>, bytes: Vec<u8>, headers: &Headers, eol: &[u8]) -> Edit {
    if headers.complete || body.is_empty() {
        return (body, bytes);
    }
    let mut ended = Vec::with_capacity(eol.len() + bytes.len());
    ended.extend_from_slice(eol);
    ended.extend_from_slice(&bytes);
    (body, ended)
}

/// The entity's header block with `Content-Transfer-Encoding: quoted-printable` in place of any
/// previous transfer encoding.
fn headers_with_qp(entity: &[u8], headers: &Headers, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.body_start + 48);
    let mut fields_end = 0;
    for (name, _, range) in &headers.fields {
        if name != "content-transfer-encoding" {
            out.extend_from_slice(&entity[range.clone()]);
        }
        fields_end = range.end;
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable");
    out.extend_from_slice(eol);
    if headers.complete {
        out.extend_from_slice(&entity[fields_end..headers.body_start]);
    } else {
        out.extend_from_slice(eol);
    }
    out
}

fn is_inline_pgp(content: &[u8]) -> bool {
    let finder = |needle: &[u8]| memchr::memmem::find(content, needle).is_some();
    finder(b"-----BEGIN PGP SIGNED MESSAGE-----") || finder(b"-----BEGIN PGP MESSAGE-----")
}

/// Visits every entity of `message` with its bytes, header block and content type, depth first,
/// with an explicit stack (never recursion): multiparts, attached messages, and base64 or
/// quoted-printable encoded attached messages, decoded. Descends at most `max_depth` levels and
/// visits at most `max_entities` entities, and keeps at most twice the message's size in decoded
/// copies, so it is safe on any input. Returns the deepest level reached, `max_depth + 1` when
/// something lies deeper. Callers check that before anything that recurses sees the message.
pub fn walk_entities(
    message: &[u8],
    max_depth: usize,
    max_entities: usize,
    mut visit: impl FnMut(&[u8], &Headers, &ContentType),
) -> usize {
    // Decoded attached messages live in `buffers`; entry 0 is the message itself.
    let mut buffers: Vec<Cow<'_, [u8]>> = vec![Cow::Borrowed(message)];
    let mut stack = vec![(0usize, 0..message.len(), ContentType::text_plain(), 0usize)];
    let mut deepest = 0;
    let mut entities = 0;
    let mut decoded_bytes = 0usize;
    while let Some((buffer, range, default_type, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        entities += 1;
        if deepest > max_depth || entities > max_entities {
            break;
        }
        let buf = &buffers[buffer];
        let entity = &buf[range.clone()];
        let headers = parse_headers(entity);
        let content_type = headers
            .get("content-type")
            .and_then(ContentType::parse)
            .unwrap_or(default_type);
        visit(entity, &headers, &content_type);
        let body = range.start + headers.body_start..range.end;
        let mut children = Vec::new();
        match (content_type.kind.as_str(), content_type.subtype.as_str()) {
            ("multipart", subtype) => {
                let child_default = if subtype == "digest" {
                    ContentType::message_rfc822()
                } else {
                    ContentType::text_plain()
                };
                let parts = content_type
                    .param("boundary")
                    .and_then(|b| split_multipart(&buf[body.clone()], b))
                    .unwrap_or_default();
                for part in parts.into_iter().rev() {
                    children.push((
                        buffer,
                        body.start + part.start..body.start + part.end,
                        child_default.clone(),
                    ));
                }
            }
            ("message", "rfc822" | "global") => match transfer_encoding(&headers) {
                Some(TransferEncoding::Identity) | None => children.push((buffer, body, ContentType::text_plain())),
                Some(encoding) => {
                    // Decoded copies stay until the walk ends: together they may not pass twice
                    // the message's own size (nested quoted-printable keeps its full size per level).
                    if let Some(inner) = decode_transfer(&buf[body], encoding)
                        && decoded_bytes + inner.len() <= message.len().saturating_mul(2)
                    {
                        let inner: Vec<u8> = inner.into_owned();
                        let len = inner.len();
                        decoded_bytes += len;
                        buffers.push(Cow::Owned(inner));
                        children.push((buffers.len() - 1, 0..len, ContentType::text_plain()));
                    }
                }
            },
            _ => {}
        }
        stack.extend(children.into_iter().map(|(b, r, t)| (b, r, t, depth + 1)));
    }
    deepest.min(max_depth + 1)
}

/// The decoded body of a leaf entity (`body` as it stands after its header block).
pub fn decoded_body<'a>(entity: &'a [u8], headers: &Headers) -> Option<Cow<'a, [u8]>> {
    decode_transfer(&entity[headers.body_start..], transfer_encoding(headers)?)
}
