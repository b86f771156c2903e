//! `meshguard rules export --to vap` decides as the rules it was exported from. For every corpus
//! case and every catalog example, the exported ValidatingAdmissionPolicies and bindings, run by
//! meshguard's own VAP engine with nothing else loaded, give the same findings as the RuleSet:
//! the same rule, object, action and field path. A VAP's `fieldPath` is static, so a finding
//! at `spec.ports[1].name` is held to `spec.ports` (the path up to its first list index).
//! Rules the export leaves to the webhook are named with a reason, and left out of the comparison.

use meshguard_tests::load_corpus;
use policy_core::export::{rule_of_policy, to_vap};
use policy_core::path::Segment;
use policy_core::{FieldPath, Finding, Input, Policy};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[path = "support/generate.rs"]
mod generate;
use generate::{istio_object, namespace, service, workload};

type Decision = (String, usize, String, String);

fn up_to_first_index(path: &FieldPath) -> String {
    let keys: Vec<Segment> = path.segments().iter().take_while(|s| matches!(s, Segment::Key(_))).cloned().collect();
    keys.iter()
        .fold(FieldPath::root(), |p, s| match s {
            Segment::Key(k) => p.key(k),
            Segment::Index(i) => p.index(*i),
        })
        .to_string()
}

fn decisions(findings: &[Finding], rule_of: &dyn Fn(&str) -> String) -> BTreeSet<Decision> {
    findings
        .iter()
        .map(|f| (rule_of(&f.rule), f.object_index, f.action.to_string(), up_to_first_index(&f.path)))
        .collect()
}

struct Case {
    name: String,
    rules: Value,
    namespace: String,
    objects: Vec<Value>,
}

fn cases() -> Vec<Case> {
    let default_rules = policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value;
    let mut out = Vec::new();
    for case in load_corpus().unwrap() {
        if case.objects.is_empty() {
            continue;
        }
        let mut objects = case.objects.clone();
        objects.extend(case.cluster.iter().cloned());
        out.push(Case {
            name: case.source.clone(),
            rules: case.rules.clone().unwrap_or_else(|| default_rules.clone()),
            namespace: case.namespace.clone(),
            objects,
        });
    }
    // The example manifest repo, reviewed as `meshguard check examples/manifests` does.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let mut files = Vec::new();
    let mut dirs = vec![repo];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "examples/manifests holds YAML");
    let objects: Vec<Value> = files
        .iter()
        .flat_map(|f| policy_core::yaml::parse_documents(&std::fs::read_to_string(f).unwrap()).unwrap())
        .map(|d| d.value)
        .collect();
    out.push(Case {
        name: "examples/manifests".into(),
        rules: default_rules.clone(),
        namespace: "default".into(),
        objects,
    });
    for spec in policy_core::checks::registry().iter().filter(|c| c.target == policy_core::Target::Kubernetes) {
        let params = policy_core::yaml::parse_one(spec.example_params).unwrap().value;
        let rules = json!({
            "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "example"},
            "spec": {"rules": [{"id": spec.id, "check": spec.id, "params": params}]}
        });
        for (which, text) in [("passing", spec.passing_example), ("failing", spec.failing_example)] {
            let objects = policy_core::yaml::parse_documents(text).unwrap().into_iter().map(|d| d.value).collect();
            out.push(Case {
                name: format!("catalog {} {which}", spec.id),
                rules: rules.clone(),
                namespace: "default".into(),
                objects,
            });
        }
    }
    out
}

/// The findings of `case` under its rule set and under the export, compared: the number of
/// decisions compared, or the differences.
fn compare(
    case: &Case,
    offline_unknown: &mut usize,
    exported_rules: &mut BTreeSet<String>,
    messages: &mut Vec<String>,
) -> Result<usize, String> {
    let exported = to_vap(&case.rules).map_err(|e| format!("{}: export: {e}", case.name))?;
    let left: BTreeSet<String> = exported.left.iter().map(|l| l.rule.clone()).collect();
    let native = json!({
        "apiVersion": "meshguard.dev/v1alpha1", "kind": "RuleSet", "metadata": {"name": "exported"},
        "spec": {"rules": [], "admissionPolicies": exported.objects},
    });
    let native =
        Policy::from_value(&native).map_err(|e| format!("{}: the exported objects do not load: {e}", case.name))?;
    let builtin = Policy::from_value(&case.rules).unwrap();
    let input = Input::new(&case.objects, &case.namespace);
    let builtin_findings = builtin.review(&input);
    let want = decisions(&builtin_findings, &|r| r.to_string());
    let want: BTreeSet<Decision> = want.into_iter().filter(|d| !left.contains(&d.0)).collect();
    let objects = &exported.objects;
    // Offline, a namespaceSelector over a namespace the input does not hold: meshguard's own
    // matching says the rule does not apply, the VAP engine that it cannot tell (as its
    // failurePolicy says). In a cluster both read the namespace's labels. Held to exactly that.
    let (unknown, reviewed): (Vec<Finding>, Vec<Finding>) = native.review(&input).into_iter().partition(|f| {
        let policy = f.rule.split('/').next().unwrap_or_default();
        rule_of_policy(objects, policy).is_some()
            && f.message.contains("its namespaceSelector needs the labels of namespace")
    });
    for f in &unknown {
        let policy = f.rule.split('/').next().unwrap_or_default();
        let rule = rule_of_policy(objects, policy).unwrap_or_default();
        let selects = case.rules["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["id"] == rule && r.pointer("/match/namespaceSelector").is_some());
        let known =
            case.objects.iter().any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == f.namespace.as_str());
        if !selects || known {
            return Err(format!("{}: {f:?} is not a namespaceSelector over an unknown namespace", case.name));
        }
        *offline_unknown += 1;
    }
    // Each policy finding words what the rule's findings it stands for say: their messages, in
    // order, joined by `; ` (one VAP validation covers every port, container or host a check
    // reports one by one), after the rule id meshguard prints beside them. Findings of several
    // validations may share a rule, object, path and action: each rule message goes to the one
    // whose text holds it, and each policy message must be exactly its share.
    let mut groups: std::collections::BTreeMap<(String, usize, String, String), Vec<String>> = Default::default();
    for f in &reviewed {
        let policy = f.rule.split('/').next().unwrap_or_default();
        let Some(rule) = rule_of_policy(objects, policy) else { continue };
        let words = f.message.strip_prefix(&format!("{rule}: ")).unwrap_or(&f.message).to_string();
        let key = (rule.to_string(), f.object_index, up_to_first_index(&f.path), f.action.to_string());
        groups.entry(key).or_default().push(words);
    }
    for ((rule, object, path, action), words) in groups {
        let theirs: Vec<&str> = builtin_findings
            .iter()
            .filter(|b| {
                b.rule == rule
                    && b.object_index == object
                    && up_to_first_index(&b.path) == path
                    && b.action.to_string() == action
            })
            .map(|b| b.message.as_str())
            .collect();
        let holds = |m: &str, r: &str| {
            m == r
                || m.starts_with(&format!("{r}; "))
                || m.ends_with(&format!("; {r}"))
                || m.contains(&format!("; {r}; "))
        };
        let mut shares: Vec<Vec<&str>> = vec![Vec::new(); words.len()];
        for r in &theirs {
            match words.iter().position(|m| holds(m, r)) {
                Some(j) => shares[j].push(r),
                None => shares[0].push(r),
            }
        }
        for (m, share) in words.iter().zip(&shares) {
            if *m != share.join("; ") {
                messages.push(format!(
                    "{} {rule} at {path}:\n    export: {m}\n    rule:   {}",
                    case.name,
                    share.join("; ")
                ));
            }
        }
    }
    let got = decisions(&reviewed, &|id| {
        let policy = id.split('/').next().unwrap_or(id);
        rule_of_policy(objects, policy).map_or(id.to_string(), str::to_string)
    });
    exported_rules.extend(
        objects
            .iter()
            .filter_map(|o| o.pointer("/metadata/annotations/meshguard.dev~1rule")?.as_str().map(str::to_string)),
    );
    if want != got {
        return Err(format!(
            "{}:\n  only the rule set: {:?}\n  only the export:   {:?}",
            case.name,
            want.difference(&got).collect::<Vec<_>>(),
            got.difference(&want).collect::<Vec<_>>()
        ));
    }
    Ok(want.len())
}

#[test]
fn exported_policies_decide_as_the_rule_set() {
    let (mut compared, mut flagged, mut offline_unknown, mut failures) = (0, 0, 0, Vec::new());
    let (mut exported_rules, mut messages) = (BTreeSet::new(), Vec::new());
    for case in cases() {
        compared += 1;
        match compare(&case, &mut offline_unknown, &mut exported_rules, &mut messages) {
            Ok(n) => flagged += n,
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "{compared} cases, {flagged} decisions compared, {offline_unknown} offline-unknown namespaces; rules exported: {exported_rules:?}"
    );
    assert!(failures.is_empty(), "{} of {compared} cases differ:\n{}", failures.len(), failures.join("\n"));
    assert!(messages.is_empty(), "{} messages differ:\n{}", messages.len(), messages.join("\n"));
    assert!(compared > 60 && flagged > 40, "the comparison must cover the corpus");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Generated manifests under the default rule set, with and without their Namespaces.
    #[test]
    fn generated_manifests_decide_alike_exported(
        objects in prop::collection::vec(prop_oneof![service(), workload(), istio_object(), namespace()], 1..12)
    ) {
        let default_rules = policy_core::yaml::parse_one(policy_core::DEFAULT_RULES_YAML).unwrap().value;
        let case = Case { name: "generated".into(), rules: default_rules, namespace: "default".into(), objects };
        let (mut unknown, mut rules) = (0, BTreeSet::new());
        let mut messages = Vec::new();
        prop_assert_eq!(compare(&case, &mut unknown, &mut rules, &mut messages).map(|_| ()), Ok(()));
        prop_assert!(messages.is_empty(), "{}", messages.join("\n"));
    }
}
