//! Attachments: every file a message carries, opened as far as it safely can be. MIME parts that
//! are files (attachments and inline images), and inside them archives (zip, gzip, tar) to a
//! bounded depth, count, expanded size and expansion ratio. Each file gets its type from its
//! content, and the inspections that type calls for: blocked types, names that lie, Office macros
//! and external references, PDF links and encryption, active HTML and SVG, QR codes in images.
//!
//! This module reads bytes and reports findings (symbols with what triggered them) and the links
//! it found; the pipeline weighs them, looks the links up and asks the engines (`engines`).

pub mod engines;
pub mod kind;
mod markup;
mod office;
mod pdf;
mod qr;

use std::io::Read;

use serde::Deserialize;

use crate::pipeline::malware::Parts;
use crate::pipeline::symbols::{self, Hit};
pub use kind::Kind;

/// Bounds and lists for opening attachments (`[attachments]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// File types refused wherever they are, archives included: by extension, and by content for
    /// the kinds content tells (`exe`, `lnk`, `iso`, `vhd`, `one`, `elf`, `macho`).
    pub blocked_types: Vec<String>,
    /// Archives inside archives opened at most this deep.
    pub max_archive_depth: usize,
    /// Files opened per message, archive members included.
    pub max_files: usize,
    /// Bytes all archives of one message may expand to.
    pub max_expanded_mib: u64,
    /// An archive member expanding more than this many times its packed size is a bomb.
    pub max_ratio: u64,
    /// Look for QR codes in images.
    pub qr_codes: bool,
    /// SHA-256 signature lists (`sha256 name` or ClamAV `.hsb` `sha256:size:name` lines).
    pub signature_files: Vec<std::path::PathBuf>,
    /// ClamAV over clamd's INSTREAM protocol.
    pub clamav: Option<engines::ClamavConfig>,
}

/// The types Exchange Online Protection's common attachment filter blocks, and the disk images
/// and OneNote sections that replaced macros as droppers.
pub const DEFAULT_BLOCKED_TYPES: &[&str] = &[
    "ace", "ani", "apk", "app", "appx", "arj", "bat", "cab", "cmd", "com", "cpl", "deb", "dex", "dll", "docm", "elf",
    "exe", "hta", "img", "iso", "jar", "jnlp", "js", "jse", "kext", "lnk", "macho", "msc", "msi", "msix", "msp", "mst",
    "one", "pif", "ps1", "reg", "scf", "scr", "sct", "sys", "vb", "vbe", "vbs", "vhd", "vhdx", "vxd", "wsc", "wsf",
    "wsh", "xll", "xlam",
];

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            blocked_types: DEFAULT_BLOCKED_TYPES.iter().map(|t| t.to_string()).collect(),
            max_archive_depth: 4,
            max_files: 1000,
            max_expanded_mib: 64,
            max_ratio: 100,
            qr_codes: true,
            signature_files: Vec::new(),
            clamav: None,
        }
    }
}

/// One file found in the message: a MIME part, or a member of an archive in one.
#[derive(Debug, Clone)]
pub struct File {
    /// Where it is: `docs.zip/setup.exe`.
    pub path: String,
    pub name: Option<String>,
    /// The MIME type its part declares (archive members declare none).
    pub declared: Option<String>,
    pub kind: Kind,
    pub bytes: Vec<u8>,
    /// 0 for a MIME part; archive members count their archives.
    pub depth: usize,
}

/// A link found inside a file or a QR code, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundLink {
    pub url: String,
    /// `statement.pdf`, or `QR code in scan.jpg`.
    pub source: String,
}

/// Everything opening the attachments found.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<File>,
    pub hits: Vec<Hit>,
    /// Links inside PDF, HTML, SVG and Office files.
    pub links: Vec<FoundLink>,
    /// URLs QR codes in images lead to.
    pub qr_links: Vec<FoundLink>,
}

impl Scan {
    /// One hit per symbol, whatever the number of files: weights count once per message (five
    /// password-protected files are not five times as suspect), and the detail names the first
    /// few files, so a thousand-file archive makes no thousand-line index entry.
    fn hit(&mut self, symbol: &symbols::Symbol, detail: impl Into<String>) {
        let detail = detail.into();
        match self.hits.iter_mut().find(|hit| hit.name == symbol.name) {
            Some(hit) if hit.detail.len() < 400 => {
                hit.detail.push_str("; ");
                hit.detail.push_str(&detail.chars().take(200).collect::<String>());
            }
            Some(_) => {}
            None => self
                .hits
                .push(Hit::new(symbol, detail.chars().take(300).collect::<String>())),
        }
    }
}

/// Forgets the images already searched for QR codes, so the next search of each is a first sight
/// (for measuring that cost).
pub fn forget_seen_images() {
    qr::forget();
}

/// Links kept per message from files, and QR images decoded: bounds on the work one message makes.
const MAX_LINKS: usize = 200;
const MAX_QR_IMAGES: usize = 20;

/// Opens every file in `parts`. `sender_domain` is the `From` domain, against which QR code links
/// are judged. Nothing here panics on hostile input: a file whose inspection fails is reported and
/// the rest go on.
pub fn scan(parts: &Parts, config: &AttachmentsConfig, sender_domain: Option<&str>) -> Scan {
    let mut scan = Scan::default();
    let mut budget = Budget {
        files_left: config.max_files,
        bytes_left: config.max_expanded_mib.saturating_mul(1024 * 1024),
    };
    let mut queue: Vec<File> = Vec::new();
    for (body, leaf) in parts.bodies.iter().zip(&parts.leaves) {
        let is_file = leaf.attachment || !(leaf.mime == "text/plain" || leaf.mime == "text/html");
        if !is_file || body.is_empty() {
            continue;
        }
        let name = leaf.name.clone();
        queue.push(File {
            path: name.clone().unwrap_or_else(|| format!("({})", leaf.mime)),
            name,
            declared: Some(leaf.mime.clone()),
            kind: kind::detect(body),
            bytes: body.clone(),
            depth: 0,
        });
    }
    queue.reverse();
    let mut qr_images = 0;
    while let Some(file) = queue.pop() {
        if budget.files_left == 0 {
            scan.hit(&symbols::ARCHIVE_LIMIT, format!("more than {} files", config.max_files));
            break;
        }
        budget.files_left -= 1;
        let inspected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            inspect(&file, config, &mut budget, &mut scan, &mut qr_images, sender_domain)
        }));
        match inspected {
            Ok(children) => queue.extend(children.into_iter().rev()),
            Err(_) => {
                tracing::warn!(file = %file.path, "attachment inspection failed");
                scan.hit(
                    &symbols::ATTACHMENT_UNREADABLE,
                    format!("{}: inspection failed", file.path),
                );
            }
        }
        scan.files.push(file);
    }
    scan.links.truncate(MAX_LINKS);
    scan
}

struct Budget {
    files_left: usize,
    bytes_left: u64,
}

/// Checks one file and returns the files inside it still to check.
fn inspect(
    file: &File,
    config: &AttachmentsConfig,
    budget: &mut Budget,
    scan: &mut Scan,
    qr_images: &mut usize,
    sender_domain: Option<&str>,
) -> Vec<File> {
    let blocked = |extension: &str| config.blocked_types.iter().any(|t| t.eq_ignore_ascii_case(extension));
    let extension = file.name.as_deref().and_then(kind::extension);
    if let Some(extension) = extension.as_deref().filter(|e| blocked(e)) {
        scan.hit(
            &symbols::ATTACHMENT_BLOCKED_TYPE,
            format!("{}: .{extension}", file.path),
        );
    } else if blocked(file.kind.name()) {
        scan.hit(
            &symbols::ATTACHMENT_BLOCKED_TYPE,
            format!("{}: {} content", file.path, file.kind.name()),
        );
    }
    if let Some(why) = kind::mismatch(file.kind, file.name.as_deref(), file.declared.as_deref()) {
        scan.hit(&symbols::ATTACHMENT_TYPE_MISMATCH, format!("{}: {why}", file.path));
    }
    let source = file.path.clone();
    let mut found_links = Vec::new();
    // A page is a page whatever its first bytes: a comment or a `<div>` first must not hide it.
    let markup_by_name = matches!(
        extension.as_deref(),
        Some("htm" | "html" | "xhtml" | "shtml" | "svg" | "mht")
    ) || matches!(
        file.declared.as_deref(),
        Some("text/html" | "image/svg+xml" | "application/xhtml+xml")
    );
    let kind = match file.kind {
        Kind::Text | Kind::Unknown if markup_by_name => Kind::Html,
        kind => kind,
    };
    let children = match kind {
        Kind::Zip => open_zip(file, config, budget, scan),
        Kind::Gzip => open_gzip(file, config, budget, scan),
        Kind::Tar => open_tar(file, config, budget, scan),
        Kind::Ooxml => {
            let report = office::ooxml(
                &file.bytes,
                extension.as_deref(),
                file.declared.as_deref(),
                &mut budget.bytes_left,
            );
            office_hits(file, &report, scan);
            found_links = report.links;
            // A package is a zip: what else it carries (embedded objects, a program beside the
            // document parts) is opened like any archive's members.
            open_zip(file, config, budget, scan)
        }
        Kind::Ole => {
            let report = office::ole(&file.bytes);
            office_hits(file, &report, scan);
            Vec::new()
        }
        Kind::Pdf => {
            let report = pdf::inspect(&file.bytes, &mut budget.bytes_left);
            if report.encrypted {
                scan.hit(
                    &symbols::PDF_ENCRYPTED,
                    format!("{}: encrypted, not scanned", file.path),
                );
            }
            if let Some(what) = &report.launch {
                scan.hit(&symbols::ATTACHMENT_ACTIVE_CONTENT, format!("{}: {what}", file.path));
            }
            if report.javascript {
                scan.hit(&symbols::PDF_JAVASCRIPT, format!("{}: JavaScript", file.path));
            }
            found_links = report.links;
            for image in report.jpeg_images {
                if config.qr_codes && *qr_images < MAX_QR_IMAGES {
                    *qr_images += 1;
                    qr_links(&image, &format!("{} (image)", file.path), sender_domain, scan);
                }
            }
            Vec::new()
        }
        Kind::Html | Kind::Svg => {
            let report = markup::inspect(&file.bytes);
            if let Some(what) = &report.active {
                scan.hit(&symbols::ATTACHMENT_ACTIVE_CONTENT, format!("{}: {what}", file.path));
            }
            if let Some(what) = &report.form {
                scan.hit(&symbols::ATTACHMENT_FORM, format!("{}: {what}", file.path));
            }
            found_links = report.links;
            Vec::new()
        }
        image if image.is_image() => {
            if config.qr_codes && *qr_images < MAX_QR_IMAGES {
                *qr_images += 1;
                qr_links(&file.bytes, &file.path, sender_domain, scan);
            }
            Vec::new()
        }
        Kind::SevenZip | Kind::Rar | Kind::Cab => {
            scan.hit(
                &symbols::ARCHIVE_UNOPENED,
                format!("{}: {} archive not opened here", file.path, kind.name()),
            );
            Vec::new()
        }
        _ => Vec::new(),
    };
    for url in found_links {
        if scan.links.len() < MAX_LINKS && !scan.links.iter().any(|l| l.url == url) {
            scan.links.push(FoundLink {
                url,
                source: source.clone(),
            });
        }
    }
    children
}

fn office_hits(file: &File, report: &office::Report, scan: &mut Scan) {
    if let Some(what) = &report.macros {
        let symbol = if report.macros_hidden {
            &symbols::OFFICE_MACRO_HIDDEN
        } else {
            &symbols::OFFICE_MACRO
        };
        scan.hit(symbol, format!("{}: {what}", file.path));
    }
    if let Some(target) = &report.external_template {
        scan.hit(&symbols::OFFICE_EXTERNAL_TEMPLATE, format!("{}: {target}", file.path));
    }
    if let Some(field) = &report.dde {
        scan.hit(&symbols::OFFICE_DDE, format!("{}: {field}", file.path));
    }
    if report.encrypted {
        scan.hit(
            &symbols::OFFICE_ENCRYPTED,
            format!("{}: encrypted, not scanned", file.path),
        );
    }
}

/// Words in a QR code's link that ask for credentials, matched as whole words of the URL
/// (`auth` in `/auth/`, not in `/author/`).
const LOGIN_WORDS: &[&str] = &[
    "login",
    "logon",
    "signin",
    "sign-in",
    "log-in",
    "verify",
    "verification",
    "password",
    "passwd",
    "auth",
    "oauth",
    "sso",
    "mfa",
    "2fa",
    "wallet",
    "office365",
    "microsoftonline",
    "webmail",
    "reset",
];

fn asks_to_sign_in(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    LOGIN_WORDS.iter().any(|word| match word.split_once('-') {
        Some((first, second)) => words.windows(2).any(|pair| pair[0] == first && pair[1] == second),
        None => words.contains(word),
    })
}

fn qr_links(image: &[u8], source: &str, sender_domain: Option<&str>, scan: &mut Scan) {
    for text in qr::decode(image) {
        let Some(url) = qr::url_in(&text) else { continue };
        let shown: String = url.chars().take(100).collect();
        scan.hit(&symbols::QR_CODE_URL, format!("{source}: {shown}"));
        let parsed = url::Url::parse(&url).ok();
        let host = parsed
            .as_ref()
            .and_then(|u| u.host_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let login = asks_to_sign_in(&url);
        // The sender's organisation, not the exact host: news.example.com may link to www.example.com.
        let foreign = sender_domain.is_none_or(|domain| {
            let domain = domain.to_ascii_lowercase();
            crate::reputation::heuristics::registrable_part(&host)
                != crate::reputation::heuristics::registrable_part(&domain)
        });
        if login || foreign {
            let why = if login {
                "asks to sign in"
            } else {
                "not the sender's domain"
            };
            scan.hit(&symbols::PHISH_QR_CODE, format!("{source}: {shown} ({why})"));
        }
        if !scan.qr_links.iter().any(|l| l.url == url) {
            scan.qr_links.push(FoundLink {
                url,
                source: format!("QR code in {source}"),
            });
        }
    }
}

/// Whether an archive member may be expanded: within the ratio and what is left of the budget.
/// `packed` and `size` are what the archive claims; the read that follows holds it to them.
fn may_expand(
    path: &str,
    packed: u64,
    size: u64,
    config: &AttachmentsConfig,
    budget: &Budget,
    scan: &mut Scan,
) -> bool {
    if size > 1024 * 1024 && size / packed.max(1) > config.max_ratio {
        scan.hit(
            &symbols::ARCHIVE_BOMB,
            format!("{path}: {packed} bytes expand to {size} (over {}:1)", config.max_ratio),
        );
        return false;
    }
    if size > budget.bytes_left {
        scan.hit(
            &symbols::ARCHIVE_LIMIT,
            format!(
                "{path}: the message's archives expand past {} MiB",
                config.max_expanded_mib
            ),
        );
        return false;
    }
    true
}

/// Why an archive member could not be read.
enum Unread {
    /// More bytes than allowed: the archive lied about the size, or the ratio was passed.
    TooLong,
    /// A compression method we do not have, or damage.
    Failed(String),
}

/// Reads at most `limit` bytes.
fn read_bounded(reader: impl Read, limit: u64) -> Result<Vec<u8>, Unread> {
    let mut out = Vec::new();
    match reader.take(limit + 1).read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > limit => Err(Unread::TooLong),
        Ok(_) => Ok(out),
        Err(error) => Err(Unread::Failed(error.to_string())),
    }
}

fn member(parent: &File, name: String, bytes: Vec<u8>) -> File {
    File {
        path: format!("{}/{name}", parent.path),
        kind: kind::detect(&bytes),
        name: Some(name),
        declared: None,
        bytes,
        depth: parent.depth + 1,
    }
}

fn deeper_than_allowed(file: &File, config: &AttachmentsConfig, scan: &mut Scan) -> bool {
    if file.depth >= config.max_archive_depth {
        scan.hit(
            &symbols::ARCHIVE_TOO_DEEP,
            format!("{}: archives nested past {}", file.path, config.max_archive_depth),
        );
        return true;
    }
    false
}

fn open_zip(file: &File, config: &AttachmentsConfig, budget: &mut Budget, scan: &mut Scan) -> Vec<File> {
    if deeper_than_allowed(file, config, scan) {
        return Vec::new();
    }
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(&file.bytes[..])) else {
        scan.hit(
            &symbols::ATTACHMENT_UNREADABLE,
            format!("{}: not a readable zip", file.path),
        );
        return Vec::new();
    };
    let mut children = Vec::new();
    for index in 0..archive.len() {
        if children.len() >= budget.files_left {
            scan.hit(
                &symbols::ARCHIVE_BOMB,
                format!("{}: more than {} files", file.path, config.max_files),
            );
            break;
        }
        let (name, encrypted, packed, size, is_dir) = match archive.by_index_raw(index) {
            Ok(entry) => (
                String::from_utf8_lossy(entry.name_raw()).into_owned(),
                entry.encrypted(),
                entry.compressed_size(),
                entry.size(),
                entry.is_dir(),
            ),
            Err(_) => continue,
        };
        if is_dir {
            continue;
        }
        let path = format!("{}/{name}", file.path);
        if encrypted {
            scan.hit(&symbols::ARCHIVE_ENCRYPTED, format!("{path}: encrypted, not scanned"));
            // The name is not encrypted: a blocked type is still one.
            children.push(member(file, name, Vec::new()));
            continue;
        }
        if !may_expand(&path, packed, size, config, budget, scan) {
            continue;
        }
        let read = match archive.by_index(index) {
            Ok(entry) => read_bounded(entry, size.min(budget.bytes_left)),
            Err(error) => Err(Unread::Failed(error.to_string())),
        };
        match read {
            Ok(bytes) => {
                budget.bytes_left -= bytes.len() as u64;
                children.push(member(file, name, bytes));
            }
            Err(Unread::TooLong) => scan.hit(&symbols::ARCHIVE_BOMB, format!("{path}: expands past what it declares")),
            Err(Unread::Failed(why)) => {
                scan.hit(&symbols::ATTACHMENT_UNREADABLE, format!("{path}: not expanded ({why})"));
                // Its name still counts: a blocked type stays blocked unread.
                children.push(member(file, name, Vec::new()));
            }
        }
    }
    children
}

fn open_gzip(file: &File, config: &AttachmentsConfig, budget: &mut Budget, scan: &mut Scan) -> Vec<File> {
    if deeper_than_allowed(file, config, scan) {
        return Vec::new();
    }
    // Every member of a multi-member file, as gunzip writes them out.
    let decoder = flate2::read::MultiGzDecoder::new(&file.bytes[..]);
    let stored_name = flate2::read::GzDecoder::new(&file.bytes[..])
        .header()
        .and_then(|header| header.filename())
        .map(|name| String::from_utf8_lossy(name).into_owned());
    let name = stored_name.unwrap_or_else(|| {
        file.name
            .as_deref()
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).trim_end_matches(['.', ' ']))
            .map(|n| match kind::extension(n).as_deref() {
                Some("tgz") => format!("{}.tar", &n[..n.len() - 4]),
                Some("gz") => n[..n.len() - 3].to_string(),
                _ => format!("{n}.out"),
            })
            .unwrap_or_else(|| "(gzip content)".into())
    });
    // Gzip says nothing trustworthy about its size: the ratio is held while reading.
    let limit = budget.bytes_left.min(
        (file.bytes.len() as u64)
            .saturating_mul(config.max_ratio)
            .max(1024 * 1024),
    );
    match read_bounded(decoder, limit) {
        Ok(bytes) => {
            budget.bytes_left -= bytes.len() as u64;
            vec![member(file, name, bytes)]
        }
        Err(Unread::TooLong) => {
            scan.hit(
                &symbols::ARCHIVE_BOMB,
                format!("{}: expands past {limit} bytes", file.path),
            );
            Vec::new()
        }
        Err(Unread::Failed(why)) => {
            scan.hit(&symbols::ATTACHMENT_UNREADABLE, format!("{}: {why}", file.path));
            vec![member(file, name, Vec::new())]
        }
    }
}

fn open_tar(file: &File, config: &AttachmentsConfig, budget: &mut Budget, scan: &mut Scan) -> Vec<File> {
    if deeper_than_allowed(file, config, scan) {
        return Vec::new();
    }
    let bytes = &file.bytes;
    let mut children = Vec::new();
    let mut at = 0usize;
    let mut long_name: Option<String> = None;
    while at + 512 <= bytes.len() {
        let header = &bytes[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        if children.len() >= budget.files_left {
            scan.hit(
                &symbols::ARCHIVE_BOMB,
                format!("{}: more than {} files", file.path, config.max_files),
            );
            break;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        let Ok(size) = u64::from_str_radix(field(124..136).trim(), 8) else {
            scan.hit(
                &symbols::ATTACHMENT_UNREADABLE,
                format!("{}: damaged tar header", file.path),
            );
            break;
        };
        let prefix = field(345..500);
        let header_name = match prefix.is_empty() {
            true => field(0..100),
            false => format!("{prefix}/{}", field(0..100)),
        };
        let start = at + 512;
        let Some(end) = usize::try_from(size).ok().and_then(|s| start.checked_add(s)) else {
            break;
        };
        let content = &bytes[start.min(bytes.len())..end.min(bytes.len())];
        let name = long_name.take().unwrap_or(header_name);
        match header[156] {
            // GNU long name, and a PAX header's path: the name the next member is extracted as.
            b'L' => long_name = Some(String::from_utf8_lossy(content).trim_end_matches('\0').to_string()),
            b'x' => {
                long_name = String::from_utf8_lossy(content)
                    .lines()
                    .find_map(|line| line.split_once(" path=").map(|(_, path)| path.to_string()))
            }
            _ => {}
        }
        // Links, directories, devices and metadata carry no file; anything else (regular, the
        // contiguous `7`, unknown types) is extracted as a file by tar, so it is one here.
        let regular = !matches!(header[156], b'1'..=b'6' | b'L' | b'K' | b'x' | b'g' | b'V' | b'M');
        if regular {
            if content.len() as u64 > budget.bytes_left {
                scan.hit(
                    &symbols::ARCHIVE_LIMIT,
                    format!(
                        "{}: the message's archives expand past {} MiB",
                        file.path, config.max_expanded_mib
                    ),
                );
                break;
            }
            budget.bytes_left -= content.len() as u64;
            children.push(member(file, name, content.to_vec()));
        }
        at = end.div_ceil(512) * 512;
    }
    children
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::malware::Leaf;

    fn parts_of(files: &[(&str, &str, Vec<u8>)]) -> Parts {
        Parts {
            bodies: files.iter().map(|f| f.2.clone()).collect(),
            leaves: files
                .iter()
                .map(|(name, mime, _)| Leaf {
                    mime: mime.to_string(),
                    charset: None,
                    attachment: true,
                    name: Some(name.to_string()),
                })
                .collect(),
            attachment_names: Vec::new(),
            depth: 1,
        }
    }

    fn names(scan: &Scan) -> Vec<&str> {
        scan.hits.iter().map(|h| h.name.as_str()).collect()
    }

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut out);
        for (name, bytes) in members {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut writer, bytes).unwrap();
        }
        writer.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn archives_inside_archives_are_opened_to_the_bound() {
        let inner = zip_of(&[("setup.exe", b"MZ\x90\x00rest")]);
        let outer = zip_of(&[("inner.zip", &inner), ("readme.txt", b"hello")]);
        let scan = scan(
            &parts_of(&[("docs.zip", "application/zip", outer.clone())]),
            &AttachmentsConfig::default(),
            None,
        );
        assert!(names(&scan).contains(&"ATTACHMENT_BLOCKED_TYPE"), "{:?}", scan.hits);
        assert!(scan.files.iter().any(|f| f.path == "docs.zip/inner.zip/setup.exe"));

        let shallow = AttachmentsConfig {
            max_archive_depth: 1,
            ..AttachmentsConfig::default()
        };
        let scan = super::scan(&parts_of(&[("docs.zip", "application/zip", outer)]), &shallow, None);
        assert!(names(&scan).contains(&"ARCHIVE_TOO_DEEP"));
        assert!(!names(&scan).contains(&"ATTACHMENT_BLOCKED_TYPE"));
    }

    #[test]
    fn bombs_are_flagged_not_expanded() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = zip_of(&[("zeros.bin", &zeros)]);
        assert!(bomb.len() < 100_000);
        let scan = scan(
            &parts_of(&[("big.zip", "application/zip", bomb)]),
            &AttachmentsConfig::default(),
            None,
        );
        assert!(names(&scan).contains(&"ARCHIVE_BOMB"));
        assert_eq!(scan.files.len(), 1, "nothing expanded");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
        let gz = gz.finish().unwrap();
        let scan = super::scan(
            &parts_of(&[("big.gz", "application/gzip", gz)]),
            &AttachmentsConfig::default(),
            None,
        );
        assert!(names(&scan).contains(&"ARCHIVE_BOMB"));
    }

    #[test]
    fn tar_in_gzip_is_read() {
        let mut tar = Vec::new();
        let mut header = [0u8; 512];
        header[..9].copy_from_slice(b"evil.vbs\0");
        header[124..136].copy_from_slice(b"00000000005\0");
        header[156] = b'0';
        header[257..262].copy_from_slice(b"ustar");
        tar.extend_from_slice(&header);
        let mut content = [0u8; 512];
        content[..5].copy_from_slice(b"hello");
        tar.extend_from_slice(&content);
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let scan = scan(
            &parts_of(&[("a.tgz", "application/octet-stream", gz.finish().unwrap())]),
            &AttachmentsConfig::default(),
            None,
        );
        assert!(
            scan.files.iter().any(|f| f.path == "a.tgz/a.tar/evil.vbs"),
            "{:?}",
            scan.files.iter().map(|f| &f.path).collect::<Vec<_>>()
        );
        assert!(names(&scan).contains(&"ATTACHMENT_BLOCKED_TYPE"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for round in 0..300 {
            let mut bytes: Vec<u8> = match round % 4 {
                0 => b"PK\x03\x04".to_vec(),
                1 => b"%PDF-1.4\n".to_vec(),
                2 => vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1],
                _ => b"\x89PNG\r\n\x1a\n".to_vec(),
            };
            for _ in 0..(round * 7 % 900) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                bytes.push((seed >> 33) as u8);
            }
            let scan = scan(
                &parts_of(&[("x.bin", "application/octet-stream", bytes)]),
                &AttachmentsConfig::default(),
                None,
            );
            // A panic is caught per file and reported: none may happen.
            assert!(
                !scan.hits.iter().any(|hit| hit.detail.contains("inspection failed")),
                "round {round}"
            );
        }
    }
}
