//! Workloads for instruction counting: `instructions WORKLOAD N` does its setup, then runs
//! WORKLOAD N times. `bench-report` runs it under `valgrind --tool=callgrind` with N = 0 and a
//! larger N; the difference over N is the instructions one run costs, a figure that does not
//! drift with a noisy machine the way wall time does.

use meshguard_benches::peers::cel::{to_cel, CelPeer};
use meshguard_benches::peers::{rego_input, RegoPeer};
use meshguard_benches::{typical_deployment, typical_request, HTTP_RULES};
use policy_core::{Input, MemoryBuckets, Policy};
use std::hint::black_box;

// As in the `meshguard` binary and the criterion benches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const WORKLOADS: &[&str] = &["object-native", "object-regorus", "object-cel", "request-native"];

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(workload), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        return Err(format!("usage: instructions WORKLOAD N   (WORKLOAD: {})", WORKLOADS.join(", ")));
    };
    let objects = vec![typical_deployment()];
    match workload.as_str() {
        "object-native" => {
            let policy = Policy::default_rules().map_err(|e| e.to_string())?;
            for _ in 0..n {
                black_box(policy.review(&Input::new(black_box(&objects), "default")));
            }
        }
        "object-regorus" => {
            let mut rego = RegoPeer::new().map_err(|e| e.to_string())?;
            let input = rego_input(&objects, "default");
            for _ in 0..n {
                black_box(rego.eval_input(input.clone()).map_err(|e| e.to_string())?);
            }
        }
        "object-cel" => {
            let cel = CelPeer::new().map_err(|e| e.to_string())?;
            let (object, none) = (to_cel(&objects[0]), to_cel(&serde_json::Value::Null));
            for _ in 0..n {
                black_box(cel.review(&object, &none, "team-1").map_err(|e| e.to_string())?);
            }
        }
        "request-native" => {
            let policy = Policy::from_text(HTTP_RULES).map_err(|e| e.to_string())?;
            let req = typical_request();
            let mut buckets = MemoryBuckets::default();
            for i in 0..n {
                black_box(policy.decide(black_box(&req), 1_000 + i, &mut buckets)?);
            }
        }
        other => return Err(format!("unknown workload {other}; one of {}", WORKLOADS.join(", "))),
    }
    Ok(())
}
