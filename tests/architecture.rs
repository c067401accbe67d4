//! The house rules of `src/`, checked on every test run (ARCHITECTURE.md,
//! "Layers"): each module imports only modules on floors below its own, no
//! files import each other in a circle, every module says what it is for in
//! a `//!` header, no file outgrows 800 lines and no function 100, unless a
//! `// Long on purpose:` comment above it says why.
//!
//! The check reads the source text: `crate::a::b` and `hydrant::a::b` paths
//! and `super::` paths are the imports. A child module's use of its own
//! parent (`super::Item` from `a/b.rs` into `a/mod.rs`) is how Rust modules
//! share their front door and is not counted as a circle; a use between two
//! sibling files or across modules is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, from the ground up. A module may import only modules on a
/// lower floor. A new top-level module must be given its floor here and in
/// ARCHITECTURE.md.
const FLOORS: &[(&str, u32)] = &[
    // Ground: nothing of Hydrant's below them.
    ("alloc", 0),
    ("aws", 0),
    ("failpoint", 0),
    ("metrics", 0),
    ("record", 0),
    ("sched", 0),
    ("secret", 0),
    ("tls", 0),
    // Stages that know records, not streams.
    ("encode", 1),
    ("log", 1),
    ("route", 1),
    ("transform", 1),
    // What a stream is.
    ("config", 2),
    // What a stream delivers to, and the Kinesis stream model.
    ("kinesis", 3),
    ("sink", 3),
    ("video", 3),
    // Running a stream.
    ("delivery", 4),
    // The streams of a daemon.
    ("streams", 5),
    // SQL applications over the streams.
    ("analytics", 6),
    // The APIs.
    ("ingest", 7),
    // The top: the daemon and the fuzzing entry points.
    ("daemon", 8),
    ("fuzzing", 8),
];

const FILE_LINES_MAX: usize = 800;
const FN_LINES_MAX: usize = 100;
const LONG_MARKER: &str = "// Long on purpose:";

/// One source file of the library.
struct Source {
    path: PathBuf,
    /// Its module path (`config::stream`); empty for the crate root.
    module: Vec<String>,
    /// Its text without inline `#[cfg(test)] mod tests { … }`.
    code: String,
    lines: usize,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Test modules (`tests.rs`, `tests/`) and the binaries are not the house.
fn is_library_file(rel: &Path) -> bool {
    rel.extension().is_some_and(|e| e == "rs")
        && !rel.starts_with("bin")
        && rel != Path::new("main.rs")
        && rel.file_name().is_some_and(|n| n != "tests.rs")
        && !rel.components().any(|c| c.as_os_str() == "tests")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

fn without_inline_tests(text: &str) -> String {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

fn sources() -> Vec<Source> {
    let src = src_dir();
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out: Vec<Source> = files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).ok()?.to_path_buf();
            if !is_library_file(&rel) {
                return None;
            }
            let text = std::fs::read_to_string(&p).ok()?;
            Some(Source {
                module: module_of(&rel),
                lines: text.lines().count(),
                code: without_inline_tests(&text),
                path: rel,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(out.len() > 30, "found only {} source files", out.len());
    out
}

/// The module paths a file names: `crate::`/`hydrant::` paths made of
/// lower-case segments, and `super::` paths made absolute.
fn references(s: &Source) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code: String = s
        .code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in code.match_indices("::") {
        // The path this `::` belongs to starts at the first identifier of a
        // run of `ident::` pairs; take each run once, from its start.
        let start = code[..i]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        if code[start..i].contains("::") {
            continue;
        }
        let head = &code[start..i];
        let mut segs: Vec<String> = Vec::new();
        let mut rest = &code[i + 2..];
        loop {
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segs.push(rest[..end].to_string());
            match rest[end..].strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        let abs = match head {
            "crate" | "hydrant" => segs,
            "super" => {
                // `super` of `a/b.rs` (module a::b) is a; of `a/mod.rs` (a) the root.
                let mut base = s.module.clone();
                base.pop();
                let mut segs = segs;
                while segs.first().is_some_and(|f| f == "super") {
                    segs.remove(0);
                    base.pop();
                }
                base.extend(segs);
                base
            }
            _ => continue,
        };
        if !abs.is_empty() {
            out.push(abs);
        }
    }
    out
}

/// The file a module path lands in: the longest prefix that is a file.
fn resolve<'a>(path: &[String], by_module: &'a BTreeMap<Vec<String>, usize>) -> Option<&'a usize> {
    (1..=path.len())
        .rev()
        .find_map(|n| by_module.get(&path[..n].to_vec()))
}

fn floor(module: &str) -> Option<u32> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

#[test]
fn every_module_imports_only_floors_below_its_own() {
    let mut wrong = Vec::new();
    for s in sources() {
        let Some(top) = s.module.first() else {
            continue;
        };
        let Some(mine) = floor(top) else {
            wrong.push(format!(
                "{}: module `{top}` has no floor in FLOORS (and ARCHITECTURE.md)",
                s.path.display()
            ));
            continue;
        };
        let imported: BTreeSet<String> = references(&s)
            .into_iter()
            .filter_map(|p| p.first().cloned())
            .filter(|m| m != top)
            .collect();
        for m in imported {
            match floor(&m) {
                Some(theirs) if theirs < mine => {}
                Some(theirs) => wrong.push(format!(
                    "{}: `{top}` (floor {mine}) imports `{m}` (floor {theirs})",
                    s.path.display()
                )),
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let files = sources();
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, s)| (s.module.clone(), i))
        .collect();
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, s) in files.iter().enumerate() {
        for r in references(s) {
            let Some(&j) = resolve(&r, &by_module) else {
                continue;
            };
            // A child's use of its own ancestors is the module's front door.
            let target = &files[j].module;
            if j == i || s.module.starts_with(target) {
                continue;
            }
            edges[i].insert(j);
        }
    }
    // Depth-first search for a back edge; report the circle it closes.
    let mut state = vec![0u8; files.len()]; // 0 new, 1 on the stack, 2 done
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        i: usize,
        edges: &[BTreeSet<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for &j in &edges[i] {
            if state[j] == 1 {
                let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                let mut circle = stack[from..].to_vec();
                circle.push(j);
                return Some(circle);
            }
            if state[j] == 0
                && let Some(c) = visit(j, edges, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    for i in 0..files.len() {
        if state[i] == 0
            && let Some(circle) = visit(i, &edges, &mut state, &mut stack)
        {
            let names: Vec<String> = circle
                .iter()
                .map(|&k| files[k].path.display().to_string())
                .collect();
            panic!("import circle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn every_module_starts_with_what_it_is_for() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|s| !s.code.trim_start().starts_with("//!"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(missing.is_empty(), "no `//!` header: {missing:?}");
}

#[test]
fn no_file_outgrows_its_room() {
    let big: Vec<String> = sources()
        .iter()
        .filter(|s| s.lines > FILE_LINES_MAX)
        .map(|s| format!("{} ({} lines)", s.path.display(), s.lines))
        .collect();
    assert!(big.is_empty(), "over {FILE_LINES_MAX} lines: {big:?}");
}

/// Each `fn` with a body, as (name, first line index, line count).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        while j < lines.len() {
            let l = strip_literals(lines[j]);
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth <= 0) || (!opened && l.trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        if opened {
            out.push((name, i, j + 1 - i));
        }
        i = j + 1;
    }
    out
}

/// A line without its comment and its string and char literals, whose
/// braces are not code.
fn strip_literals(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal ('{', '\'', '\u{1}'), or a lifetime.
                let rest: String = chars.clone().take(12).collect();
                if let Some(end) = rest.find('\'')
                    && end > 0
                    && (end == 1 || rest.starts_with('\\'))
                {
                    for _ in 0..=end {
                        chars.next();
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn no_function_outgrows_a_screenful_unless_it_says_why() {
    let mut long = Vec::new();
    for s in sources() {
        let lines: Vec<&str> = s.code.lines().collect();
        for (name, at, n) in functions(&s.code) {
            if n <= FN_LINES_MAX {
                continue;
            }
            // The marker may sit among the comments and attributes above it.
            let said = lines[..at]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|l| l.trim_start().starts_with(LONG_MARKER));
            if !said {
                long.push(format!("{}: fn {name} ({n} lines)", s.path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {FN_LINES_MAX} lines without `{LONG_MARKER} …` above: {long:#?}"
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // The parsers above, on a sample: a check that sees nothing passes
    // for nothing.
    let s = Source {
        path: PathBuf::from("sink/http.rs"),
        module: vec!["sink".into(), "http".into()],
        code: "use super::{Batch, Sink};\nuse crate::config::HttpDestination;\nfn f() { let x = '{'; g(\"}\"); hydrant::aws::ACCOUNT }\n".into(),
        lines: 3,
    };
    let refs = references(&s);
    assert!(refs.contains(&vec!["sink".to_string()]), "{refs:?}");
    assert!(refs.contains(&vec!["config".to_string()]), "{refs:?}");
    assert!(refs.contains(&vec!["aws".to_string()]), "{refs:?}");
    let fns = functions(&s.code);
    assert_eq!(fns, vec![("f".to_string(), 2, 1)]);
    let body = format!("fn long() {{\n{}}}\n", "    x();\n".repeat(150));
    assert_eq!(functions(&body), vec![("long".to_string(), 0, 152)]);
    assert_eq!(module_of(Path::new("config/mod.rs")), vec!["config"]);
    assert_eq!(module_of(Path::new("aws.rs")), vec!["aws"]);
    assert!(floor("config") < floor("sink"));
}
