//! Runs the whole corpus natively through policy-core; the other hosts run the same cases.

use meshguard_tests::{load_corpus, Case, ExpectedFinding};
use policy_core::{Input, MemoryBuckets, Policy, Request};

fn policy(case: &Case) -> Policy {
    match &case.rules {
        Some(doc) => Policy::from_value(doc).unwrap_or_else(|e| panic!("{}: rules: {e}", case.source)),
        None => Policy::default_rules().unwrap(),
    }
}

fn matches(e: &ExpectedFinding, f: &policy_core::Finding) -> bool {
    e.rule == f.rule
        && e.path == f.path.to_string()
        && e.name.as_ref().is_none_or(|n| *n == f.name)
        && e.action.as_ref().is_none_or(|a| a == f.action.as_str())
        && e.message.as_ref().is_none_or(|m| f.message.contains(m.as_str()))
}

fn check_objects(case: &Case, policy: &Policy) -> Vec<String> {
    // CI sees a repo holding both the new objects and what is already in the cluster.
    let repo: Vec<serde_json::Value> = case.objects.iter().chain(&case.cluster).cloned().collect();
    let findings = policy.review(&Input::new(&repo, &case.namespace));
    let mut problems = admission_agrees_with_ci(case, policy, &findings);
    problems.extend(pruned_decode_agrees(case, policy));
    let mut unmatched: Vec<&policy_core::Finding> = findings.iter().collect();
    for e in &case.expect {
        match unmatched.iter().position(|f| matches(e, f)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => problems.push(format!("expected {e:?}, not found")),
        }
    }
    for f in unmatched {
        problems.push(format!("unexpected {} {} {}/{} {}: {}", f.action, f.rule, f.kind, f.name, f.path, f.message));
    }
    problems
}

/// The admission decode that skips what no loaded rule reads (`Policy::parse_admission`) decides
/// as the full parse does, on each object as an API server sends it: with `managedFields`, a
/// `status`, the requester's `userInfo`, `options` and an `oldObject`.
fn pruned_decode_agrees(case: &Case, policy: &Policy) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, object) in case.objects.iter().enumerate() {
        let mut sent = object.clone();
        if let Some(meta) = sent.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.entry("managedFields").or_insert(serde_json::json!([{"manager": "kubectl", "operation": "Update",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}}]));
        }
        if let Some(fields) = sent.as_object_mut() {
            fields.entry("status").or_insert(serde_json::json!({"observedGeneration": 1}));
        }
        let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "operation": "UPDATE", "namespace": case.namespace,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "options": {"kind": "UpdateOptions"}, "object": sent, "oldObject": object}});
        let bytes = review.to_string();
        let pruned = match policy.parse_admission(bytes.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("object {i}: the pruned decode failed: {e}"));
                continue;
            }
        };
        let (full, fast) = (policy.review_admission(&review), policy.review_admission(&pruned));
        if full != fast {
            problems.push(format!("object {i}: pruned decode decided {fast:?}, the full parse {full:?}"));
        }
    }
    problems
}

/// With the cluster in view, admitting each new object decides exactly what CI found on it.
fn admission_agrees_with_ci(case: &Case, policy: &Policy, ci: &[policy_core::Finding]) -> Vec<String> {
    if case.cluster.is_empty() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (i, object) in case.objects.iter().enumerate() {
        let namespace = object.pointer("/metadata/namespace").and_then(|v| v.as_str()).unwrap_or(&case.namespace);
        let request = serde_json::json!({"operation": "CREATE", "namespace": namespace, "object": object});
        let view = policy_core::ClusterView { objects: &case.cluster, unseen: policy_core::Unseen::Nothing };
        let verdict = policy.review_admission_in(&request, view);
        let line = |f: &policy_core::Finding| format!("{} {} {} {}", f.rule, f.action, f.path, f.message);
        let at_admission: Vec<String> = verdict.findings.iter().map(line).collect();
        let in_ci: Vec<String> = ci.iter().filter(|f| f.object_index == i).map(line).collect();
        if at_admission != in_ci {
            problems.push(format!("object {i}: admission found {at_admission:?}, CI {in_ci:?}"));
        }
    }
    problems
}

fn check_requests(case: &Case, policy: &Policy) -> Vec<String> {
    let mut buckets = MemoryBuckets::default();
    let mut problems = Vec::new();
    for (i, rc) in case.requests.iter().enumerate() {
        let req: Request =
            serde_json::from_value(rc.request.clone()).unwrap_or_else(|e| panic!("{}: request {i}: {e}", case.source));
        let d = policy.decide(&req, rc.at_ms, &mut buckets).unwrap();
        let warn: Vec<String> = d
            .fired
            .iter()
            .filter(|(_, a)| *a == policy_core::Action::Warn)
            .map(|(idx, _)| policy.http_rule(*idx).unwrap().id.clone())
            .collect();
        let got = match &d.denied {
            None => format!("allow warn={warn:?}"),
            Some(x) => format!("deny {} {} grpc={} warn={warn:?}", x.rule, x.status, x.grpc_status),
        };
        let e = &rc.expect;
        let ok = match (&d.denied, e.decision.as_str()) {
            (None, "allow") => true,
            (Some(x), "deny") => {
                e.rule.as_ref().is_none_or(|r| *r == x.rule)
                    && e.status.is_none_or(|s| s == x.status)
                    && e.grpc_status.is_none_or(|g| g == x.grpc_status)
            }
            _ => false,
        };
        if !ok || warn != e.warn {
            problems.push(format!("request {i} ({} {}): expected {e:?}, got {got}", req.method, req.path));
        }
    }
    problems
}

/// The Envoy shells fetch only the headers the rules read (`Policy::headers_read`) unless a rule
/// reads them all. For every corpus request, under its rule set without the `http-header-limits`
/// rules (the ones that read every header), the request built from the named headers alone, each
/// answered with its first value as Envoy's by-name lookups do, decides exactly as the whole map:
/// also when every header comes twice with another value, and when `host` stands for `:authority`.
#[test]
fn named_headers_decide_as_the_whole_map() {
    use meshguard_guest_support::envoy::request_from_named;
    use policy_core::HeadersRead;
    use std::borrow::Cow;
    let mut compared = 0;
    for case in load_corpus().unwrap().iter().filter(|c| !c.requests.is_empty()) {
        let mut doc = case.rules.clone().unwrap_or_else(|| {
            policy_core::yaml::parse_documents(policy_core::DEFAULT_RULES_YAML).unwrap().remove(0).value
        });
        let rules = doc.pointer_mut("/spec/rules").and_then(|r| r.as_array_mut()).expect("spec.rules");
        rules.retain(|r| r["check"] != "http-header-limits");
        let policy = Policy::from_value(&doc).unwrap_or_else(|e| panic!("{}: {e}", case.source));
        let HeadersRead::Named(names) = policy.headers_read() else {
            panic!("{}: still reads every header without its limits rules", case.source)
        };
        assert!(names.iter().any(|n| n == "content-type"), "gRPC replies need content-type: {names:?}");
        let (mut whole_buckets, mut named_buckets) = (MemoryBuckets::default(), MemoryBuckets::default());
        for (i, rc) in case.requests.iter().enumerate() {
            let mut req: Request = serde_json::from_value(rc.request.clone()).unwrap();
            let repeats: Vec<_> =
                req.headers.iter().map(|(k, v)| (k.clone(), Cow::Owned(format!("{v}-again")))).collect();
            req.headers.extend(repeats);
            for host_only in [false, true] {
                let mut whole = req.clone();
                let mut pairs: Vec<(String, String)> =
                    vec![(":method".into(), req.method.to_string()), (":path".into(), req.path.to_string())];
                if host_only {
                    whole.headers.insert(0, (Cow::Borrowed("host"), req.authority.clone()));
                } else {
                    pairs.push((":authority".into(), req.authority.to_string()));
                }
                pairs.extend(whole.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())));
                let named = request_from_named(&names, |name| {
                    Ok::<_, ()>(pairs.iter().find(|(k, _)| k == name).map(|(_, v)| Cow::Owned(v.clone())))
                })
                .unwrap();
                let from_whole = policy.decide(&whole, rc.at_ms, &mut whole_buckets).unwrap();
                let from_named = policy.decide(&named, rc.at_ms, &mut named_buckets).unwrap();
                assert_eq!(
                    from_named, from_whole,
                    "{} request {i} (host only: {host_only}): named headers {names:?} decide otherwise",
                    case.source
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "compared {compared} requests");
}

#[test]
fn corpus_decisions_match_natively() {
    let cases = load_corpus().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let policy = policy(case);
        for p in check_objects(case, &policy).into_iter().chain(check_requests(case, &policy)) {
            failures.push(format!("{}: {p}", case.source));
        }
    }
    assert!(failures.is_empty(), "{} corpus failures:\n{}", failures.len(), failures.join("\n"));
    assert!(cases.len() >= 40, "the corpus has only {} cases", cases.len());
}

/// The check catalog sends a reader from a check id to its cases with `grep -rlw <id> tests/corpus`:
/// every built-in check is named, as a whole word, in some corpus file (a rule of that check, or a
/// finding of it under the default rules).
#[test]
fn every_check_is_named_by_a_corpus_file() {
    let files: Vec<(String, String)> = std::fs::read_dir(meshguard_tests::corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let word_char = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let names = |text: &str, id: &str| {
        text.match_indices(id).any(|(at, _)| {
            !word_char(text[..at].chars().next_back()) && !word_char(text[at + id.len()..].chars().next())
        })
    };
    assert!(names("check: cel\n", "cel") && !names("check: cel-rule", "cel") && !names("x-cel", "cel"));
    for check in policy_core::registry() {
        assert!(
            files.iter().any(|(_, text)| names(text, check.id)),
            "no corpus file names `{}`: add cases for it under tests/corpus/",
            check.id
        );
    }
}

/// Every corpus case's objects, written as a block-YAML stream and fixed: no edit is ever
/// refused for reading back wrong (the editor's self-check), every object reads back with only
/// the patched changes, and a finding that was fixed does not come back.
#[test]
fn fixes_of_every_corpus_case_read_back_as_the_patched_objects() {
    let mut problems = Vec::new();
    let mut fixed_cases = 0;
    for case in load_corpus().unwrap().iter().filter(|c| !c.objects.is_empty()) {
        let policy = policy(case);
        let mut text = String::new();
        for object in case.objects.iter().chain(&case.cluster) {
            text.push_str(&meshguard_tests::block_yaml(object));
        }
        let fixed = match policy_core::fix::fix_text(&policy, &text, &case.namespace) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{}: {e}", case.source));
                continue;
            }
        };
        for (f, why) in &fixed.left {
            if let Some(why) = why.as_deref().filter(|w| w.contains("read back") || w.contains("parse")) {
                problems.push(format!("{}: {} on {}/{}: {why}", case.source, f.rule, f.kind, f.name));
            }
        }
        if fixed.applied.is_empty() {
            continue;
        }
        fixed_cases += 1;
        let after: Vec<serde_json::Value> = policy_core::yaml::parse_documents(&fixed.text)
            .unwrap_or_else(|e| panic!("{}: the fixed text does not parse: {e}", case.source))
            .into_iter()
            .map(|d| d.value)
            .collect();
        let still = policy.review(&Input::new(&after, &case.namespace));
        for f in &fixed.applied {
            if still.iter().any(|s| s.rule == f.rule && s.name == f.name && s.kind == f.kind && s.path == f.path) {
                problems.push(format!(
                    "{}: {} on {}/{} {} is still found after its fix",
                    case.source, f.rule, f.kind, f.name, f.path
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(fixed_cases >= 10, "only {fixed_cases} corpus cases had a fix");
}
