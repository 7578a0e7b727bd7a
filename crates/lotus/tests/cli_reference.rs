//! Every command of Lotus's two CLI references exists here with Lotus's flags, except those the
//! README lists under "Commands left out" with the reason (a command, or one flag of one:
//! `lotus-miner init --pre-sealed-sectors`). The references are data extracted by
//! `scripts/lotus-fixtures.py` from Lotus's generated `cli-lotus-{miner,worker}.md`; the README is
//! read so that a command left out without saying why fails this test, and one listed there that
//! exists after all fails it too.

use clap::CommandFactory;
use std::collections::{BTreeMap, BTreeSet};

/// Command path ("sectors extend") → its long flags, from a fixture.
fn reference(name: &str) -> BTreeMap<String, Vec<String>> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    serde_json::from_value(doc["commands"].clone()).expect("commands: path -> flags")
}

/// Command path → long flags (with their aliases) of our clap tree, global flags included.
/// A command's aliases give it more paths (`workers list` for `sealing workers`).
fn ours(top: &clap::Command) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(
        c: &clap::Command,
        path: &[String],
        globals: &BTreeSet<String>,
        out: &mut BTreeMap<String, BTreeSet<String>>,
    ) {
        let mut flags = globals.clone();
        let mut inherited = globals.clone();
        for a in c.get_arguments() {
            let mut names: Vec<String> = a.get_long().into_iter().map(str::to_string).collect();
            names.extend(a.get_all_aliases().unwrap_or_default().into_iter().map(str::to_string));
            if a.is_global_set() {
                inherited.extend(names.clone());
            }
            flags.extend(names);
        }
        out.entry(path.join(" ")).or_default().extend(flags);
        for sub in c.get_subcommands() {
            for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                let mut p = path.to_vec();
                p.push(name.to_string());
                walk(sub, &p, &inherited, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(top, &[], &BTreeSet::new(), &mut out);
    out
}

/// The README's "Commands left out" list: `- \`lotus-miner a b\`: why` → ("lotus-miner", "a b").
fn left_out() -> BTreeMap<(String, String), String> {
    let path = format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let section =
        readme.split("### Commands left out").nth(1).expect("the README has a \"### Commands left out\" section");
    let section = section.split("\n#").next().unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("- `") else { continue };
        let (cmd, why) = rest.split_once("`:").unwrap_or_else(|| panic!("README: {line:?} gives no reason"));
        assert!(why.trim().len() > 10, "README: {cmd} is left out without a reason");
        let (bin, path) = cmd.split_once(' ').unwrap_or((cmd, ""));
        out.insert((bin.to_string(), path.to_string()), why.trim().to_string());
    }
    out
}

fn check(bin: &str, fixture: &str, top: clap::Command) -> Vec<String> {
    let have = ours(&top);
    let skipped = left_out();
    let mut problems = vec![];
    for (path, flags) in reference(fixture) {
        let listed = skipped.contains_key(&(bin.to_string(), path.clone()));
        match have.get(&path) {
            None if listed => {}
            None => problems.push(format!("{bin} {path}: missing (and not in the README's \"Commands left out\")")),
            Some(_) if listed => problems.push(format!("{bin} {path}: exists, yet the README lists it as left out")),
            Some(ours) => {
                for f in &flags {
                    let key = (bin.to_string(), format!("{path} --{f}").trim_start().to_string());
                    match (ours.contains(f), skipped.contains_key(&key)) {
                        (false, false) => problems.push(format!(
                            "{bin} {path}: no flag --{f} (and not in the README's \"Commands left out\")"
                        )),
                        (true, true) => {
                            problems.push(format!("{bin} {path}: has --{f}, yet the README lists it as left out"))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn every_lotus_command_exists_with_its_flags_or_the_readme_says_why_not() {
    let mut problems = check("lotus-miner", "cli-miner", miner::cli::Cli::command());
    problems.extend(check("lotus-worker", "cli-worker", worker::cli::Cli::command()));
    assert!(
        problems.is_empty(),
        "{} commands differ from Lotus's CLI references:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_reference_fixtures_hold_lotus_s_command_trees() {
    // Guards the extraction: a parse that found nothing would make the test above vacuous.
    let miner = reference("cli-miner");
    assert!(miner.len() > 90, "{} miner commands", miner.len());
    assert!(miner["sectors extend"].contains(&"really-do-it".to_string()));
    let worker = reference("cli-worker");
    assert!(worker["run"].contains(&"precommit1".to_string()));
}
