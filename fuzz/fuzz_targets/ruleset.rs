//! The RuleSet loader: any text either loads or is an error naming a line; a loaded RuleSet
//! reviews an object and decides a request without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use policy_core::{Input, MemoryBuckets, Policy, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = Policy::from_text(text) else { return };
    let objects = vec![serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}, "annotations": {"owner": "x"}},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": "r/api:latest", "ports": [{"containerPort": 80}]}]}}}
    })];
    let _ = policy.review(&Input::new(&objects, "default"));
    let req: Request = serde_json::from_value(serde_json::json!({
        "method": "POST", "path": "/api/orders?x=1", "authority": "api.shop:80",
        "headers": {"x-tenant": "shop", "content-type": "application/grpc", "x-request-id": "abc"}
    }))
    .expect("request");
    let _ = policy.decide(&req, 1_000, &mut MemoryBuckets::default());
});
