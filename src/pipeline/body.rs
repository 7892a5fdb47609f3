//! The body-form stage: rule symbols on how the text is written. HTML with no text alternative, a
//! body of images with hardly a word, shouting in capitals, words spelt to get past filters, 8-bit
//! text under no charset. Each only adds symbols; the weights live in the registry.

use crate::pipeline::symbols::{self, Hit};
use crate::pipeline::{ScanContext, Stage};

pub struct BodyForm;

/// Words spam spells out of digits and symbols, or letter by letter.
const DODGED_WORDS: &[&str] = &[
    "viagra", "cialis", "casino", "pharmacy", "free", "money", "cash", "loan", "credit", "mortgage", "bitcoin",
    "lottery", "winner", "prize", "sex", "porn", "pills", "dollars", "refund", "paypal", "offer", "discount",
    "million", "viagara", "xanax", "valium", "rolex", "replica",
];

/// The word a leetspeak spelling stands for.
fn unleet(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | '!' | '|' => 'i',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The first word written to dodge a filter: `v1agra`, `F R E E`, `c.a.s.i.n.o`.
pub fn dodged_word(text: &str) -> Option<String> {
    for word in text.split_whitespace().take(20_000) {
        let word = word.trim_matches(|c: char| matches!(c, '.' | ',' | ';' | ':' | '"' | '\'' | '(' | ')' | '?'));
        if word.len() < 3 || word.len() > 12 || word.chars().all(|c| c.is_alphabetic()) {
            continue;
        }
        let letters_and_digits = word.chars().filter(|c| c.is_ascii_alphanumeric()).count();
        let plain = unleet(word);
        if letters_and_digits + 1 >= word.len() && DODGED_WORDS.contains(&plain.as_str()) {
            return Some(word.to_string());
        }
        // Letters joined by one repeated separator: `c.a.s.i.n.o`, `f-r-e-e`.
        let separators: Vec<char> = word.chars().skip(1).step_by(2).collect();
        if let Some(&first) = separators.first()
            && !first.is_alphanumeric()
            && separators.iter().all(|&s| s == first)
        {
            let joined: String = word.chars().step_by(2).collect::<String>().to_lowercase();
            if DODGED_WORDS.contains(&joined.as_str()) {
                return Some(word.to_string());
            }
        }
    }
    // Letters apart: `F R E E`.
    let singles: Vec<&str> = text.split(' ').take(50_000).collect();
    let mut run = String::new();
    for piece in singles {
        let mut chars = piece.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_alphabetic() => run.push(c.to_ascii_lowercase()),
            _ => {
                if run.len() >= 3 && DODGED_WORDS.contains(&run.as_str()) {
                    return Some(
                        run.chars()
                            .map(|c| format!("{} ", c.to_ascii_uppercase()))
                            .collect::<String>()
                            .trim_end()
                            .to_string(),
                    );
                }
                run.clear();
            }
        }
    }
    (run.len() >= 3 && DODGED_WORDS.contains(&run.as_str())).then_some(run)
}

impl Stage for BodyForm {
    fn name(&self) -> &'static str {
        "body"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let content = &context.content;
        if content.html_parts > 0 && content.plain_parts == 0 {
            hits.push(Hit::new(&symbols::HTML_ONLY, "text/html and no text/plain"));
        }
        let visible = content.visible_chars();
        if content.html_parts > 0 && content.images > 0 && visible < 50 {
            hits.push(Hit::new(
                &symbols::HTML_IMAGE_ONLY,
                format!("{} images, {visible} characters of text", content.images),
            ));
        }
        let (mut letters, mut capitals) = (0usize, 0usize);
        for c in content.text.chars().filter(|c| c.is_alphabetic()) {
            if c.is_uppercase() {
                capitals += 1;
                letters += 1;
            } else if c.is_lowercase() {
                letters += 1;
            }
        }
        if letters >= 200 && capitals * 2 > letters {
            hits.push(Hit::new(
                &symbols::BODY_EXCESSIVE_CAPS,
                format!("{}% of {letters} letters in capitals", capitals * 100 / letters),
            ));
        }
        let subject = context.subject.as_deref().unwrap_or("");
        if let Some(word) = dodged_word(subject).or_else(|| dodged_word(&content.text)) {
            hits.push(Hit::new(&symbols::BODY_OBFUSCATED_WORDS, format!("\"{word}\"")));
        }
        if content.undeclared_8bit {
            hits.push(Hit::new(
                &symbols::CHARSET_UNDECLARED_8BIT,
                "8-bit text with no charset or US-ASCII",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dodged_words() {
        assert_eq!(dodged_word("buy v1agra now").as_deref(), Some("v1agra"));
        assert_eq!(dodged_word("get it F R E E today").as_deref(), Some("F R E E"));
        assert_eq!(dodged_word("play at c.a.s.i.n.o").as_deref(), Some("c.a.s.i.n.o"));
        assert_eq!(dodged_word("f-r-e-e"), Some("f-r-e-e".into()));
        assert_eq!(dodged_word("free money, a casino"), None);
        assert_eq!(dodged_word("version 1.2.3 of a b c"), None);
        assert_eq!(dodged_word("I have 100 dollars"), None);
    }
}
