//! GitHub's `hashFiles()` over a job's workspace.
//!
//! Patterns are globs relative to the workspace (`*` and `?` within one path segment, `**` across
//! segments, `[...]` character classes), one per argument or one per line of an argument; a
//! pattern starting with `!` excludes what it matches, and the last pattern that matches a file
//! decides. A pattern that matches a directory matches every file below it, as in
//! `@actions/glob`. The matching files are sorted by path; the result is the hex SHA-256 of the
//! concatenated SHA-256 digests of their contents, or the empty string when nothing matches.
//!
//! Nothing outside the workspace is ever read: patterns that leave it are refused, directory
//! symlinks are not followed, and file symlinks pointing outside the workspace are ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Most files `hashFiles` looks at in one call, so a huge workspace fails clearly instead of hanging.
const FILES_MAX: usize = 1_000_000;

/// One pattern, split into path segments.
#[derive(Debug)]
struct Pattern {
    exclude: bool,
    segments: Vec<String>,
}

/// Hashes the files of `workspace` matching `patterns`, as GitHub's `hashFiles` does.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let patterns = parse_patterns(workspace, patterns)?;
    if !patterns.iter().any(|pattern| !pattern.exclude) {
        return Ok(String::new());
    }
    let root = workspace.canonicalize().map_err(|error| format!("hashFiles: the workspace is unreadable: {error}"))?;
    let mut files = Vec::new();
    collect_files(&root, &root, &mut Vec::new(), &mut files)?;
    let mut matched: Vec<(String, PathBuf)> =
        files.into_iter().filter(|(relative, _)| is_selected(&patterns, relative)).collect();
    matched.sort_by(|left, right| left.0.cmp(&right.0));
    if matched.is_empty() {
        return Ok(String::new());
    }
    let mut result = Sha256::new();
    for (relative, path) in &matched {
        let digest = hash_file(path).map_err(|error| format!("hashFiles: cannot read {relative}: {error}"))?;
        result.update(digest);
    }
    Ok(hex::encode(result.finalize()))
}

fn parse_patterns(workspace: &Path, patterns: &[String]) -> Result<Vec<Pattern>, String> {
    let mut parsed = Vec::new();
    for line in patterns.iter().flat_map(|pattern| pattern.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (exclude, text) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        let relative = if Path::new(text).is_absolute() {
            let inside = Path::new(text).strip_prefix(workspace).map_err(|_| {
                format!("hashFiles: the pattern {line:?} is outside the workspace; patterns are relative to it")
            })?;
            inside.to_string_lossy().into_owned()
        } else {
            text.to_string()
        };
        let mut segments = Vec::new();
        for segment in relative.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    return Err(format!(
                        "hashFiles: the pattern {line:?} leaves the workspace; `..` is not allowed in patterns"
                    ));
                }
                other => segments.push(other.to_string()),
            }
        }
        if segments.is_empty() {
            // The workspace itself: every file in it.
            segments.push("**".to_string());
        }
        parsed.push(Pattern { exclude, segments });
    }
    Ok(parsed)
}

/// Collects the regular files below `dir` as (relative path with `/`, absolute path).
fn collect_files(
    root: &Path,
    dir: &Path,
    prefix: &mut Vec<String>,
    files: &mut Vec<(String, PathBuf)>,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| format!("hashFiles: cannot list {}: {error}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(metadata) = std::fs::symlink_metadata(&path) else { continue };
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            prefix.push(name);
            collect_files(root, &path, prefix, files)?;
            prefix.pop();
            continue;
        }
        let is_file = if file_type.is_symlink() {
            // Only a link to a regular file inside the workspace counts; directory links are
            // not followed, so the walk cannot leave the workspace or loop.
            match path.canonicalize() {
                Ok(target) => target.starts_with(root) && target.is_file(),
                Err(_) => false,
            }
        } else {
            file_type.is_file()
        };
        if is_file {
            if files.len() >= FILES_MAX {
                return Err(format!("hashFiles: the workspace has more than {FILES_MAX} files"));
            }
            let mut relative = prefix.join("/");
            if !relative.is_empty() {
                relative.push('/');
            }
            relative.push_str(&name);
            files.push((relative, path));
        }
    }
    Ok(())
}

/// Whether the last pattern matching `relative` (or one of its parent directories) includes it.
fn is_selected(patterns: &[Pattern], relative: &str) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut selected = false;
    for pattern in patterns {
        let matches = (1..=parts.len()).any(|len| match_segments(&pattern.segments, &parts[..len]));
        if matches {
            selected = !pattern.exclude;
        }
    }
    selected
}

fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                let pattern_chars: Vec<char> = first.chars().collect();
                let segment_chars: Vec<char> = segment.chars().collect();
                match_segment(&pattern_chars, &segment_chars) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// Matches one path segment against one pattern segment (`*`, `?`, `[...]`, `\` escapes).
fn match_segment(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && match_segment(rest, &text[1..]),
        Some(('[', rest)) => match (class_end(rest), text.split_first()) {
            (Some(end), Some((character, text_rest))) => {
                class_matches(&rest[..end], *character) && match_segment(&rest[end + 1..], text_rest)
            }
            (Some(_), None) => false,
            // An unclosed `[` is a literal bracket.
            (None, _) => text.first() == Some(&'[') && match_segment(rest, &text[1..]),
        },
        Some(('\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && match_segment(&rest[1..], &text[1..])
        }
        Some((literal, rest)) => text.first() == Some(literal) && match_segment(rest, &text[1..]),
    }
}

/// The index of the `]` closing a class whose body starts at `rest[0]`.
fn class_end(rest: &[char]) -> Option<usize> {
    let start = usize::from(matches!(rest.first(), Some('!' | '^')));
    // A `]` right after the opening (or its negation) is a member, not the end.
    (start + 1..rest.len()).find(|&index| rest[index] == ']')
}

fn class_matches(body: &[char], character: char) -> bool {
    let (negated, body) = match body.split_first() {
        Some(('!' | '^', rest)) => (true, rest),
        _ => (false, body),
    };
    let mut found = false;
    let mut index = 0;
    while index < body.len() {
        if index + 2 < body.len() && body[index + 1] == '-' {
            if body[index] <= character && character <= body[index + 2] {
                found = true;
            }
            index += 3;
        } else {
            if body[index] == character {
                found = true;
            }
            index += 1;
        }
    }
    found != negated
}

fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        Sha256::digest(bytes).to_vec()
    }

    fn expected(contents: &[&[u8]]) -> String {
        let mut all = Vec::new();
        for content in contents {
            all.extend(sha256(content));
        }
        hex::encode(sha256(&all))
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/nested")).expect("mkdir");
        std::fs::write(root.join("Cargo.lock"), b"lock").expect("write");
        std::fs::write(root.join("src/a.rs"), b"a").expect("write");
        std::fs::write(root.join("src/b.txt"), b"b").expect("write");
        std::fs::write(root.join("src/nested/c.rs"), b"c").expect("write");
        dir
    }

    #[test]
    fn hashes_matching_files_sorted_by_path() {
        let dir = workspace();
        let hash = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|pattern| pattern.to_string()).collect();
            hash_files(dir.path(), &patterns).expect("hashes")
        };
        let absolute = dir.path().join("src/a.rs").display().to_string();
        let cases: &[(&[&str], &[&[u8]])] = &[
            (&["Cargo.lock"], &[b"lock"]),
            (&["**/*.rs"], &[b"a", b"c"]),
            (&["src/*.rs"], &[b"a"]),
            (&["src/?.txt", "Cargo.lock"], &[b"lock", b"b"]),
            (&["src"], &[b"a", b"b", b"c"]),
            (&["src/**", "!**/*.txt"], &[b"a", b"c"]),
            (&["src/[ab].*"], &[b"a", b"b"]),
            (&["src/**\n!src/nested"], &[b"a", b"b"]),
            (&[absolute.as_str()], &[b"a"]),
        ];
        for (patterns, contents) in cases {
            assert_eq!(hash(patterns), expected(contents), "{patterns:?}");
        }
        // GitHub's well-known value for one file containing "lock" is the SHA-256 of its digest.
        assert_eq!(hash(&["Cargo.lock"]), hex::encode(sha256(&sha256(b"lock"))));
    }

    #[test]
    fn no_match_is_the_empty_string() {
        let dir = workspace();
        for patterns in [vec!["*.none"], vec!["!src"], vec![], vec!["src/**", "!src/**"]] {
            let patterns: Vec<String> = patterns.into_iter().map(str::to_string).collect();
            assert_eq!(hash_files(dir.path(), &patterns).expect("hashes"), "", "{patterns:?}");
        }
    }

    #[test]
    fn patterns_leaving_the_workspace_are_refused() {
        let dir = workspace();
        for pattern in ["../*", "src/../../etc/passwd", "/etc/passwd", "!../x"] {
            let error = hash_files(dir.path(), &[pattern.to_string()]).expect_err("refused");
            assert!(error.contains("workspace"), "{pattern}: {error}");
        }
    }

    #[test]
    fn links_out_of_the_workspace_are_ignored() {
        let dir = workspace();
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("secret.rs"), b"secret").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret.rs"), dir.path().join("src/link.rs")).expect("link");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("src/outside")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("src/a.rs"), dir.path().join("src/inside.rs")).expect("link");
        let hash = hash_files(dir.path(), &["**/*.rs".to_string()]).expect("hashes");
        // a.rs, inside.rs (a link to a.rs), nested/c.rs; never the files outside.
        assert_eq!(hash, expected(&[b"a", b"a", b"c"]));
    }
}
