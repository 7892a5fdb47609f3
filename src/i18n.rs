//! The words of what end users see, by language: catalogs are data files (`static/locales/*.toml`
//! built in, and `click.locales_dir` adding languages or overriding words), chosen per request
//! from `Accept-Language` (RFC 9110 quality values, RFC 4647 lookup), with the organisation's
//! default language when nothing asked for is there.

use std::collections::HashMap;
use std::path::Path;

const BUILT_IN: &[(&str, &str)] = &[
    ("en", include_str!("../static/locales/en.toml")),
    ("ja", include_str!("../static/locales/ja.toml")),
];

/// The most language ranges of one `Accept-Language` that are looked at.
const MAX_RANGES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LocaleError {
    #[error("locale {path}: {message}")]
    File { path: String, message: String },
    #[error("the default language {0:?} has no catalog")]
    NoDefault(String),
}

/// One language's words.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Its language tag, lowercase (`en`, `ja`, `pt-br`).
    pub tag: String,
    words: HashMap<String, String>,
    /// Where a missing word comes from.
    fallback: Option<Box<Catalog>>,
}

impl Catalog {
    /// The word for `key`, or the key itself when no catalog has it (a visible, harmless gap).
    pub fn word<'a>(&'a self, key: &'a str) -> &'a str {
        match self.words.get(key) {
            Some(word) => word,
            None => self.fallback.as_ref().map_or(key, |fallback| fallback.word(key)),
        }
    }

    /// The word for `key` with each `{name}` filled in, in one pass (a value is never read as a
    /// placeholder).
    pub fn fill(&self, key: &str, values: &[(&str, &str)]) -> String {
        let template = self.word(key);
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            match rest[start..].find('}') {
                Some(end) => {
                    let name = &rest[start + 1..start + end];
                    match values.iter().find(|(n, _)| *n == name) {
                        Some((_, value)) => out.push_str(value),
                        None => out.push_str(&rest[start..start + end + 1]),
                    }
                    rest = &rest[start + end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Every language's catalog and the organisation's default.
#[derive(Debug, Clone)]
pub struct Catalogs {
    catalogs: Vec<Catalog>,
    default: usize,
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) -> Result<(), String> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::String(text) => {
                out.insert(key, text.clone());
            }
            toml::Value::Table(inner) => flatten(&key, inner, out)?,
            _ => return Err(format!("{key}: only text and tables")),
        }
    }
    Ok(())
}

fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut words = HashMap::new();
    flatten("", &table, &mut words)?;
    Ok(words)
}

impl Catalogs {
    /// The built-in catalogs, then the files of `dir` (`<tag>.toml`; a file for a built-in
    /// language overrides its words), with `default` for requests that ask for none we have.
    pub fn load(dir: Option<&Path>, default: &str) -> Result<Catalogs, LocaleError> {
        let mut by_tag: Vec<(String, HashMap<String, String>)> = BUILT_IN
            .iter()
            .map(|(tag, text)| (tag.to_string(), parse(text).expect("built-in catalogs parse")))
            .collect();
        if let Some(dir) = dir {
            let failed = |path: &Path, message: String| LocaleError::File {
                path: path.display().to_string(),
                message,
            };
            let entries = std::fs::read_dir(dir).map_err(|e| failed(dir, e.to_string()))?;
            let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
                let tag = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_ascii_lowercase)
                    .filter(|t| {
                        !t.is_empty() && t.len() <= 35 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
                    .ok_or_else(|| failed(path, "name it by its language tag, like ja.toml".into()))?;
                let text = std::fs::read_to_string(path).map_err(|e| failed(path, e.to_string()))?;
                let words = parse(&text).map_err(|e| failed(path, e))?;
                match by_tag.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, known)) => known.extend(words),
                    None => by_tag.push((tag, words)),
                }
            }
        }
        let default_tag = default.to_ascii_lowercase();
        let default = by_tag
            .iter()
            .position(|(tag, _)| *tag == default_tag)
            .ok_or_else(|| LocaleError::NoDefault(default_tag.clone()))?;
        let english = by_tag
            .iter()
            .find(|(tag, _)| tag == "en")
            .map(|(_, words)| words.clone());
        let default_words = by_tag[default].1.clone();
        let catalogs = by_tag
            .into_iter()
            .map(|(tag, words)| {
                // A missing word falls back to the default language's, then to English.
                let english = english.clone().map(|words| Catalog {
                    tag: "en".into(),
                    words,
                    fallback: None,
                });
                let fallback = if tag == default_tag {
                    english.filter(|_| tag != "en")
                } else {
                    Some(Catalog {
                        tag: default_tag.clone(),
                        words: default_words.clone(),
                        fallback: english.filter(|_| default_tag != "en").map(Box::new),
                    })
                };
                Catalog {
                    tag,
                    words,
                    fallback: fallback.map(Box::new),
                }
            })
            .collect();
        Ok(Catalogs { catalogs, default })
    }

    /// Whether there is a catalog for this exact tag (lowercase).
    pub fn has(&self, tag: &str) -> bool {
        self.catalogs
            .iter()
            .any(|catalog| catalog.tag.eq_ignore_ascii_case(tag))
    }

    pub fn default_catalog(&self) -> &Catalog {
        &self.catalogs[self.default]
    }

    /// The catalog for a request's `Accept-Language`: the highest-quality range we have
    /// (`ja-JP` finds `ja`; `*` is the default), else the default.
    pub fn negotiate(&self, accept_language: Option<&str>) -> &Catalog {
        let Some(header) = accept_language else {
            return self.default_catalog();
        };
        let mut ranges: Vec<(f32, usize, String)> = Vec::new();
        for (order, item) in header.split(',').take(MAX_RANGES).enumerate() {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if range.is_empty() || range.len() > 35 {
                continue;
            }
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            if quality > 0.0 && quality <= 1.0 {
                ranges.push((quality, order, range));
            }
        }
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, range) in &ranges {
            if range == "*" {
                return self.default_catalog();
            }
            // RFC 4647 lookup: drop subtags from the end until one matches.
            let mut candidate = range.as_str();
            loop {
                if let Some(catalog) = self.catalogs.iter().find(|c| c.tag == candidate) {
                    return catalog;
                }
                match candidate.rfind('-') {
                    Some(cut) => candidate = &candidate[..cut],
                    None => break,
                }
            }
        }
        self.default_catalog()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_language_we_have() {
        let catalogs = Catalogs::load(None, "en").unwrap();
        assert_eq!(catalogs.negotiate(Some("ja-JP,ja;q=0.9,en;q=0.8")).tag, "ja");
        assert_eq!(catalogs.negotiate(Some("fr-CH, fr;q=0.9, en;q=0.8")).tag, "en");
        assert_eq!(catalogs.negotiate(Some("fr, ja;q=0.5")).tag, "ja");
        assert_eq!(catalogs.negotiate(Some("en;q=0.1, ja")).tag, "ja");
        assert_eq!(catalogs.negotiate(Some("ja;q=0, en")).tag, "en");
        assert_eq!(catalogs.negotiate(Some(";;,,q=")).tag, "en");
        assert_eq!(catalogs.negotiate(None).tag, "en");
        let japanese = Catalogs::load(None, "ja").unwrap();
        assert_eq!(japanese.negotiate(Some("de")).tag, "ja");
        assert_eq!(japanese.negotiate(Some("*")).tag, "ja");
        assert!(Catalogs::load(None, "xx").is_err());
    }

    #[test]
    fn every_built_in_language_has_every_english_word() {
        let english = parse(BUILT_IN[0].1).unwrap();
        for (tag, text) in BUILT_IN {
            let words = parse(text).unwrap();
            for key in english.keys() {
                assert!(words.contains_key(key), "{tag} lacks {key}");
            }
        }
    }

    proptest::proptest! {
        /// Whatever a browser sends, a language comes back.
        #[test]
        fn any_accept_language_gets_a_catalog(header in "\\PC{0,200}", ranges in proptest::collection::vec("[a-zA-Z*-]{0,12}(;q=[0-9.]{0,5})?", 0..20)) {
            static CATALOGS: std::sync::OnceLock<Catalogs> = std::sync::OnceLock::new();
            let catalogs = CATALOGS.get_or_init(|| Catalogs::load(None, "ja").unwrap());
            let tag = &catalogs.negotiate(Some(&header)).tag;
            proptest::prop_assert!(tag == "en" || tag == "ja");
            let joined = ranges.join(",");
            let tag = &catalogs.negotiate(Some(&joined)).tag;
            proptest::prop_assert!(tag == "en" || tag == "ja");
        }

        /// Any template an operator writes fills without a panic.
        #[test]
        fn any_template_fills(template in "\\PC{0,100}", value in "\\PC{0,20}") {
            let catalog = Catalog { tag: "x".into(), words: HashMap::from([("k".to_string(), template)]), fallback: None };
            let _ = catalog.fill("k", &[("name", &value)]);
        }
    }

    #[test]
    fn words_are_filled_in_one_pass_and_gaps_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("de.toml"),
            "[blocked]\nheading = \"Diese Seite wurde blockiert\"\n",
        )
        .unwrap();
        let catalogs = Catalogs::load(Some(dir.path()), "ja").unwrap();
        let german = catalogs.negotiate(Some("de-AT"));
        assert_eq!(german.word("blocked.heading"), "Diese Seite wurde blockiert");
        // Not in German: the default language's word, then English's.
        assert_eq!(german.word("blocked.title"), "ブロック");
        assert_eq!(german.word("no.such.word"), "no.such.word");
        let english = catalogs.negotiate(Some("en"));
        assert_eq!(
            english.fill("page.protected_by", &[("organisation", "{contact} & Co")]),
            "Protected by {contact} & Co."
        );
        std::fs::write(dir.path().join("bad name.toml"), "").unwrap();
        assert!(Catalogs::load(Some(dir.path()), "en").is_err());
    }
}
