//! gc-core's modules use only the modules listed before them in the crate docs' "Layers"
//! list, except for the upward calls that list names. A new upward use fails here: move
//! the code to its layer, or argue the exception in the crate docs and below.

use std::collections::BTreeMap;
use std::path::Path;

/// The upward uses the crate docs name, as (from, to).
const ALLOWED_UP: &[(&str, &str)] = &[
    ("world", "mdrop"),
    ("world", "release"),
    ("world", "mgchelp"),
    ("handle", "heap"),
    ("handle", "mfinal"),
];

/// The modules in layer order, from the "Layers" list in `src/lib.rs`.
fn layers(lib: &str) -> Vec<String> {
    let list = lib
        .split("//! # Layers")
        .nth(1)
        .expect("lib.rs has a \"# Layers\" section");
    list.lines()
        .skip(1)
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| {
            let l = l.trim_start_matches("//!").trim();
            let (n, rest) = l.split_once(". ")?;
            n.parse::<u32>().ok()?;
            Some(rest.split('`').nth(1)?.to_string())
        })
        .collect()
}

/// The gc-core modules `src` uses (`crate::m` paths), outside comments and test modules.
fn uses(src: &str) -> Vec<String> {
    // A test module (`#[cfg(test)]`, `#[cfg(all(test, loom))]`, then `mod`) ends the code:
    // clippy keeps items from following one.
    let lines: Vec<&str> = src.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].starts_with("#[cfg(")
                && lines[i].contains("test")
                && lines.get(i + 1).is_some_and(|n| n.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    let code: String = lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').filter_map(|p| {
                let m = p.trim().split("::").next()?.trim();
                (!m.is_empty()).then(|| m.to_string())
            }));
        } else {
            let m: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(m);
        }
    }
    out
}

/// Each module's source files, by its top-level name.
fn sources(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("src/") {
        let p = e.expect("an entry").path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).expect("a module directory") {
                let f = f.expect("an entry").path();
                out.entry(name.clone())
                    .or_default()
                    .push(std::fs::read_to_string(&f).expect("a source file"));
            }
        } else if name != "lib" {
            out.insert(
                name,
                vec![std::fs::read_to_string(&p).expect("a source file")],
            );
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let files = sources(&src);
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut listed: Vec<&String> = files.keys().collect();
    listed.retain(|m| rank(m).is_none());
    assert!(
        listed.is_empty(),
        "modules missing from lib.rs's Layers list: {listed:?}"
    );
    let mut up = Vec::new();
    for (m, texts) in &files {
        let mine = rank(m).unwrap();
        for used in texts.iter().flat_map(|t| uses(t)) {
            let Some(theirs) = rank(&used) else { continue };
            if theirs > mine && !ALLOWED_UP.contains(&(m.as_str(), used.as_str())) {
                up.push(format!("{m} -> {used}"));
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "uses of a higher layer: {up:?}");
}
