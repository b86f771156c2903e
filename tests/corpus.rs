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
    let findings = policy.review(&Input::new(&case.objects, &case.namespace));
    let mut problems = Vec::new();
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
