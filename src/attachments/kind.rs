//! What a file is, from its first bytes (magic numbers), never from its name or declared type:
//! those are what an attacker chooses, and comparing them with the content is a finding itself.

/// A file's type as its content shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Windows PE (or a bare DOS `MZ` executable).
    WindowsExecutable,
    Elf,
    MachO,
    /// An OLE compound file: `.doc`, `.xls`, `.ppt`, `.msg`, `.msi`.
    Ole,
    /// A zip holding `[Content_Types].xml`: `.docx`, `.xlsx`, `.pptx` and their macro forms.
    Ooxml,
    Zip,
    Gzip,
    Tar,
    SevenZip,
    Rar,
    Cab,
    Pdf,
    Rtf,
    Png,
    Jpeg,
    Gif,
    Html,
    Svg,
    /// A Windows shortcut.
    Lnk,
    /// A CD image (ISO 9660).
    Iso,
    /// A virtual disk (VHD or VHDX).
    Vhd,
    /// A OneNote section.
    OneNote,
    /// Readable text with no stronger signature.
    Text,
    Unknown,
}

impl Kind {
    /// How `portcullis` names it in symbols and logs; also the extension the blocked-types list
    /// knows it by, for the kinds that are dangerous whatever they are called.
    pub fn name(self) -> &'static str {
        match self {
            Kind::WindowsExecutable => "exe",
            Kind::Elf => "elf",
            Kind::MachO => "macho",
            Kind::Ole => "ole",
            Kind::Ooxml => "ooxml",
            Kind::Zip => "zip",
            Kind::Gzip => "gz",
            Kind::Tar => "tar",
            Kind::SevenZip => "7z",
            Kind::Rar => "rar",
            Kind::Cab => "cab",
            Kind::Pdf => "pdf",
            Kind::Rtf => "rtf",
            Kind::Png => "png",
            Kind::Jpeg => "jpeg",
            Kind::Gif => "gif",
            Kind::Html => "html",
            Kind::Svg => "svg",
            Kind::Lnk => "lnk",
            Kind::Iso => "iso",
            Kind::Vhd => "vhd",
            Kind::OneNote => "one",
            Kind::Text => "text",
            Kind::Unknown => "unknown",
        }
    }

    /// An image the QR scanner can decode.
    pub fn is_image(self) -> bool {
        matches!(self, Kind::Png | Kind::Jpeg | Kind::Gif)
    }

    /// Told apart by a binary signature (so a name or type that disagrees is a lie, not a guess).
    fn is_certain(self) -> bool {
        !matches!(self, Kind::Text | Kind::Unknown | Kind::Html | Kind::Svg)
    }
}

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const LNK_MAGIC: &[u8] = &[0x4C, 0x00, 0x00, 0x00, 0x01, 0x14, 0x02, 0x00];
const ONENOTE_MAGIC: &[u8] = &[
    0xE4, 0x52, 0x5C, 0x7B, 0x8C, 0xD8, 0xA7, 0x4D, 0xAE, 0xB1, 0x53, 0x78, 0xD0, 0x29, 0x96, 0xD3,
];

/// The kind of `bytes`.
pub fn detect(bytes: &[u8]) -> Kind {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"MZ") {
        return Kind::WindowsExecutable;
    }
    if starts(b"\x7fELF") {
        return Kind::Elf;
    }
    // Not CAFEBABE: Java class files share it with Mach-O universal binaries.
    if starts(&[0xCF, 0xFA, 0xED, 0xFE]) || starts(&[0xCE, 0xFA, 0xED, 0xFE]) {
        return Kind::MachO;
    }
    if starts(OLE_MAGIC) {
        return Kind::Ole;
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        // Every OOXML package has a part of this name (and so the name in its directory).
        return if memchr::memmem::find(bytes, b"[Content_Types].xml").is_some() {
            Kind::Ooxml
        } else {
            Kind::Zip
        };
    }
    if starts(&[0x1F, 0x8B]) {
        return Kind::Gzip;
    }
    if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return Kind::Tar;
    }
    if starts(b"7z\xBC\xAF\x27\x1C") {
        return Kind::SevenZip;
    }
    if starts(b"Rar!\x1A\x07") {
        return Kind::Rar;
    }
    if starts(b"MSCF") {
        return Kind::Cab;
    }
    // Readers accept a PDF header anywhere in the first kilobyte.
    if memchr::memmem::find(&bytes[..bytes.len().min(1024)], b"%PDF-").is_some() {
        return Kind::Pdf;
    }
    if starts(b"{\\rtf") {
        return Kind::Rtf;
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Kind::Png;
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Kind::Jpeg;
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Kind::Gif;
    }
    if starts(LNK_MAGIC) {
        return Kind::Lnk;
    }
    if starts(ONENOTE_MAGIC) {
        return Kind::OneNote;
    }
    if starts(b"vhdxfile")
        || starts(b"conectix")
        || bytes.len() >= 512 && bytes[bytes.len() - 512..].starts_with(b"conectix")
    {
        return Kind::Vhd;
    }
    if [0x8001, 0x8801, 0x9001]
        .iter()
        .any(|&at| bytes.get(at..at + 5) == Some(b"CD001"))
    {
        return Kind::Iso;
    }
    markup_or_text(bytes)
}

fn markup_or_text(bytes: &[u8]) -> Kind {
    let head = &bytes[..bytes.len().min(4096)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let lower = head.to_ascii_lowercase();
    let trimmed = lower.trim_ascii_start();
    if trimmed.starts_with(b"<svg")
        || (trimmed.starts_with(b"<?xml") && memchr::memmem::find(&lower, b"<svg").is_some())
    {
        return Kind::Svg;
    }
    if trimmed.starts_with(b"<!doctype html")
        || trimmed.starts_with(b"<html")
        || trimmed.starts_with(b"<head")
        || trimmed.starts_with(b"<body")
        || trimmed.starts_with(b"<script")
        || trimmed.starts_with(b"<meta")
        || trimmed.starts_with(b"<iframe")
    {
        return Kind::Html;
    }
    let readable = head
        .iter()
        .filter(|&&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    if !head.is_empty() && readable * 100 >= head.len() * 95 {
        Kind::Text
    } else {
        Kind::Unknown
    }
}

/// The file name's extension, lower case, without the dot.
pub fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, extension) = base.trim_end_matches(['.', ' ']).rsplit_once('.')?;
    (!stem.is_empty() && !extension.is_empty() && extension.len() <= 8).then(|| extension.to_ascii_lowercase())
}

/// The kinds a file called by this extension may be; `None` when the extension promises nothing
/// a signature can check.
fn expected_for_extension(extension: &str) -> Option<&'static [Kind]> {
    Some(match extension {
        "pdf" => &[Kind::Pdf],
        "doc" | "xls" | "ppt" | "msg" | "dot" | "xlt" | "pps" => &[Kind::Ole, Kind::Rtf, Kind::Html, Kind::Ooxml],
        // Password-protected OOXML documents are OLE files holding the encrypted package.
        "docx" | "xlsx" | "pptx" | "docm" | "xlsm" | "pptm" | "dotx" | "dotm" | "xltm" | "ppsx" | "ppsm" => {
            &[Kind::Ooxml, Kind::Zip, Kind::Ole]
        }
        "zip" => &[Kind::Zip, Kind::Ooxml],
        "gz" | "tgz" => &[Kind::Gzip],
        "tar" => &[Kind::Tar],
        "7z" => &[Kind::SevenZip],
        "rar" => &[Kind::Rar],
        "png" => &[Kind::Png],
        "jpg" | "jpeg" | "jpe" => &[Kind::Jpeg],
        "gif" => &[Kind::Gif],
        "rtf" => &[Kind::Rtf],
        "exe" | "dll" | "scr" | "sys" | "cpl" => &[Kind::WindowsExecutable],
        "txt" | "csv" | "log" => &[Kind::Text, Kind::Unknown],
        "htm" | "html" => &[Kind::Html, Kind::Text],
        "svg" => &[Kind::Svg, Kind::Text],
        _ => return None,
    })
}

/// The kinds a declared MIME type may be; `None` for types that promise nothing checkable
/// (`application/octet-stream`).
fn expected_for_mime(mime: &str) -> Option<&'static [Kind]> {
    Some(match mime {
        "application/pdf" => &[Kind::Pdf],
        "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint" => {
            &[Kind::Ole, Kind::Ooxml, Kind::Rtf, Kind::Html]
        }
        "application/zip" | "application/x-zip-compressed" | "application/x-zip" => &[Kind::Zip, Kind::Ooxml],
        "image/png" => &[Kind::Png],
        "image/jpeg" | "image/jpg" | "image/pjpeg" => &[Kind::Jpeg],
        "image/gif" => &[Kind::Gif],
        "application/gzip" | "application/x-gzip" => &[Kind::Gzip],
        "application/x-msdownload" | "application/x-dosexec" | "application/vnd.microsoft.portable-executable" => {
            &[Kind::WindowsExecutable]
        }
        "text/html" => &[Kind::Html, Kind::Text],
        "image/svg+xml" => &[Kind::Svg, Kind::Text],
        mime if mime.starts_with("application/vnd.openxmlformats-officedocument.")
            || mime.starts_with("application/vnd.ms-word.")
            || mime.starts_with("application/vnd.ms-excel.")
            || mime.starts_with("application/vnd.ms-powerpoint.") =>
        {
            &[Kind::Ooxml, Kind::Zip, Kind::Ole]
        }
        _ => return None,
    })
}

/// Why the name or declared type is a lie about `kind`, if it is. Markup claiming a binary type
/// counts (an HTML page named `invoice.pdf` is smuggling); text claiming one does not (a broken
/// file is not a disguise).
pub fn mismatch(kind: Kind, name: Option<&str>, declared: Option<&str>) -> Option<String> {
    if !kind.is_certain() && !matches!(kind, Kind::Html | Kind::Svg) {
        return None;
    }
    // A PNG called .jpg is everyday carelessness, not a disguise: any picture may claim any other.
    let claims_image = |kinds: &[Kind]| kinds.iter().all(|k| k.is_image());
    if kind.is_image()
        && name
            .and_then(extension)
            .and_then(|e| expected_for_extension(&e))
            .is_none_or(claims_image)
        && declared.and_then(expected_for_mime).is_none_or(claims_image)
    {
        return None;
    }
    if let Some(extension) = name.and_then(extension)
        && let Some(expected) = expected_for_extension(&extension)
        && !expected.contains(&kind)
    {
        return Some(format!(".{extension} is {}", kind.name()));
    }
    if let Some(mime) = declared
        && let Some(expected) = expected_for_mime(mime)
        && !expected.contains(&kind)
    {
        return Some(format!("{mime} is {}", kind.name()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_content() {
        assert_eq!(detect(b"MZ\x90\x00"), Kind::WindowsExecutable);
        assert_eq!(detect(b"%PDF-1.7\n"), Kind::Pdf);
        assert_eq!(detect(b"\xEF\xBB\xBF <!DOCTYPE html><p>"), Kind::Html);
        assert_eq!(detect(b"<?xml version=\"1.0\"?>\n<svg xmlns=\"\">"), Kind::Svg);
        assert_eq!(detect(b"hello there\r\n"), Kind::Text);
        assert_eq!(detect(&[0u8, 1, 2, 3, 4, 5]), Kind::Unknown);
        assert_eq!(detect(b""), Kind::Unknown);
    }

    #[test]
    fn names_and_types_that_lie() {
        assert!(mismatch(Kind::WindowsExecutable, Some("invoice.pdf"), None).is_some());
        assert!(mismatch(Kind::Html, Some("invoice.pdf"), None).is_some());
        assert!(mismatch(Kind::Pdf, Some("invoice.pdf"), Some("application/octet-stream")).is_none());
        assert!(mismatch(Kind::Ooxml, Some("a.docx"), Some("application/msword")).is_none());
        assert!(mismatch(Kind::Text, Some("a.pdf"), None).is_none());
        assert!(mismatch(Kind::WindowsExecutable, Some("a.bin"), Some("application/pdf")).is_some());
        assert_eq!(extension("Invoice.PDF.exe"), Some("exe".into()));
        assert_eq!(extension("archive.tar.gz"), Some("gz".into()));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("noext"), None);
        assert_eq!(extension("evil.exe. "), Some("exe".into()));
    }
}
