//! Architecture: the library's modules must not import each other in cycles.
//!
//! Every file under `src/` is a module (`src/lib.rs` is the crate root, `src/a/mod.rs` is `a`, `src/a/b.rs` is
//! `a::b`; `src/main.rs` is the binary's root, not a module of the library, and is left out). Inline `mod x { .. }`
//! blocks belong to their file; items under `#[cfg(test)]` (the `mod tests { .. }` blocks, test-only helpers) are
//! ignored entirely. After comments (doc comments too) and string and char literals are blanked out, a file's
//! module depends on every module its paths name:
//! - `crate::p::q..`, `super::..` (possibly repeated; inside an inline module the first `super` is the file's own
//!   module), `self::child::..` and bare `child::..` where `child` is declared in that file (`mod child;`);
//! - `use` groups are expanded: `use super::{a::X, b::Y}` names `super::a::X` and `super::b::Y`;
//! - a path resolves to its longest prefix that is a module: `crate::engine::Image` is `engine`
//!   (`src/engine/mod.rs`), `crate::Image` the crate root. A `pub use` re-export is a dependency like any other.
//!
//! The strongly connected components of that graph (Tarjan) with more than one module are the cycles. The test
//! prints every cycle with, for each edge inside it, the `file:line`s that create it, and fails on any cycle not in
//! [`KNOWN_CYCLES`], and on any entry of [`KNOWN_CYCLES`] that no longer exists: that list may only shrink, to
//! empty. Run `cargo test --test architecture -- --nocapture` to see the report when the test passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Cycles that exist and are still to be broken, each as its exact set of modules (a strongly connected component,
/// so every module in it reaches every other). Empty: src/ has no import cycle, and any new one fails this test.
const KNOWN_CYCLES: &[&[&str]] = &[];

/// A module's path from the crate root: empty for the root.
type ModPath = Vec<String>;

fn display(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_string()
    } else {
        m.join("::")
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Blanking comments and literals.

/// `src` with comments, string literals (plain, byte, C, raw) and char literals replaced by spaces; newlines are
/// kept, so line numbers do not move. Lifetimes (`'a`) are left alone.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        // Line comment (`//`, `///`, `//!`).
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            let start = i;
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            blank(&mut out, start, i);
            continue;
        }
        // Block comment (`/* */`, `/** */`, `/*! */`), nested.
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let start = i;
            let mut depth = 0usize;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            blank(&mut out, start, i);
            continue;
        }
        // Raw string: `r"..."`, `r#"..."#`, with an optional `b` or `c` prefix.
        let prev_is_ident = i > 0 && is_ident(c[i - 1]);
        let raw_start = if c[i] == 'r' && !prev_is_ident {
            Some(i)
        } else if (c[i] == 'b' || c[i] == 'c') && !prev_is_ident && c.get(i + 1) == Some(&'r') {
            Some(i + 1)
        } else {
            None
        };
        if let Some(r) = raw_start {
            let mut j = r + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                blank(&mut out, i, j);
                i = j;
                continue;
            }
        }
        // String literal (the `b` / `c` prefix, if any, is an identifier character left in place: harmless).
        if c[i] == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(c.len());
            blank(&mut out, start, i);
            continue;
        }
        // Char literal (`'x'`, `'\n'`, `'\u{1F600}'`, `'\''`); a lifetime or label (`'a`) is not one.
        if c[i] == '\'' {
            if c.get(i + 1) == Some(&'\\') {
                let start = i;
                i += 3; // the quote, the backslash and the escaped character
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i = (i + 1).min(c.len());
                blank(&mut out, start, i);
                continue;
            }
            if c.get(i + 2) == Some(&'\'') {
                blank(&mut out, i, i + 3);
                i += 3;
                continue;
            }
        }
        // An identifier or number is skipped whole, so a raw-string check never starts inside one.
        if is_ident(c[i]) {
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    /// Any other punctuation character, or a number literal (as `'0'`).
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn is_ident(&self, s: &str) -> bool {
        matches!(&self.tok, Tok::Ident(x) if x == s)
    }
    fn is_punct(&self, p: char) -> bool {
        self.tok == Tok::Punct(p)
    }
    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(x) => Some(x),
            _ => None,
        }
    }
}

/// Tokens of already stripped source.
fn tokenize(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            toks.push(Token { tok: Tok::Ident(c[start..i].iter().collect()), line });
        } else if ch.is_ascii_digit() {
            // A number, suffix included (`1u8`, `0x1F`, `1e5`), so its suffix is not read as an identifier.
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            toks.push(Token { tok: Tok::Punct('0'), line });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push(Token { tok: Tok::PathSep, line });
            i += 2;
        } else {
            toks.push(Token { tok: Tok::Punct(ch), line });
            i += 1;
        }
    }
    toks
}

/// The index just past the bracket group opening at `toks[open]` (`(`, `[` or `{`).
fn skip_group(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < toks.len() {
        match toks[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    toks.len()
}

/// Whether the tokens of a `cfg(..)` predicate (without the outer parentheses) only hold under `cfg(test)`:
/// `test`, or `all(.., test, ..)`.
fn cfg_needs_test(pred: &[Token]) -> bool {
    if pred.len() == 1 && pred[0].is_ident("test") {
        return true;
    }
    if pred.len() >= 3 && pred[0].is_ident("all") && pred[1].is_punct('(') {
        // The top-level arguments of `all(..)`.
        let inner = &pred[2..pred.len() - 1];
        let mut depth = 0usize;
        let mut start = 0;
        for (k, t) in inner.iter().enumerate() {
            match t.tok {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => depth -= 1,
                Tok::Punct(',') if depth == 0 => {
                    if cfg_needs_test(&inner[start..k]) {
                        return true;
                    }
                    start = k + 1;
                }
                _ => {}
            }
        }
        return cfg_needs_test(&inner[start..]);
    }
    false
}

/// `toks` without the items under a `#[cfg(test)]` (or `#[cfg(all(test, ..))]`) attribute: the attribute, any
/// other attributes after it, and the item up to its `;` or the end of its `{ .. }` body.
fn drop_test_items(toks: &[Token]) -> Vec<Token> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let is_attr = toks[i].is_punct('#') && toks.get(i + 1).is_some_and(|t| t.is_punct('['));
        if is_attr {
            let end = skip_group(toks, i + 1);
            let body = &toks[i + 2..end.saturating_sub(1)];
            let test_only = body.len() >= 3
                && body[0].is_ident("cfg")
                && body[1].is_punct('(')
                && cfg_needs_test(&body[2..body.len() - 1]);
            if test_only {
                // The attributes that follow, then the item.
                let mut j = end;
                while j + 1 < toks.len() && toks[j].is_punct('#') && toks[j + 1].is_punct('[') {
                    j = skip_group(toks, j + 1);
                }
                while j < toks.len() {
                    match toks[j].tok {
                        Tok::Punct(';') => {
                            j += 1;
                            break;
                        }
                        Tok::Punct('{') => {
                            j = skip_group(toks, j);
                            break;
                        }
                        Tok::Punct('(' | '[') => j = skip_group(toks, j),
                        _ => j += 1,
                    }
                }
                i = j;
                continue;
            }
            out.extend_from_slice(&toks[i..end]);
            i = end;
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Paths.

/// A path as written, `use` groups included: `a::b::{c::D, self, *}`.
#[derive(Debug)]
struct PathTree {
    /// Segments with their lines.
    segs: Vec<(String, usize)>,
    group: Vec<PathTree>,
}

/// Parses a path tree starting at `toks[i]` (an identifier or a `{` group); returns it and the index after it.
fn parse_tree(toks: &[Token], mut i: usize) -> (PathTree, usize) {
    let mut tree = PathTree { segs: Vec::new(), group: Vec::new() };
    loop {
        match toks.get(i) {
            Some(t) if t.ident().is_some() => {
                tree.segs.push((t.ident().unwrap().to_string(), t.line));
                i += 1;
            }
            Some(t) if t.is_punct('{') => {
                i += 1;
                while i < toks.len() && !toks[i].is_punct('}') {
                    if toks[i].ident().is_some() || toks[i].is_punct('{') {
                        let (sub, next) = parse_tree(toks, i);
                        tree.group.push(sub);
                        i = next;
                    }
                    // `as Name`, `*`, and the separating comma.
                    while i < toks.len() && !toks[i].is_punct(',') && !toks[i].is_punct('}') {
                        if toks[i].is_punct('{') {
                            i = skip_group(toks, i);
                        } else {
                            i += 1;
                        }
                    }
                    if i < toks.len() && toks[i].is_punct(',') {
                        i += 1;
                    }
                }
                return (tree, (i + 1).min(toks.len()));
            }
            _ => return (tree, i),
        }
        if toks.get(i).is_some_and(|t| t.tok == Tok::PathSep) {
            i += 1;
        } else {
            return (tree, i);
        }
    }
}

/// Every path a tree names, groups expanded (`self` in a group is the group's prefix), with the line of the
/// segment that makes it distinct.
fn flatten(tree: &PathTree, prefix: &[(String, usize)], out: &mut Vec<Vec<(String, usize)>>) {
    let mut full: Vec<(String, usize)> = prefix.to_vec();
    for (k, seg) in tree.segs.iter().enumerate() {
        // `self` as the first segment of a group member means the prefix itself.
        if k == 0 && seg.0 == "self" && !prefix.is_empty() {
            if let Some(last) = full.last_mut() {
                last.1 = seg.1;
            }
            continue;
        }
        full.push(seg.clone());
    }
    if tree.group.is_empty() {
        if !full.is_empty() {
            out.push(full);
        }
    } else {
        for sub in &tree.group {
            flatten(sub, &full, out);
        }
    }
}

/// A module reference found in a file: the module it resolves to and its line.
#[derive(Debug, Clone, PartialEq)]
struct Reference {
    target: ModPath,
    line: usize,
}

/// The modules a file refers to (self references included). `module` is the file's module; `modules` every module
/// of the crate.
fn scan(module: &[String], src: &str, modules: &BTreeSet<ModPath>) -> Vec<Reference> {
    let toks = drop_test_items(&tokenize(&strip(src)));

    // Pass 1: the children the file declares (`mod child;`, any visibility), outside inline modules.
    let mut children = BTreeSet::new();
    {
        let mut depth = 0usize;
        for (k, t) in toks.iter().enumerate() {
            match t.tok {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 && t.is_ident("mod") {
                if let (Some(name), Some(semi)) = (toks.get(k + 1), toks.get(k + 2)) {
                    if let (Some(name), true) = (name.ident(), semi.is_punct(';')) {
                        children.insert(name.to_string());
                    }
                }
            }
        }
    }

    // Pass 2: the paths, with the inline-module nesting at each.
    let mut refs = Vec::new();
    let mut brace_depth = 0usize;
    // Brace depths at which the inline modules enclosing the current token opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match t.tok {
            Tok::Punct('{') => {
                brace_depth += 1;
                let opens_mod = i >= 2 && toks[i - 2].is_ident("mod") && toks[i - 1].ident().is_some();
                if opens_mod {
                    inline.push(brace_depth);
                }
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                if inline.last() == Some(&brace_depth) {
                    inline.pop();
                }
                brace_depth = brace_depth.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(first) = t.ident() else {
            i += 1;
            continue;
        };
        let mid_path = i > 0 && (toks[i - 1].tok == Tok::PathSep || toks[i - 1].is_punct('.'));
        let followed_by_sep = toks.get(i + 1).is_some_and(|n| n.tok == Tok::PathSep);
        let starts_path = matches!(first, "crate" | "super" | "self") || children.contains(first);
        if mid_path || !followed_by_sep || !starts_path {
            i += 1;
            continue;
        }
        let (tree, next) = parse_tree(&toks, i);
        let mut paths = Vec::new();
        flatten(&tree, &[], &mut paths);
        for path in paths {
            if let Some(r) = resolve(module, inline.len(), &children, &path, modules) {
                refs.push(r);
            }
        }
        i = next.max(i + 1);
    }
    refs
}

/// The module a path names, from a file of module `module`, `inline_depth` inline modules deep; `None` when it
/// names no module of the crate, or only something inside the file's own inline modules.
fn resolve(
    module: &[String],
    inline_depth: usize,
    children: &BTreeSet<String>,
    path: &[(String, usize)],
    modules: &BTreeSet<ModPath>,
) -> Option<Reference> {
    let line = path[0].1;
    let (mut target, rest): (ModPath, &[(String, usize)]) = match path[0].0.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "super" => {
            let supers = path.iter().take_while(|s| s.0 == "super").count();
            if supers < inline_depth {
                return None; // an enclosing inline module of the same file
            }
            let up = supers - inline_depth;
            if up > module.len() {
                return None;
            }
            (module[..module.len() - up].to_vec(), &path[supers..])
        }
        "self" => {
            if inline_depth > 0 {
                return None; // the inline module itself
            }
            (module.to_vec(), &path[1..])
        }
        child if inline_depth == 0 && children.contains(child) => {
            let mut m = module.to_vec();
            m.push(child.to_string());
            (m, &path[1..])
        }
        _ => return None,
    };
    if !modules.contains(&target) {
        return None;
    }
    for seg in rest {
        let mut longer = target.clone();
        longer.push(seg.0.clone());
        if !modules.contains(&longer) {
            break;
        }
        target = longer;
    }
    // The line of the first segment after `crate` / `super` / `self`: in a multi-line `use` group, the member's
    // own line rather than the `use` line.
    let named_at = path.iter().find(|s| s.0 != "crate" && s.0 != "super" && s.0 != "self").map_or(line, |s| s.1);
    Some(Reference { target, line: named_at })
}

// ---------------------------------------------------------------------------------------------------------------
// The crate's graph.

/// Where an edge comes from: the file (relative to the crate) and line.
type Sites = Vec<(String, usize)>;

struct Graph {
    modules: BTreeSet<ModPath>,
    edges: BTreeMap<(ModPath, ModPath), Sites>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module of a file under `src/` (path relative to `src/`); `None` for the binary's roots.
fn module_of(rel: &Path) -> Option<ModPath> {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts == ["lib.rs"] {
        return Some(Vec::new());
    }
    if parts == ["main.rs"] || parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let mut m = parts;
    let file = m.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" {
        m.push(stem.to_string());
    }
    Some(m)
}

fn crate_graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let files: Vec<(PathBuf, ModPath)> =
        files.into_iter().filter_map(|f| module_of(f.strip_prefix(&src).unwrap()).map(|m| (f, m))).collect();
    let modules: BTreeSet<ModPath> = files.iter().map(|(_, m)| m.clone()).collect();
    let mut edges: BTreeMap<(ModPath, ModPath), Sites> = BTreeMap::new();
    for (file, module) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        for r in scan(module, &text, &modules) {
            if &r.target != module {
                edges.entry((module.clone(), r.target)).or_default().push((shown.clone(), r.line));
            }
        }
    }
    for sites in edges.values_mut() {
        sites.dedup(); // one site per line (a `use` group names a module once per member)
    }
    Graph { modules, edges }
}

/// Tarjan's strongly connected components.
fn tarjan(nodes: &BTreeSet<ModPath>, edges: &BTreeMap<(ModPath, ModPath), Sites>) -> Vec<BTreeSet<ModPath>> {
    struct State<'a> {
        adj: BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        on_stack: BTreeSet<&'a ModPath>,
        stack: Vec<&'a ModPath>,
        next: usize,
        sccs: Vec<BTreeSet<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.adj.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = BTreeSet::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                scc.insert(w.clone());
                if w == v {
                    break;
                }
            }
            s.sccs.push(scc);
        }
    }
    let mut adj: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        adj.entry(from).or_default().push(to);
    }
    let mut s = State {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    let mut sccs: Vec<_> = s.sccs.into_iter().filter(|c| c.len() > 1).collect();
    sccs.sort();
    sccs
}

/// The cycles as sets of module names, and a report of each with its edges and their sites.
fn cycle_report(g: &Graph) -> (Vec<BTreeSet<String>>, String) {
    let sccs = tarjan(&g.modules, &g.edges);
    let mut report = String::new();
    let mut sets = Vec::new();
    if sccs.is_empty() {
        report.push_str("no module cycles\n");
    }
    for (n, scc) in sccs.iter().enumerate() {
        let names: BTreeSet<String> = scc.iter().map(|m| display(m)).collect();
        writeln!(report, "cycle {}: {}", n + 1, names.iter().cloned().collect::<Vec<_>>().join(", ")).unwrap();
        for ((from, to), sites) in &g.edges {
            if scc.contains(from) && scc.contains(to) {
                let at: Vec<String> = sites.iter().map(|(f, l)| format!("{f}:{l}")).collect();
                writeln!(report, "  {} -> {}: {}", display(from), display(to), at.join(", ")).unwrap();
            }
        }
        sets.push(names);
    }
    (sets, report)
}

/// What is wrong with the cycles found against the known ones: a cycle that is not known (as exactly that set of
/// modules), and a known one that is gone.
fn compare(cycles: &[BTreeSet<String>], known: &[&[&str]]) -> Vec<String> {
    let known: Vec<BTreeSet<String>> = known.iter().map(|c| c.iter().map(|s| s.to_string()).collect()).collect();
    let list = |c: &BTreeSet<String>| c.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    for c in cycles {
        if !known.contains(c) {
            problems.push(format!("new module cycle: {}", list(c)));
        }
    }
    for k in &known {
        if !cycles.contains(k) {
            problems.push(format!(
                "known cycle {} no longer exists (as exactly that set): update KNOWN_CYCLES in tests/architecture.rs",
                list(k)
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn no_module_cycles_beyond_the_known_ones() {
    let g = crate_graph();

    // Not vacuous: the scanner sees the crate's modules and edges that are known to exist.
    let m = |s: &str| -> ModPath {
        if s == "crate" {
            Vec::new()
        } else {
            s.split("::").map(String::from).collect()
        }
    };
    for name in ["crate", "engine", "engine::band", "model", "pipeline", "kernel"] {
        assert!(g.modules.contains(&m(name)), "module {name} not found under src/");
    }
    for (from, to) in [("pipeline", "model"), ("pipeline", "engine"), ("model", "kernel"), ("crate", "engine")] {
        assert!(g.edges.contains_key(&(m(from), m(to))), "the scanner missed the edge {from} -> {to}");
    }

    let (cycles, report) = cycle_report(&g);
    println!("{report}");

    let problems = compare(&cycles, KNOWN_CYCLES);
    assert!(problems.is_empty(), "{}\n\n{report}", problems.join("\n"));
}

/// The scanner on a small file: every form of reference, with what must not count.
#[test]
fn scanner_sees_every_form_of_reference() {
    let modules: BTreeSet<ModPath> = [
        "",
        "a",
        "a::b",
        "a::c",
        "a::m",
        "a::m::child",
        "a::m::child::grand",
        "x",
        "x::y",
        "never1",
        "never2",
        "never3",
        "never4",
        "never5",
        "never6",
    ]
    .iter()
    .map(|s| if s.is_empty() { Vec::new() } else { s.split("::").map(String::from).collect() })
    .collect();
    let src = r##"
//! Doc comment naming crate::never1::X.
mod child;
use super::{b::B, c::{self, C}};
use crate::{x::y::Y, Root};
/* block /* nested */ crate::never2::Z */
fn f() -> &'static str {
    let _ = self::child::grand::G;
    let _ = child::Thing;
    let c = '"'; let _ = crate::x::Q;
    let s = "crate::never3::S"; let r = r#"crate::never4::"R""#;
    super::super::Top
}
mod inline {
    use super::super::c::Other;
    use super::Local;
}
#[cfg(test)]
mod tests {
    use crate::never5::T;
}
#[cfg(all(test, target_arch = "x86_64"))]
fn helper() { crate::never6::H }
"##;
    // The file is `src/a/m.rs`.
    let refs = scan(&["a".to_string(), "m".to_string()], src, &modules);
    let got: Vec<(String, usize)> = refs.iter().map(|r| (display(&r.target), r.line)).collect();
    let want: Vec<(String, usize)> = [
        ("a::b", 4),
        ("a::c", 4), // `c::{self, ..}`
        ("a::c", 4), // `c::{.., C}`
        ("x::y", 5),
        ("crate", 5),
        ("a::m::child::grand", 8),
        ("a::m::child", 9),
        ("x", 10),
        ("crate", 12),
        ("a::c", 15),
        ("a::m", 16), // the file's own module (not an edge: the graph drops self references)
    ]
    .iter()
    .map(|(m, l)| (m.to_string(), *l))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn tarjan_finds_cycles_and_only_cycles() {
    let p = |s: &str| -> ModPath { vec![s.to_string()] };
    let nodes: BTreeSet<ModPath> = ["a", "b", "c", "d", "e"].iter().map(|s| p(s)).collect();
    let mut edges = BTreeMap::new();
    for (f, t) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")] {
        edges.insert((p(f), p(t)), Vec::new());
    }
    let sccs = tarjan(&nodes, &edges);
    assert_eq!(sccs, vec![["a", "b", "c"].iter().map(|s| p(s)).collect::<BTreeSet<_>>()]);
}

#[test]
fn known_cycles_must_match_exactly() {
    let set = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    let found = [set(&["a", "b"]), set(&["c", "d", "e"])];
    assert!(compare(&found, &[&["a", "b"], &["c", "d", "e"]]).is_empty());
    // A new cycle fails, and so does a known one that shrank or grew (it is a different set).
    assert_eq!(compare(&found, &[&["a", "b"]]).len(), 1);
    assert_eq!(compare(&found, &[&["a", "b"], &["c", "d"]]).len(), 2);
    // A known cycle that is gone fails: the list must shrink with the code.
    let gone = compare(&found[..1], &[&["a", "b"], &["c", "d", "e"]]);
    assert_eq!(gone.len(), 1);
    assert!(gone[0].contains("no longer exists"), "{gone:?}");
}
