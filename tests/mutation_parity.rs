//! One mutation, whichever host applies it. For every corpus object and every catalog example,
//! with each rule that can fix set to `mutate: true`, the object after
//! - the webhook's `/mutate` answer (policy-core's AdmissionResponse: its base64 JSON Patch),
//! - the Kubewarden module's `mutated_object`, in Kubewarden's own waPC host crates,
//! - `meshguard fix` (the fixed YAML text read back)
//!
//! is the same JSON; and the patch changes nothing outside the paths its rule declares
//! ([`policy_core::Policy::fix_scope_of`]).

use meshguard_tests::block_yaml;
use policy_core::admission::ClusterView;
use policy_core::{Policy, Unseen};
use serde_json::{json, Value};
use std::sync::Arc;

#[path = "support/kubewarden_host.rs"]
mod kubewarden_host;
#[path = "support/mutation_cases.rs"]
mod mutation_cases;
use kubewarden_host::{wapc_host_in, Cluster};
use mutation_cases::cases;

fn patched(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).unwrap();
    out
}

#[test]
fn the_webhook_the_kubewarden_module_and_fix_mutate_alike() {
    use base64::Engine as _;
    let cluster: Cluster = Arc::default();
    let host = wapc_host_in(Some(cluster.clone()));
    let (mut mutated, mut failures) = (0, Vec::new());
    let mut rules_seen = std::collections::BTreeSet::new();
    for case in cases() {
        let policy = Policy::from_value(&case.rules).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let request = json!({"uid": case.name, "operation": "CREATE", "namespace": case.namespace,
                             "kind": {"group": "", "version": "v1", "kind": case.object["kind"]}, "object": case.object});
        let view = ClusterView { objects: &case.cluster, unseen: Unseen::Nothing };

        // The webhook: its AdmissionResponse, patch decoded as the API server decodes it.
        let mutation = policy.mutate_admission_in(&request, view);
        let response = mutation.response(json!(case.name));
        let webhook = match &response.patch {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                patched(&case.object, &serde_json::from_slice(&bytes).unwrap())
            }
            None => case.object.clone(),
        };
        if webhook == case.object {
            continue;
        }
        mutated += 1;
        rules_seen.extend(mutation.fixed.iter().map(|f| f.check));

        // Every change is inside what the fixing rules declare (each fix alone is held to its
        // rule's scope when it is made; this checks the rounds together).
        let scope: Vec<String> = mutation.fixed.iter().flat_map(|f| policy.fix_scope_of(&f.rule)).collect();
        if let Err(e) = policy_core::fix::changes_within(&case.object, &webhook, &scope) {
            failures.push(format!("{}: {e}", case.name));
        }

        // Kubewarden: the module's mutated_object.
        *cluster.lock().unwrap() = case.cluster.clone();
        let payload = json!({"request": request, "settings": case.rules});
        let answer: Value =
            serde_json::from_slice(&host.call("validate", payload.to_string().as_bytes()).unwrap()).unwrap();
        let outcome = policy.admit_from(&request, &mut policy_core::ClusterObjects(&case.cluster));
        assert_eq!(answer["accepted"], outcome.verdict.allowed, "{}: the module decides as natively", case.name);
        if outcome.verdict.allowed {
            if answer["mutated_object"] != webhook {
                failures.push(format!(
                    "{}: Kubewarden's mutated_object differs:\n{}\nvs the webhook's\n{webhook}",
                    case.name, answer["mutated_object"]
                ));
            }
        } else {
            assert!(answer["mutated_object"].is_null(), "{}: a rejected request carries no mutation", case.name);
        }

        // meshguard fix over the same objects as files.
        let text: String = std::iter::once(&case.object).chain(&case.cluster).map(block_yaml).collect();
        let fixed = policy_core::fix::fix_text(&policy, &text, &case.namespace).unwrap();
        let written = policy_core::yaml::parse_documents(&fixed.text).unwrap().remove(0).value;
        if written != webhook {
            failures.push(format!("{}: fix wrote\n{written}\nthe webhook patched\n{webhook}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let fixing: Vec<&str> = policy_core::checks::registry().iter().filter(|c| c.offers_fix()).map(|c| c.id).collect();
    for check in fixing {
        assert!(rules_seen.contains(check), "no object was mutated by {check}: add a corpus case");
    }
    assert!(mutated >= 20, "only {mutated} objects were mutated");
}
