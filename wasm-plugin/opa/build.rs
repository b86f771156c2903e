//! OPA hosts hand the module its memory (`env.memory`, opa.js starts it at 5 pages): import it,
//! and keep the stack and data small enough to fit: the module asks for exactly those 5 pages
//! (327,680 bytes: a 64 KiB stack and, today, about 200 KiB of static data; the linker refuses a build
//! that outgrows them, naming the bytes needed). Also writes the module's Kubewarden metadata
//! (embedded in its `io.kubewarden.metadata` section): `gatekeeper` mode, or `opa` mode for the
//! `kubewarden-opa-mode` build.
use meshguard_guest_support::metadata::{write_kubewarden_metadata, Artifact};

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        for arg in ["--import-memory", "-zstack-size=65536", "--initial-memory=327680"] {
            println!("cargo:rustc-link-arg-cdylib={arg}");
        }
    }
    let artifact = if std::env::var_os("CARGO_FEATURE_KUBEWARDEN_OPA_MODE").is_some() {
        Artifact {
            execution_mode: "opa",
            protocol_version: "Unknown",
            title: "meshguard-opa",
            display_name: "meshguard (OPA mode)",
            oci_url: "ghcr.io/meshguard/policies/meshguard-opa",
            mutating: false,
            usage: "For executionMode: opa. Settings are a meshguard RuleSet (empty: the built-in one); Kubewarden \
passes them as the Rego data document and the request as input.request. Answers an AdmissionResponse: \
deny findings reject with code 403, warn findings become admission warnings, rule ids go to the audit \
annotations meshguard.dev/deny|warn|audit. With contextAwareResources granted, the cluster objects \
(data.kubernetes) join the review of cross-object rules; rules that saw none are listed in \
meshguard.dev/without-context. An invalid RuleSet rejects every request with code 500 and the rule and \
field at fault, since Kubewarden does not validate Rego settings.",
        }
    } else {
        Artifact {
            execution_mode: "gatekeeper",
            protocol_version: "Unknown",
            title: "meshguard-gatekeeper",
            display_name: "meshguard (Gatekeeper mode)",
            oci_url: "ghcr.io/meshguard/policies/meshguard-gatekeeper",
            mutating: false,
            usage: "For executionMode: gatekeeper, and for OPA SDKs. Settings are a meshguard RuleSet (empty: the \
built-in one), read from input.parameters. Entrypoint 0 (meshguard/violation) lists one {msg} per deny \
finding; warn findings cannot reach the user in this mode (meshguard/findings and meshguard/response \
have them for SDK callers). With contextAwareResources granted, Gatekeeper's inventory (data.inventory) \
joins the review of cross-object rules. An invalid RuleSet rejects every request with the rule and \
field at fault, since Kubewarden does not validate Rego settings.",
        }
    };
    if let Err(e) = write_kubewarden_metadata(&artifact) {
        eprintln!("kubewarden metadata: {e}");
        std::process::exit(1);
    }
}
