//! Redaction of secrets from a stream of step output: every occurrence of a
//! registered secret is replaced with `***`, including occurrences that are split
//! across the chunks in which the output arrives.
//!
//! This module owns the matching and the buffering needed to mask across chunk
//! boundaries. Deciding what is a secret (job secrets, `::add-mask::` values) and
//! where the masked text goes is the caller's business.
//!
//! The result follows the official runner's `SecretMasker` (actions/runner): all
//! occurrences of all secrets are found, including overlapping ones; occurrences
//! that overlap or touch are merged; and each merged stretch becomes a single
//! `***`. So with the secrets `abc` and `cde`, `xabcdex` becomes `x***x`, and
//! `secretsecret` becomes `***`. This covers the "longest match wins" rule and more:
//! no byte of any occurrence is ever shown, so a shorter secret cannot leave part of
//! a longer, overlapping one visible.
//!
//! Matching uses an Aho-Corasick automaton built over the bytes of all secrets, so
//! each byte of output is examined a constant number of times (amortised) however
//! many secrets there are. The automaton also tells how much of the output's tail
//! could still be the start of a secret, which is exactly what has to be held back.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use thiserror::Error;

/// The most distinct values a [`Masker`] holds, counting each line of a multi-line
/// secret as a value of its own.
pub const SECRETS_MAX: usize = 1024;

/// The most bytes all values held by a [`Masker`] may add up to.
///
/// This also bounds the output held back between chunks, which is always shorter
/// than the longest secret, and the matcher's memory, which in the worst case is
/// around a hundred bytes per byte of secret.
pub const SECRET_BYTES_MAX: usize = 1024 * 1024;

/// What every masked stretch of output is replaced with.
const MASK: &str = "***";

/// Why a [`Masker`] refused a secret.
///
/// When this happens the secret is not masked at all, so the caller should treat it
/// as fatal for the job (or at least refuse to show its output).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaskError {
    /// Adding the secret would exceed [`SECRETS_MAX`] values.
    #[error("cannot mask more than {max} distinct secret values; pass fewer secrets to the job")]
    TooManySecrets {
        /// The limit that would have been exceeded.
        max: usize,
    },
    /// Adding the secret would exceed [`SECRET_BYTES_MAX`] bytes of secrets.
    #[error("cannot mask more than {max} bytes of secrets in total; pass fewer or shorter secrets to the job")]
    TooManyBytes {
        /// The limit that would have been exceeded.
        max: usize,
    },
}

/// Masks secrets in a stream of text.
///
/// Feed the output with [`push`](Self::push) and end the stream with
/// [`finish`](Self::finish); concatenating what they return gives the same text
/// however the stream was cut into chunks. The `Debug` output shows only counts,
/// never secrets or held-back text.
pub struct Masker {
    /// Every value to mask, so that duplicates are ignored and the automaton can be
    /// rebuilt when a value is added.
    secrets: BTreeSet<String>,
    /// The total length of `secrets` in bytes.
    secret_bytes: usize,
    /// The matcher for `secrets`, unless `stale` says it is out of date.
    automaton: Automaton,
    /// Whether secrets were added since `automaton` was built. Rebuilding only
    /// when output arrives keeps a burst of additions (such as all of a job's
    /// secrets at start-up) down to one rebuild.
    stale: bool,
    /// The automaton's state after the last byte of `pending`.
    state: usize,
    /// Output received but not returned yet, starting at `pending[start..]`; the
    /// bytes before `start` are kept only until the next compaction.
    pending: String,
    /// Where the not-yet-returned part of `pending` begins.
    start: usize,
    /// The merged stretches of `pending` to mask, as sorted, disjoint, non-touching
    /// byte ranges. They begin at or after `start`, except the first one if `open`.
    ranges: Vec<(usize, usize)>,
    /// Whether the first range's `***` was already returned. This happens when a
    /// masked stretch reaches the held-back tail: its start is certain, but a later
    /// occurrence could still extend it, so it must stay mergeable.
    open: bool,
}

impl Default for Masker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .field("secret_bytes", &self.secret_bytes)
            .field("held_back_bytes", &(self.pending.len() - self.start))
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// Creates a masker with no secrets, which passes text through unchanged.
    pub fn new() -> Self {
        Self {
            secrets: BTreeSet::new(),
            secret_bytes: 0,
            automaton: Automaton::new(std::iter::empty()),
            stale: false,
            state: ROOT,
            pending: String::new(),
            start: 0,
            ranges: Vec::new(),
            open: false,
        }
    }

    /// Registers a secret, to be masked in all output not yet returned.
    ///
    /// Any non-blank value is masked, however short, as GitHub's runner does: a
    /// minimum length would leak short secrets, and a one-character secret garbling
    /// the log is a visible, fixable problem, while a leak is neither. Blank values
    /// (empty or only whitespace) are ignored, because masking whitespace would
    /// garble every line and the runner refuses them for `::add-mask::` and trims job
    /// secrets.
    ///
    /// A value containing line breaks is also masked line by line (each line trimmed,
    /// blank lines skipped), as the runner does for job secrets, because programs
    /// often print such a value one line at a time or re-indent it.
    ///
    /// Either all values derived from `secret` are added or, on error, none is.
    pub fn add(&mut self, secret: &str) -> Result<(), MaskError> {
        let mut values: BTreeSet<&str> = BTreeSet::new();
        if !secret.trim().is_empty() {
            values.insert(secret);
        }
        if secret.contains(['\r', '\n']) {
            values.extend(secret.split(['\r', '\n']).map(str::trim).filter(|line| !line.is_empty()));
        }
        values.retain(|value| !self.secrets.contains(*value));
        if values.is_empty() {
            return Ok(());
        }

        if self.secrets.len() + values.len() > SECRETS_MAX {
            return Err(MaskError::TooManySecrets { max: SECRETS_MAX });
        }
        let bytes: usize = values.iter().map(|value| value.len()).sum();
        if self.secret_bytes + bytes > SECRET_BYTES_MAX {
            return Err(MaskError::TooManyBytes { max: SECRET_BYTES_MAX });
        }

        self.secrets.extend(values.into_iter().map(str::to_owned));
        self.secret_bytes += bytes;
        self.stale = true;
        Ok(())
    }

    /// Adds `chunk` to the stream and returns the masked text that is now certain.
    ///
    /// Only the shortest tail that could still be the start of a secret is held
    /// back, so the delay is less than the longest secret's length. A `***` may be
    /// returned before the end of the secret it hides has arrived. The returned text
    /// always ends on a character boundary, because secrets and chunks are whole
    /// UTF-8 strings and so every match and every held-back tail starts on one.
    pub fn push(&mut self, chunk: &str) -> String {
        self.refresh();
        if self.automaton.is_empty() && self.start == self.pending.len() {
            // With no secrets nothing is ever held back, so skip the copying.
            return chunk.to_owned();
        }

        let base = self.pending.len();
        self.pending.push_str(chunk);
        for (offset, byte) in chunk.bytes().enumerate() {
            self.state = self.automaton.next_state(self.state, byte);
            let length = self.automaton.match_len(self.state);
            if length > 0 {
                let end = base + offset + 1;
                self.add_range(end.saturating_sub(length), end);
            }
        }

        let held_back = self.automaton.hold(self.state);
        let cut = self.pending.len().saturating_sub(held_back).max(self.start);
        self.emit(cut, false)
    }

    /// Ends the stream and returns the rest of it, masked.
    ///
    /// The masker keeps its secrets and can be used for a new stream afterwards.
    pub fn finish(&mut self) -> String {
        self.refresh();
        let output = self.emit(self.pending.len(), true);
        self.state = ROOT;
        self.pending.clear();
        self.start = 0;
        self.ranges.clear();
        self.open = false;
        output
    }

    /// Rebuilds the automaton if secrets were added, and rescans the held-back text
    /// with it so that new secrets are found there too.
    fn refresh(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        self.automaton = Automaton::new(self.secrets.iter().map(String::as_str));

        // The new automaton's states mean nothing to the old one, so the state is
        // recomputed from the held-back text. Text already returned cannot be
        // rescanned, which is why a new secret only applies from the held-back
        // text on.
        self.state = ROOT;
        let mut found = Vec::new();
        for (offset, byte) in self.pending.bytes().enumerate().skip(self.start) {
            self.state = self.automaton.next_state(self.state, byte);
            let length = self.automaton.match_len(self.state);
            if length > 0 {
                found.push((offset + 1 - length, offset + 1));
            }
        }
        if found.is_empty() {
            return;
        }

        // Found ranges can end before existing ones, so merge by sorting instead
        // of with `add_range`. The open range, if any, starts before every found
        // range and so stays first (and open) after merging.
        found.append(&mut self.ranges);
        found.sort_unstable();
        for (start, end) in found {
            match self.ranges.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => self.ranges.push((start, end)),
            }
        }
    }

    /// Records that `pending[start..end]` must be masked, merging it with the
    /// ranges it overlaps or touches. `end` must not be before any recorded end,
    /// which holds because matches are reported in the order they end.
    fn add_range(&mut self, mut start: usize, mut end: usize) {
        while let Some(&(last_start, last_end)) = self.ranges.last() {
            if start > last_end {
                break;
            }
            start = start.min(last_start);
            end = end.max(last_end);
            self.ranges.pop();
        }
        // If the open range was merged away, the merged range takes its place as
        // the first range and inherits its openness, which is what `open` says.
        self.ranges.push((start, end));
    }

    /// Returns the masked text of `pending[self.start..cut]` and moves `start` on.
    ///
    /// No occurrence found later can begin before `cut`. A range that begins before
    /// `cut` is therefore certain to be masked and its `***` is returned now; if it
    /// reaches `cut`, a later occurrence may still extend it, so it is kept open.
    /// With `finishing`, nothing can come later and everything is returned.
    fn emit(&mut self, cut: usize, finishing: bool) -> String {
        let mut output = String::with_capacity(cut.saturating_sub(self.start) + MASK.len());
        let mut position = self.start;
        let mut done = 0;
        let mut still_open = false;
        for (index, &(start, end)) in self.ranges.iter().enumerate() {
            let already_returned = index == 0 && self.open;
            if !already_returned {
                if start >= cut {
                    break;
                }
                push_raw(&mut output, &self.pending, position, start);
                output.push_str(MASK);
            }
            position = position.max(end);
            if !finishing && end >= cut {
                still_open = true;
                break;
            }
            done += 1;
        }
        if position < cut {
            push_raw(&mut output, &self.pending, position, cut);
        }

        self.ranges.drain(..done);
        self.open = still_open;
        self.start = position.max(cut);
        self.compact();
        output
    }

    /// Drops returned text from `pending` once it makes up at least half of it, so
    /// that the cost of moving the held-back tail is amortised over the bytes
    /// returned, even when chunks are tiny.
    fn compact(&mut self) {
        if self.start == 0 || self.start < self.pending.len() / 2 {
            return;
        }
        if self.pending.is_char_boundary(self.start) {
            self.pending.drain(..self.start);
        } else {
            // Matches and held-back tails always start on character boundaries, so
            // this cannot happen; if it did, dropping the text fails safe.
            debug_assert!(false, "held-back text does not start on a character boundary");
            self.pending.clear();
        }
        for range in &mut self.ranges {
            range.0 = range.0.saturating_sub(self.start);
            range.1 = range.1.saturating_sub(self.start);
        }
        self.start = 0;
    }
}

/// Appends `text[from..to]` to `output`.
///
/// The bounds are always character boundaries (see [`Masker::push`]). Should that
/// ever be wrong, the stretch is masked instead of panicking, so that a bug hides
/// text rather than revealing a secret or killing the worker.
fn push_raw(output: &mut String, text: &str, from: usize, to: usize) {
    match text.get(from..to) {
        Some(raw) => output.push_str(raw),
        None => {
            debug_assert!(false, "unmasked text {from}..{to} is not on character boundaries");
            output.push_str(MASK);
        }
    }
}

/// The index of the automaton's root state, which stands for "no secret begins here".
const ROOT: usize = 0;

/// An Aho-Corasick automaton over the bytes of the secrets.
///
/// Each state stands for a prefix of some secret: the longest one that is a suffix
/// of the text read so far. It deliberately has no `Debug` implementation, since its
/// states spell out the secrets.
struct Automaton {
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    /// Transitions to longer prefixes, sorted by byte for binary search.
    children: Vec<(u8, usize)>,
    /// The state for the longest proper suffix of this prefix that is also a prefix.
    fail: usize,
    /// The length of this prefix.
    depth: usize,
    /// The length of the longest secret that ends here, that is, which is a suffix
    /// of this prefix; zero if none.
    match_len: usize,
    /// The length of the longest suffix of this prefix that is a proper prefix of
    /// a secret, and could thus grow into an occurrence with more text.
    hold: usize,
}

impl Automaton {
    fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut nodes = vec![Node::default()];
        for secret in secrets {
            let mut node = ROOT;
            for &byte in secret.as_bytes() {
                node = match find_child(&nodes[node].children, byte) {
                    Ok(child) => child,
                    Err(slot) => {
                        let child = nodes.len();
                        let depth = nodes[node].depth + 1;
                        nodes.push(Node { depth, ..Node::default() });
                        nodes[node].children.insert(slot, (byte, child));
                        child
                    }
                };
            }
            nodes[node].match_len = secret.len();
        }

        // Visiting states in breadth-first order means that every shorter state is
        // complete (fail link and all) before a longer one is: a state's fail link
        // is set when its parent is visited, from states that are shorter still,
        // and the state is completed from its fail target, which is shorter too.
        let mut queue = VecDeque::from([ROOT]);
        while let Some(node) = queue.pop_front() {
            complete_node(&mut nodes, node);
            for index in 0..nodes[node].children.len() {
                let (byte, child) = nodes[node].children[index];
                // Stepping from the root would find the child itself, so the root's
                // children fall back to the root directly.
                nodes[child].fail = if node == ROOT { ROOT } else { Self::step(&nodes, nodes[node].fail, byte) };
                queue.push_back(child);
            }
        }
        Self { nodes }
    }

    /// Whether there are no secrets at all.
    fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The state after reading `byte` in `state`.
    fn next_state(&self, state: usize, byte: u8) -> usize {
        Self::step(&self.nodes, state, byte)
    }

    /// The length of the longest secret that ends at the byte that led to `state`.
    fn match_len(&self, state: usize) -> usize {
        self.nodes[state].match_len
    }

    /// How many bytes at the end of the text read so far could still be the start
    /// of a secret when the automaton is in `state`.
    fn hold(&self, state: usize) -> usize {
        self.nodes[state].hold
    }

    /// Follows fail links until `byte` can extend the prefix, or the root is reached.
    fn step(nodes: &[Node], mut state: usize, byte: u8) -> usize {
        loop {
            if let Ok(child) = find_child(&nodes[state].children, byte) {
                return child;
            }
            if state == ROOT {
                return ROOT;
            }
            state = nodes[state].fail;
        }
    }
}

/// Finds the child for `byte`, or the slot where it would be inserted.
fn find_child(children: &[(u8, usize)], byte: u8) -> Result<usize, usize> {
    children.binary_search_by_key(&byte, |&(child_byte, _)| child_byte).map(|index| children[index].1)
}

/// Fills in `match_len` and `hold` of `node` from its fail target, which must be
/// complete already.
fn complete_node(nodes: &mut [Node], node: usize) {
    let fail = nodes[node].fail;
    let (inherited_match, inherited_hold) =
        if node == ROOT { (0, 0) } else { (nodes[fail].match_len, nodes[fail].hold) };
    let this = &mut nodes[node];
    this.match_len = this.match_len.max(inherited_match);
    this.hold = if this.children.is_empty() { inherited_hold } else { this.depth };
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    /// Masks `text` the way the runner's `SecretMasker` does, as the reference the
    /// streaming implementation must agree with: find every occurrence of every
    /// secret, merge those that overlap or touch, and replace each with `***`.
    fn reference_mask(secrets: &[&str], text: &str) -> String {
        let mut positions: Vec<(usize, usize)> = Vec::new();
        for secret in secrets.iter().copied().filter(|secret| !secret.is_empty()) {
            for start in 0..text.len() {
                if text.as_bytes()[start..].starts_with(secret.as_bytes()) {
                    positions.push((start, start + secret.len()));
                }
            }
        }
        positions.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (start, end) in positions {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let mut output = String::new();
        let mut position = 0;
        for (start, end) in merged {
            output.push_str(&text[position..start]);
            output.push_str(MASK);
            position = end;
        }
        output.push_str(&text[position..]);
        output
    }

    fn masker(secrets: &[&str]) -> Masker {
        let mut masker = Masker::new();
        for secret in secrets {
            masker.add(secret).expect("secret within limits");
        }
        masker
    }

    /// Pushes `chunks` into a masker with `secrets` and returns everything it returns.
    fn mask_chunks(secrets: &[&str], chunks: &[&str]) -> String {
        let mut masker = masker(secrets);
        let mut output: String = chunks.iter().map(|chunk| masker.push(chunk)).collect();
        output.push_str(&masker.finish());
        output
    }

    /// Checks every way of cutting `text` into two and three chunks, plus `rounds`
    /// random cuttings, against the reference.
    fn check_chunkings(secrets: &[&str], text: &str, seed: u64, rounds: usize) {
        let expected = reference_mask(secrets, text);
        assert_eq!(mask_chunks(secrets, &[text]), expected, "one chunk, secrets {secrets:?}, text {text:?}");
        for secret in secrets.iter().filter(|secret| !secret.trim().is_empty()) {
            assert!(!expected.contains(secret), "secret {secret:?} visible in {expected:?}");
        }

        let boundaries: Vec<usize> = (0..=text.len()).filter(|&index| text.is_char_boundary(index)).collect();
        for (i, &first) in boundaries.iter().enumerate() {
            let two = [&text[..first], &text[first..]];
            assert_eq!(mask_chunks(secrets, &two), expected, "chunks {two:?}, secrets {secrets:?}");
            if text.len() <= 48 {
                for &second in &boundaries[i..] {
                    let three = [&text[..first], &text[first..second], &text[second..]];
                    assert_eq!(mask_chunks(secrets, &three), expected, "chunks {three:?}, secrets {secrets:?}");
                }
            }
        }

        let mut random = Lcg(seed);
        for _ in 0..rounds {
            let chunks = random.chunking(text);
            assert_eq!(mask_chunks(secrets, &chunks), expected, "chunks {chunks:?}, secrets {secrets:?}");
        }
    }

    /// A linear congruential generator, good enough to vary test inputs
    /// reproducibly without a dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, bound: usize) -> usize {
            usize::try_from(self.next()).expect("31-bit value fits") % bound
        }

        /// Cuts `text` into chunks of 0 to 7 characters, empty chunks included.
        fn chunking<'a>(&mut self, text: &'a str) -> Vec<&'a str> {
            let mut chunks = Vec::new();
            let mut rest = text;
            while !rest.is_empty() {
                let characters = self.below(8);
                let length = rest.char_indices().nth(characters).map_or(rest.len(), |(index, _)| index);
                let (chunk, tail) = rest.split_at(length);
                chunks.push(chunk);
                rest = tail;
            }
            chunks
        }

        fn string(&mut self, alphabet: &[char], max_chars: usize) -> String {
            let length = self.below(max_chars + 1);
            (0..length).map(|_| alphabet[self.below(alphabet.len())]).collect()
        }
    }

    #[test]
    fn masks_whole_texts() {
        let cases: &[(&str, &[&str], &str, &str)] = &[
            ("no secrets", &[], "nothing to hide", "nothing to hide"),
            ("empty text", &["secret"], "", ""),
            ("one occurrence", &["hunter2"], "password is hunter2!", "password is ***!"),
            ("several occurrences", &["tok"], "tok and tok", "*** and ***"),
            ("touching occurrences merge", &["secret"], "secretsecret", "***"),
            ("separated occurrences stay apart", &["secret"], "secret secret", "*** ***"),
            ("overlapping occurrences of one secret", &["aba"], "xababax", "x***x"),
            ("overlapping secrets", &["abc", "cde"], "xabcdex", "x***x"),
            ("secret inside a longer one", &["bc", "abcd"], "abcd bc", "*** ***"),
            ("prefix of a longer secret", &["ab", "abcd"], "ab abc abcd", "*** ***c ***"),
            ("partial secret is shown", &["secret"], "secre", "secre"),
            ("case matters", &["Secret"], "secret SECRET Secret", "secret SECRET ***"),
            ("single character secret", &["x"], "x marks the box", "*** marks the bo***"),
            ("utf-8 secret", &["pässwörd"], "my pässwörd!", "my ***!"),
            ("emoji secret", &["🔑key"], "🔑🔑key🔑", "🔑***🔑"),
            ("secret next to utf-8", &["ab"], "éabé", "é***é"),
            ("secret that is a utf-8 suffix", &["é"], "café", "caf***"),
        ];
        for (description, secrets, text, expected) in cases {
            assert_eq!(mask_chunks(secrets, &[text]), *expected, "{description}");
            assert_eq!(reference_mask(secrets, text), *expected, "reference: {description}");
        }
    }

    /// A description, the secrets, each chunk pushed with what that push must
    /// return, and what `finish` must return.
    type PushCase = (&'static str, &'static [&'static str], &'static [(&'static str, &'static str)], &'static str);

    #[test]
    fn holds_back_only_what_could_start_a_secret() {
        let cases: &[PushCase] = &[
            ("no match is not delayed", &["secret"], &[("abc", "abc"), ("def", "def")], ""),
            ("possible start is held", &["secret"], &[("xxsec", "xx"), ("ret!", "***!")], ""),
            ("false start is released", &["secret"], &[("sec", ""), ("ond", "second")], ""),
            ("held until finish", &["secret"], &[("a secr", "a ")], "secr"),
            (
                // The `***` comes out as soon as the match is complete, but touching
                // repeats must not produce a second `***`.
                "touching repeat extends the open mask",
                &["ab"],
                &[("ab", "***"), ("a", ""), ("b", ""), ("c", "c")],
                "",
            ),
            ("longer secret may follow", &["ab", "abcd"], &[("xab", "x"), ("c", ""), ("dy", "***y")], ""),
            ("longer secret does not follow", &["ab", "abcd"], &[("xab", "x"), ("cz", "***cz")], ""),
            ("masked stretch at the end", &["ab"], &[("xab", "x***")], ""),
            ("multi-byte characters are never split", &["éé"], &[("aé", "a"), ("b", "éb")], ""),
        ];
        for (description, secrets, pushes, rest) in cases {
            let mut masker = masker(secrets);
            for (chunk, expected) in pushes.iter() {
                assert_eq!(masker.push(chunk), *expected, "{description}: push {chunk:?}");
            }
            assert_eq!(masker.finish(), *rest, "{description}: finish");
        }
    }

    #[test]
    fn same_result_for_every_chunking_of_examples() {
        let examples: &[(&[&str], &str)] = &[
            (&["secret"], "my secret is secretsecret, not secre or ecret. secret"),
            (&["abc", "bcd", "cde"], "abcde abxbcd cdeabc aabbccdde"),
            (&["ab", "abcd"], "ab abc abcd abcdab ababcd"),
            (&["aa"], "aaaaa a aa aaa"),
            (&["aba", "bab"], "abababab aba bab"),
            (&["pässwörd", "wö"], "pässwörd päss wörd wö pässwö"),
            (&["🔑", "key🔑"], "a🔑b key🔑🔑 ke🔑"),
            (&["line one", "line two"], "line one\nline two\nline three"),
            (&["x"], "xxxyxx"),
        ];
        for (index, (secrets, text)) in examples.iter().enumerate() {
            check_chunkings(secrets, text, index as u64, 200);
        }
    }

    #[test]
    fn same_result_for_every_chunking_of_random_texts() {
        // A small alphabet makes overlaps, repeats and near-misses common; the
        // multi-byte letters exercise character boundaries.
        let alphabet = ['a', 'b', 'c', 'é', '🔑'];
        let mut random = Lcg(0x5eed);
        for round in 0..300 {
            let count = 1 + random.below(3);
            let secrets: Vec<String> = (0..count).map(|_| random.string(&alphabet, 4)).collect();
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let text = random.string(&alphabet, 40);
            check_chunkings(&secrets, &text, round, 20);
        }
    }

    #[test]
    fn masks_multi_line_secrets_and_their_lines() {
        let secrets = ["-----BEGIN KEY-----\r\n  abc123  \n\n def456\n-----END KEY-----"];
        let cases = [
            ("whole value", "key: -----BEGIN KEY-----\r\n  abc123  \n\n def456\n-----END KEY-----.", "key: ***."),
            ("a line on its own", "got abc123 and def456", "got *** and ***"),
            ("re-indented lines", "    abc123\n    def456\n", "    ***\n    ***\n"),
            ("the header line", "-----BEGIN KEY-----", "***"),
        ];
        for (description, text, expected) in cases {
            assert_eq!(mask_chunks(&secrets, &[text]), expected, "{description}");
        }
    }

    #[test]
    fn ignores_blank_and_duplicate_secrets() {
        let mut masker = Masker::new();
        for secret in ["", " ", "\t\r\n", "a", "a"] {
            assert_eq!(masker.add(secret), Ok(()), "{secret:?}");
        }
        assert_eq!(format!("{masker:?}"), "Masker { secrets: 1, secret_bytes: 1, held_back_bytes: 0, .. }");
        assert_eq!(masker.push(" a b "), " *** b ");
    }

    #[test]
    fn secrets_added_mid_stream_apply_to_held_back_text() {
        let mut masker = masker(&["secret"]);
        assert_eq!(masker.push("my sec"), "my ");
        masker.add("second").expect("within limits");
        assert_eq!(masker.push("ond secret"), "*** ***");
        // Text already returned cannot be taken back, so a secret only affects
        // what comes after it.
        assert_eq!(masker.push("late "), "late ");
        masker.add("late").expect("within limits");
        assert_eq!(masker.push("late"), "***");
        assert_eq!(masker.finish(), "");
    }

    #[test]
    fn secrets_added_mid_stream_are_found_inside_held_back_text() {
        // A secret found entirely within the held-back tail.
        let mut inside = masker(&["abcdef"]);
        assert_eq!(inside.push("xabcd"), "x");
        inside.add("bc").expect("within limits");
        assert_eq!(inside.push("!"), "a***d!");

        // Touching occurrences found in the held-back tail merge into one `***`.
        let mut touching = masker(&["ababx"]);
        assert_eq!(touching.push("-abab"), "-");
        touching.add("ab").expect("within limits");
        assert_eq!(touching.push("!"), "***!");

        // An occurrence in the held-back tail that touches an open mask extends it.
        let mut open = masker(&["ab", "abcx"]);
        assert_eq!(open.push("ababc"), "***");
        open.add("c").expect("within limits");
        assert_eq!(open.push("d"), "d");
        assert_eq!(open.finish(), "");
    }

    #[test]
    fn can_be_reused_after_finish() {
        let mut masker = masker(&["secret"]);
        assert_eq!(masker.push("sec"), "");
        assert_eq!(masker.finish(), "sec");
        assert_eq!(masker.push("ret"), "ret");
        assert_eq!(masker.push(" secret"), " ***");
        assert_eq!(masker.finish(), "");
    }

    #[test]
    fn enforces_the_secret_count_limit() {
        let mut masker = Masker::new();
        for index in 0..SECRETS_MAX {
            assert_eq!(masker.add(&format!("secret-{index}")), Ok(()));
        }
        // A value that is already known does not count again.
        assert_eq!(masker.add("secret-0"), Ok(()));
        assert_eq!(masker.add("one-too-many"), Err(MaskError::TooManySecrets { max: SECRETS_MAX }));
        assert_eq!(masker.push("one-too-many secret-7 "), "one-too-many *** ");
    }

    #[test]
    fn refused_secrets_are_not_added_at_all() {
        let mut masker = Masker::new();
        for index in 0..SECRETS_MAX - 2 {
            assert_eq!(masker.add(&format!("secret-{index}")), Ok(()));
        }
        // Whole value plus two lines is three values, one more than fits.
        assert_eq!(masker.add("first\nsecond"), Err(MaskError::TooManySecrets { max: SECRETS_MAX }));
        assert_eq!(masker.push("first second "), "first second ");
    }

    #[test]
    fn enforces_the_secret_bytes_limit() {
        let mut masker = Masker::new();
        let huge = "h".repeat(SECRET_BYTES_MAX - 1);
        assert_eq!(masker.add(&huge), Ok(()));
        assert_eq!(masker.add("ab"), Err(MaskError::TooManyBytes { max: SECRET_BYTES_MAX }));
        assert_eq!(masker.add("a"), Ok(()));
        // Checking the counts instead of masking some text spares the test from
        // building an automaton over a megabyte of secret.
        expect![[r#"Masker { secrets: 2, secret_bytes: 1048576, held_back_bytes: 0, .. }"#]]
            .assert_eq(&format!("{masker:?}"));
    }

    #[test]
    fn long_streams_in_tiny_chunks() {
        // A long secret whose prefix repeats keeps the held-back tail as long as
        // possible; pushing one character at a time must still be linear overall.
        let secret = format!("{}!", "a".repeat(4096));
        let text = format!("{}{}b", "a".repeat(200_000), secret);
        let mut masker = masker(&[&secret]);
        let mut output = String::new();
        for character in text.split_inclusive(|_| true) {
            output.push_str(&masker.push(character));
            assert!(masker.pending.len() - masker.start < secret.len(), "held back too much");
            assert!(masker.pending.len() <= 2 * secret.len(), "returned text is not dropped");
        }
        output.push_str(&masker.finish());
        assert_eq!(output, format!("{}***b", "a".repeat(200_000)));
    }

    #[test]
    fn error_messages_and_debug_output() {
        let messages = [
            MaskError::TooManySecrets { max: SECRETS_MAX }.to_string(),
            MaskError::TooManyBytes { max: 10 }.to_string(),
        ];
        expect![[r#"
            cannot mask more than 1024 distinct secret values; pass fewer secrets to the job
            cannot mask more than 10 bytes of secrets in total; pass fewer or shorter secrets to the job"#]]
        .assert_eq(&messages.join("\n"));

        let mut masker = masker(&["hunter2"]);
        assert_eq!(masker.push("pw: hunt"), "pw: ");
        let debug = format!("{masker:?}");
        assert!(!debug.contains("hunt"), "{debug}");
        expect![[r#"Masker { secrets: 1, secret_bytes: 7, held_back_bytes: 4, .. }"#]].assert_eq(&debug);
    }
}
