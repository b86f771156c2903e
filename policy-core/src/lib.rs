//! meshguard's policy engine: every guardrail decision, with no I/O, no clock, no threads and no
//! host ABI, so the same code runs in the CLI, in admission wasm modules and inside Envoy.
//!
//! ```
//! use policy_core::{Input, Policy};
//! let policy = Policy::default_rules().unwrap();
//! let objects = vec![serde_json::json!({
//!     "apiVersion": "v1", "kind": "Service",
//!     "metadata": {"name": "api", "namespace": "shop"},
//!     "spec": {"ports": [{"name": "web", "port": 8080}]}
//! })];
//! let findings = policy.review(&Input::new(&objects, "default"));
//! assert_eq!(findings[0].rule, "istio-port-name");
//! assert_eq!(findings[0].path.to_string(), "spec.ports[0].name");
//! ```

pub mod admission;
#[cfg(feature = "cel")]
pub mod cel;
pub mod checks;
pub mod decode;
#[cfg(all(feature = "kubernetes", feature = "cel"))]
pub mod export;
pub mod finding;
pub mod fix;
pub mod http;
#[cfg(all(feature = "kubernetes", feature = "cel"))]
pub mod imports;
pub mod interrupt;
#[cfg(all(feature = "kubernetes", feature = "cel"))]
pub mod map;
pub mod matching;
pub mod object;
pub mod path;
pub mod pattern;
pub mod policy;
#[cfg(feature = "yaml")]
mod text_review;
#[cfg(all(feature = "kubernetes", feature = "cel"))]
pub mod vap;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use admission::{AdmissionResponse, AdmissionVerdict, ClusterObjects, ClusterSource, ClusterView, Unseen};
pub use checks::{registry, Applies, CheckSpec, Target};
pub use finding::{Action, Finding, IndexedFinding, LocatedFinding};
pub use http::{
    BucketStore, Clock, HeadersRead, LeasedBuckets, MemoryBuckets, RawSharedData, Request, SharedBuckets,
    SlottedBuckets,
};
pub use object::Input;
pub use path::FieldPath;
pub use policy::{Coverage, Denial, HttpDecision, LoadError, Policy, RuleSetError, DEFAULT_RULES_YAML};
#[cfg(feature = "yaml")]
pub use text_review::TextReview;
