//! Stages that remember across messages: first contact (a sender none of the recipients has had
//! mail from, Business Email Compromise's usual opening) from the correspondents the store keeps,
//! and near-identical messages (a bulk campaign) from a sliding window of content fingerprints.
//! Both sit behind narrow interfaces ([`Correspondents`], [`DuplicateWindow`]) so a shared store
//! can replace them when several nodes run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::pipeline::symbols::{self, Hit};
use crate::pipeline::{ScanContext, Stage};
use crate::store::{Familiarity, Store};

/// Who has had mail delivered from whom.
pub trait Correspondents: Send + Sync {
    fn familiarity(&self, sender: &str, recipients: &[String]) -> Result<Familiarity, String>;
}

impl Correspondents for Store {
    fn familiarity(&self, sender: &str, recipients: &[String]) -> Result<Familiarity, String> {
        self.correspondents(sender, recipients).map_err(|e| e.to_string())
    }
}

/// First contact: none of the recipients has had mail delivered from this From address before.
/// A weight toward impersonation, never a verdict on its own.
pub struct FirstContact {
    correspondents: Arc<dyn Correspondents>,
}

impl FirstContact {
    pub fn new(correspondents: Arc<dyn Correspondents>) -> FirstContact {
        FirstContact { correspondents }
    }
}

impl Stage for FirstContact {
    fn name(&self) -> &'static str {
        "first-contact"
    }

    fn remembers(&self) -> bool {
        true
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let Some(from) = &context.from else {
            return;
        };
        let recipients = &context.envelope.recipients;
        match self.correspondents.familiarity(&from.address, recipients) {
            // A store that has delivered nothing yet knows nobody: every sender would be new.
            Ok(Familiarity {
                anyone: true,
                known_to: 0,
            }) if !recipients.is_empty() => hits.push(Hit::new(
                &symbols::FIRST_CONTACT,
                format!("no recipient has had mail from {} before", from.address),
            )),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "first contact not checked"),
        }
    }
}

/// Words fewer than this give no fingerprint: short messages look alike without being a campaign.
const MIN_WORDS: usize = 20;
/// Hash functions in a signature, compared in bands of two.
const HASHES: usize = 16;
const BANDS: usize = 8;
/// Counting stops here (the largest campaign symbol's threshold), and each band remembers this many
/// recent messages: one huge campaign costs the same per message as a small one.
const COUNT_CAP: usize = 500;
const BAND_DEPTH: usize = 2 * COUNT_CAP;
/// Signatures agreeing on at least this many hashes are the same message, personalised
/// (an estimated Jaccard similarity of word triples of 0.6 or more).
const SAME: usize = 10;

/// A MinHash signature of the word triples of the visible text, numbers folded: copies of one
/// campaign that differ in a name, a date or a tracking number share most of it.
pub type Signature = [u32; HASHES];

pub fn fingerprint(text: &str) -> Option<Signature> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(2000)
        .map(|w| {
            w.chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect::<String>()
                .to_lowercase()
        })
        .collect();
    if words.len() < MIN_WORDS {
        return None;
    }
    let mut signature = [u32::MAX; HASHES];
    for triple in words.windows(3) {
        let h = crate::classifier::fnv1a(triple.join(" ").bytes());
        for (i, slot) in signature.iter_mut().enumerate() {
            // One hash function per slot: the triple's hash mixed with the slot's own constant.
            let mut x = h ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1));
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            *slot = (*slot).min(x as u32);
        }
    }
    Some(signature)
}

fn same(a: &Signature, b: &Signature) -> bool {
    a.iter().zip(b).filter(|(x, y)| x == y).count() >= SAME
}

/// The signatures of the messages seen in the last `window_secs`, at most `capacity` of them,
/// indexed by bands (near copies agree on at least one band, almost always).
pub struct DuplicateWindow {
    window_secs: i64,
    capacity: usize,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    /// (sequence, arrival, signature), oldest first.
    seen: VecDeque<(u64, i64, Signature)>,
    bands: HashMap<(u8, u64), VecDeque<u64>>,
    next: u64,
}

impl DuplicateWindow {
    pub fn new(window_secs: i64, capacity: usize) -> DuplicateWindow {
        DuplicateWindow {
            window_secs,
            capacity,
            state: Mutex::new(WindowState::default()),
        }
    }

    /// How many near-identical messages arrived in the window (at most 500), then adds this one.
    pub fn count_and_add(&self, signature: &Signature, now: i64) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = &mut *state;
        // The oldest leave first, by time or by room.
        while let Some(&(_, at, _)) = state.seen.front() {
            if at >= now - self.window_secs && state.seen.len() < self.capacity {
                break;
            }
            state.seen.pop_front();
        }
        let oldest_kept = state.seen.front().map_or(state.next, |(sequence, _, _)| *sequence);
        let band = |i: usize| {
            let key = u64::from(signature[2 * i]) << 32 | u64::from(signature[2 * i + 1]);
            (i as u8, key)
        };
        let mut similar = std::collections::HashSet::new();
        for i in 0..BANDS {
            if similar.len() >= COUNT_CAP {
                break;
            }
            if let Some(list) = state.bands.get_mut(&band(i)) {
                while list.front().is_some_and(|sequence| *sequence < oldest_kept) {
                    list.pop_front();
                }
                for sequence in list.iter().rev() {
                    if similar.len() >= COUNT_CAP {
                        break;
                    }
                    let index = (sequence - oldest_kept) as usize;
                    if let Some((_, _, other)) = state.seen.get(index)
                        && same(other, signature)
                    {
                        similar.insert(*sequence);
                    }
                }
            }
        }
        let sequence = state.next;
        state.next += 1;
        state.seen.push_back((sequence, now, *signature));
        for i in 0..BANDS {
            let list = state.bands.entry(band(i)).or_default();
            if list.len() >= BAND_DEPTH {
                list.pop_front();
            }
            list.push_back(sequence);
        }
        // Bands nobody shares any more would otherwise pile up.
        // Amortised: only once twice the live keys have piled up, so a full window does not walk
        // every band on every message.
        if state.bands.len() > 2 * self.capacity * BANDS {
            state.bands.retain(|_, list| {
                while list.front().is_some_and(|sequence| *sequence < oldest_kept) {
                    list.pop_front();
                }
                !list.is_empty()
            });
        }
        similar.len()
    }
}

/// Signatures kept: about 40 MB of bands at most; past this many messages a day the window is
/// shorter than a day.
const WINDOW_CAPACITY: usize = 50_000;

/// Near-identical messages seen recently: a campaign, whatever its headers claim. Adds to the
/// bulk score, so to the bulk complaint level.
pub struct Campaigns {
    window: DuplicateWindow,
}

impl Campaigns {
    pub fn new(window_secs: i64) -> Campaigns {
        Campaigns {
            window: DuplicateWindow::new(window_secs, WINDOW_CAPACITY),
        }
    }
}

impl Stage for Campaigns {
    fn name(&self) -> &'static str {
        "campaigns"
    }

    fn remembers(&self) -> bool {
        true
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let Some(signature) = fingerprint(&context.content.text) else {
            return;
        };
        let similar = self.window.count_and_add(&signature, context.envelope.received_at);
        let symbol = match similar {
            n if n >= 500 => &symbols::BULK_SIMILAR_500,
            n if n >= 50 => &symbols::BULK_SIMILAR_50,
            n if n >= 5 => &symbols::BULK_SIMILAR_5,
            _ => return,
        };
        hits.push(Hit::new(symbol, format!("{similar} near-identical messages recently")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(name: &str, order: u32) -> String {
        format!(
            "Dear {name}, your exclusive member offer number {order} is waiting. This week only, every item in \
             our spring collection is forty percent off, with free delivery on orders over fifty pounds. \
             Visit our store today and use your personal code at checkout before Sunday."
        )
    }

    #[test]
    fn personalised_copies_are_the_same_and_other_text_is_not() {
        let names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"];
        let first = fingerprint(&campaign(names[0], 1234)).unwrap();
        for (i, name) in names.iter().enumerate().skip(1) {
            let copy = fingerprint(&campaign(name, 98765 + i as u32 * 7)).unwrap();
            assert!(same(&first, &copy), "{name}");
        }
        let other = fingerprint(
            "Hi team, the quarterly review moved to Thursday afternoon. Please bring the updated budget \
             figures and the draft roadmap so we can agree the priorities for next quarter before the board.",
        )
        .unwrap();
        assert!(!same(&first, &other));
        assert_eq!(fingerprint("too short to say"), None);
    }

    #[test]
    fn the_window_counts_near_copies_and_forgets_old_ones() {
        let window = DuplicateWindow::new(60, 1000);
        for i in 0..6 {
            let copy = fingerprint(&campaign(["Ann", "Bo"][i % 2], i as u32)).unwrap();
            assert_eq!(window.count_and_add(&copy, 100 + i as i64), i);
        }
        let other = fingerprint(&"lorem ipsum dolor sit amet ".repeat(10)).unwrap();
        assert_eq!(window.count_and_add(&other, 110), 0);
        // Past the window, the campaign is forgotten.
        let again = fingerprint(&campaign("Ann", 7)).unwrap();
        assert_eq!(window.count_and_add(&again, 1000), 0);
        // One huge campaign: counting stops at the cap, so each copy costs the same.
        let big = DuplicateWindow::new(3600, 10_000);
        for i in 0..1200 {
            assert_eq!(big.count_and_add(&again, 5000), i.min(COUNT_CAP));
        }
        let small = DuplicateWindow::new(60, 3);
        for i in 0..10 {
            assert!(small.count_and_add(&again, i) <= 2);
        }
    }
}
