//! Writes this module's Kubewarden metadata (embedded in its `io.kubewarden.metadata` section).
use meshguard_guest_support::metadata::{write_kubewarden_metadata, Artifact};

fn main() {
    let artifact = Artifact {
        execution_mode: "kubewarden-wapc",
        protocol_version: "v1",
        title: "meshguard",
        display_name: "meshguard",
        oci_url: "ghcr.io/meshguard/policies/meshguard",
        mutating: true,
        usage: "Settings are a meshguard RuleSet (`meshguard rules print-default` prints the built-in one; empty \
settings use it), validated when the policy loads. Deny findings reject with code 403 and one \
`rule-id: message (at path)` per finding; warn findings become admission warnings; fired rule ids are \
in the audit annotations meshguard.dev/deny, meshguard.dev/warn and meshguard.dev/audit. Grant the \
contextAwareResources so that cross-object rules (headless port conflicts, a second default Sidecar, \
the namespace's injection labels) see the cluster; rules that could not are listed in \
meshguard.dev/without-context. DELETE is always allowed.",
    };
    if let Err(e) = write_kubewarden_metadata(&artifact) {
        eprintln!("kubewarden metadata: {e}");
        std::process::exit(1);
    }
}
