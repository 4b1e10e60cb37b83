//! Dependencies point one way: this reads `src/` and fails when a module uses one of a higher
//! layer, or when modules of one layer use each other in a circle, unless
//! `docs/architecture.md` lists that import among the known wrong-way ones (which are to go).
//! A listed import that is gone fails too, so the list stays true and only shrinks.
//!
//! The layers and the list are the tables under "## Layers" and "## Known wrong-way imports"
//! in `docs/architecture.md`. An import is any `crate::<module>` path in code outside
//! comments and test modules (a file's `#[cfg(test)]` tail, a `tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Edge = (String, String);

/// `## <title>`'s table rows, as cells, below the header and separator lines.
fn table<'a>(doc: &'a str, title: &str) -> Vec<Vec<&'a str>> {
    let Some(start) = doc.find(&format!("\n## {title}\n")) else {
        panic!("docs/architecture.md has no \"## {title}\" section");
    };
    doc[start + 1..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

/// The `backticked` names in a cell.
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a top-level module's files use, outside comments and tests.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        // main.rs is the top; a module's `tests.rs` is its test module.
        if top == "main" || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = uses.entry(top.clone()).or_default();
        for line in text.lines() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    entry.insert(name);
                }
            }
        }
    }
    uses
}

/// The modules that reach themselves again through `edges` (Tarjan would do; the graph is tiny).
fn in_a_circle(from: &str, to: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![to.to_string()];
    while let Some(m) = todo.pop() {
        if m == from {
            return true;
        }
        if seen.insert(m.clone()) {
            todo.extend(edges.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn modules_use_only_lower_layers_and_no_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut layer: BTreeMap<String, usize> = BTreeMap::new();
    for row in table(&doc, "Layers") {
        let n: usize = row[0]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a layer row starts with its number: {row:?}"));
        for m in names(row[1]) {
            layer.insert(m, n);
        }
    }
    let known: BTreeSet<Edge> = table(&doc, "Known wrong-way imports")
        .iter()
        .map(|row| {
            let (from, to) = (names(row[0]), names(row[1]));
            assert!(
                from.len() == 1 && to.len() == 1,
                "one `from` and one `to`: {row:?}"
            );
            (from[0].clone(), to[0].clone())
        })
        .collect();

    let uses = imports(&root.join("src"));
    let mut problems = Vec::new();
    let mut wrong: BTreeSet<Edge> = BTreeSet::new();
    for (from, tos) in &uses {
        let Some(&lf) = layer.get(from) else {
            problems.push(format!("src/{from} is in no layer of docs/architecture.md"));
            continue;
        };
        for to in tos {
            let Some(&lt) = layer.get(to) else {
                continue; // not a module of this crate (a path like crate::x in a string)
            };
            let up = lt > lf;
            let circle = lt == lf && in_a_circle(from, to, &uses);
            if up || circle {
                wrong.insert((from.clone(), to.clone()));
                if !known.contains(&(from.clone(), to.clone())) {
                    problems.push(if up {
                        format!("{from} (layer {lf}) uses {to} (layer {lt}): a higher layer")
                    } else {
                        format!("{from} uses {to}, which uses {from} again (layer {lf}): a circle")
                    });
                }
            }
        }
    }
    for (from, to) in known.difference(&wrong) {
        problems.push(format!(
            "{from} → {to} is listed among the known wrong-way imports but is gone: take it off the list"
        ));
    }
    assert!(
        problems.is_empty(),
        "dependencies must point one way (docs/architecture.md):\n{}",
        problems.join("\n")
    );
}
