//! Architecture rule: the files of `models/` import each other without cycles (a model's modules
//! form a tree: config and shared modules below, the top-level model above).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `models/` (`wan/block.rs` -> `wan::block`, `wan/mod.rs` -> `wan`).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The modules a file names through `super::`/`crate::` paths, resolved to the longest known module.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("super::").chain(text.match_indices("crate::")) {
        let tail: String = text[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let mut segs: Vec<&str> = tail.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<&str> = if segs.first() == Some(&"crate") {
            segs.remove(0);
            Vec::new()
        } else {
            // A file's `super` is its module's parent (`wan::block` -> `wan`); `mod.rs` is its module.
            let mut b = parent.clone();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                b.pop();
            }
            b
        };
        base.extend(segs);
        while !base.is_empty() {
            let m = base.join("::");
            if known.contains(&m) {
                if m != module {
                    out.insert(m);
                }
                break;
            }
            base.pop();
        }
    }
    out
}

#[test]
fn models_files_import_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.retain(|f| !f.starts_with(root.join("bin")));
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(f.strip_prefix(&root).unwrap()), f.clone())).collect();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    // A `mod.rs` declares its children; that is containment, not a dependency.
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(m, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            let deps = imports(m, &text, &known).into_iter().filter(|d| !d.starts_with(&format!("{m}::")) || m.is_empty()).collect();
            (m.clone(), deps)
        })
        .collect();
    // Depth-first search for a back edge.
    fn visit(m: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle between files of models/: {}", cycle.join(" -> "));
        }
    }
    assert!(graph.get("wan::transformer").is_some_and(|d| d.contains("wan::block")), "the check must see imports: {graph:?}");
}

#[test]
fn the_cycle_check_can_fail() {
    let known: BTreeSet<String> = ["wan", "wan::a", "wan::b"].iter().map(|s| s.to_string()).collect();
    assert!(imports("wan::a", "use super::b::X;", &known).contains("wan::b"));
    assert!(imports("wan::b", "use crate::wan::a::{Y};", &known).contains("wan::a"));
}
