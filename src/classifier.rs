//! The trained spam classifier: hashed features of a message (subject and body tokens, URL hosts,
//! sender domain, MIME structure, header names, the rule symbols already found), a linear model
//! over them (logistic regression trained with FTRL-Proximal, or naive Bayes; see
//! `docs/detection.md` for why logistic is the default), the model file in the data directory, and
//! the live model a running server reloads when that file changes. Training reads directories of
//! `.eml` files, maildirs and mbox files; [`Trainer`] is the seam for retraining from quarantine
//! decisions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::pipeline::content::Content;
use crate::pipeline::symbols::{self, Hit, Symbol};
use crate::pipeline::{ScanContext, Stage};
use crate::reputation::heuristics::registrable_part;

/// The model file's name in the data directory.
pub const MODEL_FILE: &str = "classifier.model";
const MAGIC: &[u8; 8] = b"PCLASS01";
/// Features hash into 2^20 slots: collisions cost little accuracy at this size.
pub const BITS: u32 = 20;
/// Words of body text read per message.
const MAX_WORDS: usize = 6000;

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("model file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model file {path} is not a Portcullis classifier model ({reason})")]
    Format { path: PathBuf, reason: &'static str },
    #[error("nothing to train on: {spam} spam and {ham} ham messages (both are needed)")]
    Empty { spam: usize, ham: usize },
}

/// Which learner made a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Learner {
    /// Logistic regression, FTRL-Proximal, a few passes over the messages.
    Logistic,
    /// Naive Bayes over feature presence, Laplace-smoothed.
    Bayes,
}

/// FNV-1a 64: stable across builds and platforms, so a model file (and a campaign signature)
/// means the same to every binary.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A feature's slot: its kind and token, hashed.
fn hash(kind: &str, token: &str) -> u32 {
    let h = fnv1a(kind.bytes().chain([0x1f]).chain(token.bytes()));
    ((h ^ (h >> 32)) as u32) & ((1 << BITS) - 1)
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}')
}

/// Words of `text`: lower case, 2 to 30 characters; runs of CJK characters (written without
/// spaces) as character pairs; long numbers by their length only.
fn words(text: &str, mut emit: impl FnMut(&str)) {
    let mut count = 0;
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '$' || c == '-')) {
        let word = raw.trim_matches(|c| c == '\'' || c == '-');
        if count >= MAX_WORDS {
            return;
        }
        if word.chars().any(is_cjk) {
            let chars: Vec<char> = word.chars().collect();
            for pair in chars.windows(2).take(MAX_WORDS - count) {
                emit(&pair.iter().collect::<String>());
                count += 1;
            }
            continue;
        }
        let length = word.chars().count();
        if !(2..=30).contains(&length) {
            continue;
        }
        count += 1;
        if word.chars().all(|c| c.is_ascii_digit()) && length > 4 {
            emit(&format!("#{length}"));
        } else {
            emit(&word.to_lowercase());
        }
    }
}

/// The hashed features of one message, sorted and without repeats. `found` are the symbols the
/// stages before the classifier added.
pub fn features(context: &ScanContext<'_>, found: &[Hit]) -> Vec<u32> {
    let mut out = Vec::with_capacity(1024);
    let content: &Content = &context.content;
    if let Some(subject) = &context.subject {
        let mut previous = String::new();
        words(subject, |word| {
            out.push(hash("s", word));
            out.push(hash("s2", &format!("{previous} {word}")));
            previous = word.to_string();
        });
    }
    let mut previous = String::new();
    words(&content.text, |word| {
        out.push(hash("b", word));
        out.push(hash("b2", &format!("{previous} {word}")));
        previous = word.to_string();
    });
    for link in content.links.iter().take(200) {
        if let Ok(url) = url::Url::parse(&link.href)
            && let Some(host) = url.host_str()
        {
            let host = host.to_ascii_lowercase();
            out.push(hash("ud", registrable_part(&host)));
            out.push(hash("u", &host));
        }
    }
    if let Some(from) = &context.from {
        if let Some((_, domain)) = from.address.rsplit_once('@') {
            let domain = domain.to_ascii_lowercase();
            out.push(hash("fd", registrable_part(&domain)));
            out.push(hash("f", &domain));
        }
        if let Some(name) = &from.name {
            words(name, |word| out.push(hash("fn", word)));
        }
    }
    for leaf in &context.parts.leaves {
        out.push(hash("m", &leaf.mime));
        if let Some(charset) = &leaf.charset {
            out.push(hash("cs", charset));
        }
    }
    out.push(hash("mc", &context.parts.leaves.len().min(10).to_string()));
    for name in &context.parts.attachment_names {
        let extension = name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
        out.push(hash("ax", &extension));
    }
    for (name, value, _) in &context.headers.fields {
        // A collector's own verdict fields would teach the model to read the answer.
        if name.starts_with("x-spam") || name.starts_with("x-portcullis") {
            continue;
        }
        out.push(hash("h", name));
        // Header values as SpamAssassin's Bayes reads them, less what changes with every
        // message (dates) or says nothing (the recipient's own address).
        if !matches!(name.as_str(), "date" | "delivered-to" | "x-original-to" | "subject") {
            let mut end = value.len().min(300);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            words(&value[..end], |word| out.push(hash(name, word)));
        }
    }
    for hit in found {
        out.push(hash("r", &hit.name));
    }
    out.push(hash("links", &content.links.len().min(20).to_string()));
    out.push(hash("images", &content.images.min(10).to_string()));
    out.sort_unstable();
    out.dedup();
    out
}

/// A linear model: the probability of spam is `sigmoid(bias + sum of the weights present)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub learner: Learner,
    pub bias: f32,
    /// `(feature, weight)`, sorted by feature, zeros left out.
    pub weights: Vec<(u32, f32)>,
    pub trained_on: (u32, u32),
}

impl Model {
    /// The probability that a message with these features is spam.
    pub fn probability(&self, features: &[u32]) -> f64 {
        let mut sum = f64::from(self.bias);
        for feature in features {
            if let Ok(i) = self.weights.binary_search_by_key(feature, |(f, _)| *f) {
                sum += f64::from(self.weights[i].1);
            }
        }
        1.0 / (1.0 + (-sum.clamp(-50.0, 50.0)).exp())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.weights.len() * 8);
        out.extend_from_slice(MAGIC);
        out.push(BITS as u8);
        out.push(match self.learner {
            Learner::Logistic => 0,
            Learner::Bayes => 1,
        });
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.trained_on.0.to_le_bytes());
        out.extend_from_slice(&self.trained_on.1.to_le_bytes());
        out.extend_from_slice(&(self.weights.len() as u32).to_le_bytes());
        for (feature, weight) in &self.weights {
            out.extend_from_slice(&feature.to_le_bytes());
            out.extend_from_slice(&weight.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Model, ClassifierError> {
        let bad = |reason| ClassifierError::Format {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < 28 || &bytes[..8] != MAGIC {
            return Err(bad("no PCLASS01 header"));
        }
        if u32::from(bytes[8]) != BITS {
            return Err(bad("made for another feature size"));
        }
        let learner = match bytes[9] {
            0 => Learner::Logistic,
            1 => Learner::Bayes,
            _ => return Err(bad("unknown learner")),
        };
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let bias = f32::from_bits(word(12));
        let trained_on = (word(16), word(20));
        let count = word(24) as usize;
        if count.checked_mul(8).and_then(|n| n.checked_add(28)) != Some(bytes.len()) {
            return Err(bad("truncated"));
        }
        let mut weights = Vec::with_capacity(count);
        for i in 0..count {
            let at = 28 + i * 8;
            let (feature, weight) = (word(at), f32::from_bits(word(at + 4)));
            if !weight.is_finite() || feature >= 1 << BITS || weights.last().is_some_and(|(last, _)| *last >= feature) {
                return Err(bad("weights out of order or not finite"));
            }
            weights.push((feature, weight));
        }
        if !bias.is_finite() {
            return Err(bad("bias not finite"));
        }
        Ok(Model {
            learner,
            bias,
            weights,
            trained_on,
        })
    }

    pub fn load(path: &Path) -> Result<Model, ClassifierError> {
        let bytes = std::fs::read(path).map_err(|source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Model::from_bytes(&bytes, path)
    }

    /// Writes the model beside its final name, then renames it there: a server reloading it
    /// never reads half a file.
    pub fn save(&self, path: &Path) -> Result<(), ClassifierError> {
        let io = |source| ClassifierError::Io {
            path: path.to_path_buf(),
            source,
        };
        let temporary = path.with_extension("model.partial");
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        file.write_all(&self.to_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

/// Collects labelled messages' features and fits a model: what `portcullis train` uses, and the
/// seam for retraining from an operator's quarantine decisions.
#[derive(Default)]
pub struct Trainer {
    examples: Vec<(Vec<u32>, bool)>,
}

impl Trainer {
    pub fn add(&mut self, features: Vec<u32>, spam: bool) {
        self.examples.push((features, spam));
    }

    pub fn counts(&self) -> (usize, usize) {
        let spam = self.examples.iter().filter(|(_, spam)| *spam).count();
        (spam, self.examples.len() - spam)
    }

    /// How many of its own messages `model` puts on the right side of 50%, and of how many.
    pub fn accuracy(&self, model: &Model) -> (usize, usize) {
        let right = self
            .examples
            .iter()
            .filter(|(features, spam)| (model.probability(features) >= 0.5) == *spam)
            .count();
        (right, self.examples.len())
    }

    /// How `model` does on these (held-out) messages at a few probability cut-offs: spam found,
    /// legitimate mail taken for spam.
    pub fn report(&self, model: &Model) -> Vec<String> {
        let scored: Vec<(f64, bool)> = self
            .examples
            .iter()
            .map(|(features, spam)| (model.probability(features), *spam))
            .collect();
        let (spam, ham) = self.counts();
        let mut lines = vec![format!("checked against {spam} spam and {ham} ham held out:")];
        for cut in [0.5, 0.9, 0.99, 0.999] {
            let caught = scored.iter().filter(|(p, s)| *s && *p >= cut).count();
            let wrong = scored.iter().filter(|(p, s)| !*s && *p >= cut).count();
            let cleared = scored.iter().filter(|(p, s)| !*s && *p <= 1.0 - cut).count();
            let missed = scored.iter().filter(|(p, s)| *s && *p <= 1.0 - cut).count();
            lines.push(format!(
                "  p >= {cut}: {caught}/{spam} spam caught, {wrong}/{ham} ham taken for spam; p <= {:.3}: {cleared}/{ham} ham cleared, {missed} spam cleared",
                1.0 - cut
            ));
        }
        lines
    }

    pub fn fit(&self, learner: Learner, epochs: usize) -> Result<Model, ClassifierError> {
        let (spam, ham) = self.counts();
        if spam == 0 || ham == 0 {
            return Err(ClassifierError::Empty { spam, ham });
        }
        let model = match learner {
            Learner::Logistic => self.fit_logistic(epochs.max(1)),
            Learner::Bayes => self.fit_bayes(),
        };
        Ok(Model {
            trained_on: (spam as u32, ham as u32),
            ..model
        })
    }

    /// FTRL-Proximal (McMahan et al., 2013) over binary features; the bias is feature 2^BITS.
    /// Spam and ham weigh equally whatever their counts, and the order of passes is a fixed
    /// shuffle, so the same messages always give the same model.
    fn fit_logistic(&self, epochs: usize) -> Model {
        // Chosen on a split of the SpamAssassin corpus's training half (docs/detection.md).
        const ALPHA: f64 = 0.2;
        const BETA: f64 = 1.0;
        const L1: f64 = 0.1;
        const L2: f64 = 1.0;
        let size = (1usize << BITS) + 1;
        let bias_slot = size - 1;
        let (mut z, mut n) = (vec![0f64; size], vec![0f64; size]);
        let (spam, ham) = self.counts();
        let (spam_weight, ham_weight) = (
            self.examples.len() as f64 / (2.0 * spam as f64),
            self.examples.len() as f64 / (2.0 * ham as f64),
        );
        let weight_of = |z: f64, n: f64| {
            if z.abs() <= L1 {
                0.0
            } else {
                -(z - z.signum() * L1) / ((BETA + n.sqrt()) / ALPHA + L2)
            }
        };
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..epochs {
            // Fisher–Yates with a fixed xorshift: deterministic.
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            for &index in &order {
                let (features, is_spam) = &self.examples[index];
                let slots = features.iter().map(|&f| f as usize).chain([bias_slot]);
                let sum: f64 = slots.clone().map(|i| weight_of(z[i], n[i])).sum();
                let p = 1.0 / (1.0 + (-sum.clamp(-35.0, 35.0)).exp());
                let (label, importance) = if *is_spam {
                    (1.0, spam_weight)
                } else {
                    (0.0, ham_weight)
                };
                let gradient = (p - label) * importance;
                for i in slots {
                    let w = weight_of(z[i], n[i]);
                    let sigma = ((n[i] + gradient * gradient).sqrt() - n[i].sqrt()) / ALPHA;
                    z[i] += gradient - sigma * w;
                    n[i] += gradient * gradient;
                }
            }
        }
        let weights = (0..bias_slot)
            .filter_map(|i| {
                let w = weight_of(z[i], n[i]);
                (w != 0.0).then_some((i as u32, w as f32))
            })
            .collect();
        Model {
            learner: Learner::Logistic,
            bias: weight_of(z[bias_slot], n[bias_slot]) as f32,
            weights,
            trained_on: (0, 0),
        }
    }

    /// Naive Bayes over which features are present, Laplace-smoothed, with equal priors; features
    /// seen in fewer than two messages are left out.
    fn fit_bayes(&self) -> Model {
        let mut counts = std::collections::HashMap::<u32, (u32, u32)>::new();
        for (features, spam) in &self.examples {
            for feature in features {
                let entry = counts.entry(*feature).or_default();
                if *spam {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        let (spam, ham) = self.counts();
        let mut weights: Vec<(u32, f32)> = counts
            .into_iter()
            .filter(|(_, (s, h))| s + h >= 2)
            .map(|(feature, (s, h))| {
                let p_spam = (f64::from(s) + 1.0) / (spam as f64 + 2.0);
                let p_ham = (f64::from(h) + 1.0) / (ham as f64 + 2.0);
                (feature, (p_spam / p_ham).ln() as f32)
            })
            .collect();
        weights.sort_unstable_by_key(|(feature, _)| *feature);
        Model {
            learner: Learner::Bayes,
            bias: 0.0,
            weights,
            trained_on: (0, 0),
        }
    }
}

/// Reads every message under the spam and ham paths into a trainer, through the pipeline's own
/// stages ([`crate::pipeline::Pipeline::features`]). `progress` gets the messages read so far and
/// an estimate of the total (files counted first; an mbox counts as one until it is read).
pub fn train_from(
    pipeline: &crate::pipeline::Pipeline,
    spam: &[PathBuf],
    ham: &[PathBuf],
    progress: &mut dyn FnMut(usize, usize),
) -> Trainer {
    let envelope = crate::pipeline::Envelope {
        message_ref: "training".into(),
        sender: String::new(),
        recipients: Vec::new(),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: "localhost".into(),
        tls: false,
        received_at: crate::store::now(),
        connection_symbols: Vec::new(),
    };
    let estimate: usize = spam.iter().chain(ham).map(|path| count_files(path)).sum();
    let mut trainer = Trainer::default();
    let mut done = 0;
    for (paths, is_spam) in [(spam, true), (ham, false)] {
        for path in paths {
            read_messages(path, &mut |message| {
                if let Some(features) = pipeline.features(&envelope, message) {
                    trainer.add(features, is_spam);
                }
                done += 1;
                progress(done, estimate.max(done));
            });
        }
    }
    progress(done, done);
    trainer
}

/// Files under `path` that [`read_messages`] reads (itself, if it is one).
fn count_files(path: &Path) -> usize {
    let mut count = 0;
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() && !visited.insert(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
            continue;
        }
        match std::fs::read_dir(&path) {
            Ok(entries) => stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| wanted(p))),
            Err(_) => count += usize::from(path.is_file()),
        }
    }
    count
}

/// Dot files (a maildir's `.` folders, editors' leftovers) and `.json` beside messages are not mail.
fn wanted(path: &Path) -> bool {
    !path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.ends_with(".json"))
}

/// The messages under `path`: a file is one message, or an mbox of several (it starts with a
/// `From ` line); a directory (maildirs included) is walked, every regular file in it read.
/// Calls `each` with every message found; returns how many files could not be read.
pub fn read_messages(path: &Path, each: &mut dyn FnMut(&[u8])) -> usize {
    let mut unreadable = 0;
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            unreadable += 1;
            continue;
        };
        if metadata.is_dir() {
            // A directory linked into itself is read once.
            if !visited.insert(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&path) else {
                unreadable += 1;
                continue;
            };
            let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            // Reverse sorted onto the stack: read in name order.
            children.sort_unstable_by(|a, b| b.cmp(a));
            stack.extend(children.into_iter().filter(|child| wanted(child)));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => split_mbox(&bytes, each),
            Err(_) => unreadable += 1,
        }
    }
    unreadable
}

/// One message, or each message of an mbox (mboxrd: `>From ` lines unquoted one level).
fn split_mbox(bytes: &[u8], each: &mut dyn FnMut(&[u8])) {
    if !bytes.starts_with(b"From ") {
        each(bytes);
        return;
    }
    // A separator is `From <sender> <date>`, ending in the year; a body line that merely starts
    // with "From " (unquoted, as many archives leave it) is not one.
    let is_separator = |at: usize| {
        let line = &bytes[at..];
        let line = String::from_utf8_lossy(&line[..memchr::memchr(b'\n', line).unwrap_or(line.len())]);
        // `From <sender> <weekday> <month> <day> <time> <year>`.
        let words: Vec<&str> = line.split_whitespace().collect();
        words.len() >= 7
            && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&words[2])
            && words
                .last()
                .is_some_and(|year| year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut starts = vec![0];
    starts.extend(
        memchr::memmem::find_iter(bytes, b"\nFrom ")
            .map(|at| at + 1)
            .filter(|&at| is_separator(at)),
    );
    starts.push(bytes.len());
    for window in starts.windows(2) {
        let chunk = &bytes[window[0]..window[1]];
        let body = chunk
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&chunk[..0], |eol| &chunk[eol + 1..]);
        if body.is_empty() {
            continue;
        }
        if memchr::memmem::find(body, b"\n>From ").is_some() {
            let unquoted = body
                .split_inclusive(|&b| b == b'\n')
                .flat_map(|line| {
                    let quoted = line.starts_with(b">") && line.iter().skip_while(|&&b| b == b'>').take(5).eq(b"From ");
                    if quoted { &line[1..] } else { line }
                })
                .copied()
                .collect::<Vec<u8>>();
            each(&unquoted);
        } else {
            each(body);
        }
    }
}

/// The model a running server scores with: the data directory's model file, read again when the
/// file changes (checked at most once a second), so `portcullis train` needs no restart. A file
/// that does not load leaves the model it had.
pub struct LiveModel {
    path: PathBuf,
    state: Mutex<LiveState>,
}

struct LiveState {
    model: Option<Arc<Model>>,
    seen: Option<(SystemTime, u64)>,
    checked: Option<Instant>,
}

impl LiveModel {
    pub fn new(data_dir: &Path) -> LiveModel {
        LiveModel {
            path: data_dir.join(MODEL_FILE),
            state: Mutex::new(LiveState {
                model: None,
                seen: None,
                checked: None,
            }),
        }
    }

    pub fn current(&self) -> Option<Arc<Model>> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.checked.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return state.model.clone();
        }
        state.checked = Some(Instant::now());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp != state.seen {
            state.seen = stamp;
            match stamp.map(|_| Model::load(&self.path)) {
                Some(Ok(model)) => {
                    tracing::info!(path = %self.path.display(), weights = model.weights.len(), "classifier model loaded");
                    state.model = Some(Arc::new(model));
                }
                Some(Err(error)) => tracing::warn!(%error, "classifier model not loaded; keeping the previous one"),
                None => state.model = None,
            }
        }
        state.model.clone()
    }
}

/// The classifier stage: scores the message with the live model. Only a confident answer adds a
/// symbol; between 10% and 90% it adds nothing.
pub struct Classifier {
    model: LiveModel,
}

impl Classifier {
    pub fn new(data_dir: &Path) -> Classifier {
        Classifier {
            model: LiveModel::new(data_dir),
        }
    }
}

/// The symbol for a probability of spam, if the classifier is sure enough to say anything.
pub fn verdict_symbol(p: f64) -> Option<&'static Symbol> {
    Some(match p {
        p if p >= 0.999 => &symbols::CLASSIFIER_SPAM_999,
        p if p >= 0.99 => &symbols::CLASSIFIER_SPAM_99,
        p if p >= 0.9 => &symbols::CLASSIFIER_SPAM_90,
        p if p <= 0.01 => &symbols::CLASSIFIER_HAM_99,
        p if p <= 0.1 => &symbols::CLASSIFIER_HAM_90,
        _ => return None,
    })
}

impl Stage for Classifier {
    fn name(&self) -> &'static str {
        "classifier"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let Some(model) = self.model.current() else {
            return;
        };
        let features = features(context, hits);
        let p = model.probability(&features);
        if let Some(symbol) = verdict_symbol(p) {
            hits.push(Hit::new(
                symbol,
                format!("p(spam)={p:.4} over {} features", features.len()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_survives_its_file_and_refuses_a_damaged_one() {
        let model = Model {
            learner: Learner::Logistic,
            bias: -0.5,
            weights: vec![(3, 1.5), (70, -2.0)],
            trained_on: (10, 20),
        };
        let path = Path::new("m");
        let bytes = model.to_bytes();
        assert_eq!(Model::from_bytes(&bytes, path).unwrap(), model);
        assert!(Model::from_bytes(&bytes[..bytes.len() - 1], path).is_err());
        assert!(Model::from_bytes(b"PCLASS01", path).is_err());
        assert!((model.probability(&[3]) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-6);
    }

    #[test]
    fn words_stay_bounded_and_on_character_boundaries() {
        let mut count = 0;
        words(&"漢字".repeat(50_000), |_| count += 1);
        assert!(count <= MAX_WORDS);
        let mut seen = Vec::new();
        words("naïve résumé", |w| seen.push(w.to_string()));
        assert_eq!(seen, vec!["naïve", "résumé"]);
    }

    #[test]
    fn mbox_files_split_into_messages() {
        let mut found = Vec::new();
        split_mbox(
            b"From a@b Thu Jan 1 00:00:00 2002\nSubject: one\n\n>From here\nFrom 2019 to 2023 we grew\nx\nFrom c@d Thu Jan 1 00:00:00 2002\nSubject: two\n\ny\n",
            &mut |m| found.push(String::from_utf8_lossy(m).into_owned()),
        );
        assert_eq!(
            found,
            vec![
                "Subject: one\n\nFrom here\nFrom 2019 to 2023 we grew\nx\n",
                "Subject: two\n\ny\n"
            ]
        );
        found.clear();
        split_mbox(b"Subject: single\n\nbody\n", &mut |m| {
            found.push(String::from_utf8_lossy(m).into_owned())
        });
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn both_learners_separate_a_toy_corpus() {
        let mut trainer = Trainer::default();
        for i in 0..40u32 {
            trainer.add(vec![1, 2, 100 + i], true);
            trainer.add(vec![3, 4, 200 + i], false);
        }
        for learner in [Learner::Logistic, Learner::Bayes] {
            let model = trainer.fit(learner, 5).unwrap();
            assert!(model.probability(&[1, 2]) > 0.9, "{learner:?}");
            assert!(model.probability(&[3, 4]) < 0.1, "{learner:?}");
        }
        assert!(Trainer::default().fit(Learner::Bayes, 1).is_err());
    }
}
