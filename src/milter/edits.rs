//! What turns the message the MTA holds into the copy the pipeline rendered, in the only terms a
//! milter has: header fields changed, deleted or inserted, recipients added or deleted, the body
//! replaced. The header block is compared field by field (longest common subsequence), so
//! whatever the renderer did — forged fields removed, a subject prefixed, our fields stamped and
//! sealed on top — comes out as the smallest set of edits.

/// One header field as the MTA sent it: the name, and the value as written after the colon
/// (leading space included, continuation lines joined with CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Field {
    fn same(&self, other: &Field) -> bool {
        self.name.eq_ignore_ascii_case(&other.name) && self.value == other.value
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace the `occurrence`-th (1-based) field of this name; an empty value deletes it.
    Change {
        name: Vec<u8>,
        occurrence: u32,
        value: Vec<u8>,
    },
    /// Insert at `index` (0: the top) of the header block.
    Insert { index: u32, name: Vec<u8>, value: Vec<u8> },
    /// Append at the end of the header block.
    Append { name: Vec<u8>, value: Vec<u8> },
}

/// Past this many cells the middle of the two blocks is not compared field by field (the
/// comparison is quadratic): every field there is deleted and written again, which is correct,
/// only longer. The milter refuses messages with more than 1,000 fields before it gets here.
const MAX_COMPARED_CELLS: usize = 4_000_000;

/// Splits a header block (up to, not including, the empty line) into fields.
pub fn fields(block: &[u8]) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        if matches!(content.first(), Some(b' ' | b'\t')) {
            if let Some(last) = fields.last_mut() {
                last.value.extend_from_slice(b"\r\n");
                last.value.extend_from_slice(content);
            }
            continue;
        }
        if let Some(colon) = memchr::memchr(b':', content) {
            fields.push(Field {
                name: content[..colon].to_vec(),
                value: content[colon + 1..].to_vec(),
            });
        }
    }
    fields
}

/// The header edits that turn `original` into `rendered`. Deletions and in-place changes come
/// first, highest occurrence first (so whether the MTA renumbers after a deletion does not
/// matter), then insertions on top, then appends.
pub fn header_edits(original: &[Field], rendered: &[Field]) -> Vec<HeaderEdit> {
    enum Step {
        Keep,
        Delete(usize),
        Insert(usize),
    }
    // Each field hashed once; equal hashes are confirmed byte for byte.
    let hash = |field: &Field| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = HASHER.with(|state| state.build_hasher());
        hasher.write(&field.name.to_ascii_lowercase());
        hasher.write_u8(0);
        hasher.write(&field.value);
        hasher.finish()
    };
    let (left, right): (Vec<u64>, Vec<u64>) =
        (original.iter().map(hash).collect(), rendered.iter().map(hash).collect());
    let same = |i: usize, j: usize| left[i] == right[j] && original[i].same(&rendered[j]);
    // The renderer changes little: what both blocks start and end with is kept as it is.
    let (n, m) = (original.len(), rendered.len());
    let mut head = 0;
    while head < n && head < m && same(head, head) {
        head += 1;
    }
    let mut tail = 0;
    while tail < n - head && tail < m - head && same(n - 1 - tail, m - 1 - tail) {
        tail += 1;
    }
    let (rows, columns) = (n - head - tail, m - head - tail);
    let mut steps: Vec<Step> = (0..head).map(|_| Step::Keep).collect();
    if rows.saturating_mul(columns) > MAX_COMPARED_CELLS {
        steps.extend((head..head + rows).map(Step::Delete));
        steps.extend((head..head + columns).map(Step::Insert));
    } else {
        // lcs[i][j]: the longest common run of the middles from i and j on.
        let width = columns + 1;
        let mut lcs = vec![0u16; (rows + 1) * width];
        for i in (0..rows).rev() {
            for j in (0..columns).rev() {
                lcs[i * width + j] = if same(head + i, head + j) {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < rows || j < columns {
            if i < rows && j < columns && same(head + i, head + j) {
                steps.push(Step::Keep);
                i += 1;
                j += 1;
            } else if j < columns && (i == rows || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j]) {
                steps.push(Step::Insert(head + j));
                j += 1;
            } else {
                steps.push(Step::Delete(head + i));
                i += 1;
            }
        }
    }
    steps.extend((0..tail).map(|_| Step::Keep));

    // A deletion and an insertion of the same name with no kept field between them is a change
    // in place (a prefixed subject keeps its position). Each run between kept fields is settled
    // when the next kept field (or the end, a last `Keep`) comes.
    let mut deleted: Vec<usize> = Vec::new();
    let mut changes: Vec<(usize, usize)> = Vec::new(); // (original, rendered)
    let mut inserted_top: Vec<usize> = Vec::new();
    let mut appended: Vec<usize> = Vec::new();
    let mut seen_kept = false;
    let mut pending_inserts: Vec<usize> = Vec::new();
    let mut run_deletions: Vec<usize> = Vec::new();
    for step in steps.into_iter().chain(std::iter::once(Step::Keep)) {
        match step {
            Step::Keep => {
                // Paired from the end, in order: fields stamped on top come before the ones
                // changed in place, so only a tail of the insertions can be changes, each at a
                // deletion after the one the insertion before it took. The rest goes on top (or,
                // after a kept field, at the end).
                let mut paired_limit = run_deletions.len();
                let mut unpaired_until = pending_inserts.len();
                for (k, &insert) in pending_inserts.iter().enumerate().rev() {
                    let pair = run_deletions[..paired_limit]
                        .iter()
                        .rposition(|&d| original[d].name.eq_ignore_ascii_case(&rendered[insert].name));
                    match pair {
                        Some(at) => {
                            changes.push((run_deletions[at], insert));
                            run_deletions[at] = usize::MAX;
                            paired_limit = at;
                            unpaired_until = k;
                        }
                        None => break,
                    }
                }
                run_deletions.retain(|&d| d != usize::MAX);
                let unpaired = pending_inserts.drain(..).take(unpaired_until);
                if seen_kept {
                    appended.extend(unpaired);
                } else {
                    inserted_top.extend(unpaired);
                }
                deleted.append(&mut run_deletions);
                seen_kept = true;
            }
            Step::Delete(i) => run_deletions.push(i),
            Step::Insert(j) => pending_inserts.push(j),
        }
    }

    let occurrence = |index: usize| -> u32 {
        original[..=index]
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case(&original[index].name))
            .count() as u32
    };
    let mut in_place: Vec<HeaderEdit> = changes
        .iter()
        .map(|&(i, j)| (i, rendered[j].value.clone()))
        .chain(deleted.iter().map(|&i| (i, Vec::new())))
        .map(|(i, value)| HeaderEdit::Change {
            name: original[i].name.clone(),
            occurrence: occurrence(i),
            value,
        })
        .collect();
    in_place.sort_by(|a, b| match (a, b) {
        (
            HeaderEdit::Change {
                name: a, occurrence: x, ..
            },
            HeaderEdit::Change {
                name: b, occurrence: y, ..
            },
        ) => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()).then(y.cmp(x)),
        _ => std::cmp::Ordering::Equal,
    });
    let mut edits = in_place;
    edits.extend(
        inserted_top
            .iter()
            .enumerate()
            .map(|(position, &j)| HeaderEdit::Insert {
                index: position as u32,
                name: rendered[j].name.clone(),
                value: rendered[j].value.clone(),
            }),
    );
    edits.extend(appended.iter().map(|&j| HeaderEdit::Append {
        name: rendered[j].name.clone(),
        value: rendered[j].value.clone(),
    }));
    edits
}

thread_local! {
    static HASHER: std::collections::hash_map::RandomState = std::collections::hash_map::RandomState::new();
}

/// Splits a rendered message into its header block (without the empty line) and its body.
pub fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&str, &str)]) -> Vec<Field> {
        fields
            .iter()
            .map(|(name, value)| Field {
                name: name.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn stamping_stripping_and_prefixing_become_the_fewest_edits() {
        let original = block(&[
            ("Received", " from a"),
            ("X-Portcullis-Verdict", " forged"),
            ("Subject", " hello"),
            ("From", " a@b.test"),
        ]);
        let rendered = block(&[
            ("ARC-Seal", " i=1"),
            ("X-Portcullis-Verdict", " deliver"),
            ("Received", " from a"),
            ("Subject", " [EXT] hello"),
            ("From", " a@b.test"),
        ]);
        let edits = header_edits(&original, &rendered);
        assert_eq!(
            edits,
            vec![
                HeaderEdit::Change {
                    name: b"Subject".to_vec(),
                    occurrence: 1,
                    value: b" [EXT] hello".to_vec()
                },
                HeaderEdit::Change {
                    name: b"X-Portcullis-Verdict".to_vec(),
                    occurrence: 1,
                    value: Vec::new()
                },
                HeaderEdit::Insert {
                    index: 0,
                    name: b"ARC-Seal".to_vec(),
                    value: b" i=1".to_vec()
                },
                HeaderEdit::Insert {
                    index: 1,
                    name: b"X-Portcullis-Verdict".to_vec(),
                    value: b" deliver".to_vec()
                },
            ]
        );
        assert!(header_edits(&original, &original).is_empty());
    }

    #[test]
    fn a_huge_header_block_still_loses_its_forged_fields() {
        let mut original = block(&[("X-Portcullis-Spam-Flag", " forged")]);
        original.extend((0..3000).map(|i| Field {
            name: b"X".to_vec(),
            value: format!(" {i}").into_bytes(),
        }));
        let mut rendered = block(&[("X-Portcullis-Spam-Flag", " NO")]);
        rendered.extend(original[1..].iter().cloned());
        let edits = header_edits(&original, &rendered);
        assert_eq!(
            edits,
            vec![HeaderEdit::Change {
                name: b"X-Portcullis-Spam-Flag".to_vec(),
                occurrence: 1,
                value: b" NO".to_vec()
            }]
        );
    }

    #[test]
    fn repeated_fields_are_deleted_from_the_last_occurrence_up() {
        let original = block(&[("A", " 1"), ("X", " forged"), ("A", " 2"), ("X", " forged too")]);
        let rendered = block(&[("A", " 1"), ("A", " 2")]);
        let edits = header_edits(&original, &rendered);
        let occurrences: Vec<u32> = edits
            .iter()
            .map(|edit| match edit {
                HeaderEdit::Change { occurrence, .. } => *occurrence,
                _ => 0,
            })
            .collect();
        assert_eq!(occurrences, vec![2, 1]);
    }

    #[test]
    fn folded_fields_round_trip() {
        let parsed = fields(b"Subject: one\r\n two\r\nFrom: a@b\r\n");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].value, b" one\r\n two");
        let (head, body) = split_message(b"A: 1\r\nB: 2\r\n\r\nbody\r\n");
        assert_eq!(head, b"A: 1\r\nB: 2\r\n");
        assert_eq!(body, b"body\r\n");
    }

    /// Applies edits as Postfix's cleanup does: a change or deletion finds the n-th field of that
    /// name among the fields left, an insertion goes at that position, an append at the end.
    fn apply(original: &[Field], edits: &[HeaderEdit]) -> Vec<Field> {
        let mut fields = original.to_vec();
        for edit in edits {
            match edit {
                HeaderEdit::Change {
                    name,
                    occurrence,
                    value,
                } => {
                    let at = fields
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.name.eq_ignore_ascii_case(name))
                        .nth(*occurrence as usize - 1)
                        .map(|(at, _)| at)
                        .expect("the field an edit names exists");
                    if value.is_empty() {
                        fields.remove(at);
                    } else {
                        fields[at].value = value.clone();
                    }
                }
                HeaderEdit::Insert { index, name, value } => fields.insert(
                    (*index as usize).min(fields.len()),
                    Field {
                        name: name.clone(),
                        value: value.clone(),
                    },
                ),
                HeaderEdit::Append { name, value } => fields.push(Field {
                    name: name.clone(),
                    value: value.clone(),
                }),
            }
        }
        fields
    }

    proptest::proptest! {
        /// Whatever the renderer does of the kinds it does — fields stripped, a value changed in
        /// place, fields stamped on top — the edits, applied as the MTA applies them, give exactly
        /// the rendered block; repeated names included.
        #[test]
        fn edits_applied_by_the_mta_give_the_rendered_block(
            names in proptest::collection::vec(0u8..5, 0..40),
            fate in proptest::collection::vec(0u8..6, 40),
            stamped in proptest::collection::vec(0u8..5, 0..6),
        ) {
            let name = |n: u8| format!("N{n}").into_bytes();
            let original: Vec<Field> = names
                .iter()
                .enumerate()
                .map(|(i, &n)| Field { name: name(n), value: format!(" v{i}").into_bytes() })
                .collect();
            let mut rendered: Vec<Field> = stamped
                .iter()
                .enumerate()
                .map(|(i, &n)| Field { name: name(n), value: format!(" ours{i}").into_bytes() })
                .collect();
            for (i, field) in original.iter().enumerate() {
                match fate[i] {
                    0 => {}
                    1 => rendered.push(Field { name: field.name.clone(), value: b" changed".to_vec() }),
                    _ => rendered.push(field.clone()),
                }
            }
            let edits = header_edits(&original, &rendered);
            proptest::prop_assert_eq!(apply(&original, &edits), rendered);
        }

        /// Any bytes as a packet: parsed or refused, never a panic.
        #[test]
        fn any_packet_parses_or_is_refused(
            code in proptest::sample::select(b"OCDHMRTLNBEAQKUZ".to_vec()),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut packet = vec![code];
            packet.extend(rest);
            let _ = super::super::protocol::parse(&packet);
        }
    }
}
