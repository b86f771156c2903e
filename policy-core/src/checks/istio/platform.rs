//! Configuration that belongs to the platform team: mesh-wide kinds, the namespace-wide default Sidecar.

use super::*;
use crate::checks::{parse_params, Applies, CheckSpec, Compiled, ObjectCheck, ParamDoc, Target};
use crate::finding::Violation;
use crate::matching::any_glob;
use crate::object::{Input, Object};
use crate::path::FieldPath;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlatformKindsParams {
    #[serde(default = "istio_system")]
    platform_namespaces: Vec<String>,
    #[serde(default = "istio_system_one")]
    root_namespace: String,
    #[serde(default = "platform_only_kinds")]
    platform_only_kinds: Vec<String>,
    #[serde(default = "mesh_wide_kinds")]
    mesh_wide_kinds: Vec<String>,
}

fn istio_system_one() -> String {
    "istio-system".into()
}

fn platform_only_kinds() -> Vec<String> {
    ["EnvoyFilter", "Gateway"].map(String::from).to_vec()
}

fn mesh_wide_kinds() -> Vec<String> {
    ["PeerAuthentication", "AuthorizationPolicy", "Telemetry", "Sidecar"].map(String::from).to_vec()
}

struct PlatformOnlyKinds {
    p: PlatformKindsParams,
}

pub static PLATFORM_ONLY_KINDS: CheckSpec = CheckSpec {
    id: "istio-platform-only-kinds",
    target: Target::Kubernetes,
    applies_to: Applies::GroupSuffix("istio.io"),
    summary: crate::checks::doc(
        "EnvoyFilter and Gateway objects, and mesh-wide PeerAuthentication, AuthorizationPolicy, Telemetry and \
              Sidecar (those in the Istio root namespace), live only in `platformNamespaces`: each changes every \
              tenant's proxies. Run a tenant repo with `platformNamespaces: []` to forbid them there entirely.",
    ),
    params: &[
        ParamDoc {
            name: "platformNamespaces",
            ty: "list of globs",
            default: "[istio-system]",
            description: crate::checks::doc("Namespaces owned by the platform team."),
        },
        ParamDoc {
            name: "rootNamespace",
            ty: "string",
            default: "istio-system",
            description: crate::checks::doc("Istio's root namespace (meshConfig.rootNamespace)."),
        },
        ParamDoc {
            name: "platformOnlyKinds",
            ty: "list of strings",
            default: "[EnvoyFilter, Gateway]",
            description: crate::checks::doc("Istio kinds allowed only in platform namespaces."),
        },
        ParamDoc {
            name: "meshWideKinds",
            ty: "list of strings",
            default: "[PeerAuthentication, AuthorizationPolicy, Telemetry, Sidecar]",
            description: crate::checks::doc("Istio kinds that are mesh-wide when placed in the root namespace."),
        },
    ],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: istio-system}
spec: {}
",
    ),
    failing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua, namespace: shop}
spec: {}
",
    ),
    fix: crate::checks::doc("None: deleting an object is never a fix."),
    fix_scope: &[],
    compile: |params| Ok(Compiled::Object(Box::new(PlatformOnlyKinds { p: parse_params(params)? }))),
    native: crate::checks::Native::Vap(native_platform_only_kinds),
};

impl ObjectCheck for PlatformOnlyKinds {
    fn review(&self, obj: &Object<'_>, _: &Input<'_>, out: &mut Vec<Violation>) {
        if !obj.group.ends_with("istio.io") || any_glob(&self.p.platform_namespaces, obj.namespace) {
            return;
        }
        let kind = obj.kind.to_string();
        let why = if self.p.platform_only_kinds.contains(&kind) {
            format!("{} objects change proxies outside namespace `{}`", obj.kind, obj.namespace)
        } else if self.p.mesh_wide_kinds.contains(&kind) && obj.namespace == self.p.root_namespace {
            format!("a {} in the root namespace `{}` applies to the whole mesh", obj.kind, obj.namespace)
        } else {
            return;
        };
        out.push(Violation::new(
            FieldPath::root().key("kind"),
            format!(
                "{why}; only the platform team may create it (platform namespaces: {})",
                self.p.platform_namespaces.join(", ")
            ),
        ));
    }
}

struct SingleDefaultSidecar;

pub static SINGLE_DEFAULT_SIDECAR: CheckSpec = CheckSpec {
    id: "istio-single-default-sidecar",
    target: Target::Kubernetes,
    applies_to: Applies::Kinds(&["Sidecar"]),
    summary: crate::checks::doc(
        "At most one Sidecar without `workloadSelector` per namespace: with two, Istio picks one arbitrarily. \
              Compares every Sidecar in the input.",
    ),
    params: &[],
    example_params: crate::checks::doc("{}"),
    passing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: [\"./*\", \"istio-system/*\"]}]
",
    ),
    failing_example: crate::checks::doc(
        "\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: [\"./*\"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: egress, namespace: shop}
spec:
  egress: [{hosts: [\"istio-system/*\"]}]
",
    ),
    fix: crate::checks::doc("None: which Sidecar stays the default is the team's to say."),
    fix_scope: &[],
    compile: |params| {
        parse_params::<crate::checks::EmptyParams>(params)?;
        Ok(Compiled::Object(Box::new(SingleDefaultSidecar)))
    },
    native: crate::checks::Native::WebhookOnly(
        "compares a Sidecar with the other Sidecars of its namespace, which a policy over one object cannot read",
    ),
};

fn is_default_sidecar(obj: &Object<'_>) -> bool {
    is_istio(obj, &["Sidecar"]) && obj.spec().and_then(|s| s.get("workloadSelector")).is_none()
}

impl ObjectCheck for SingleDefaultSidecar {
    fn reads_context(&self, obj: &Object<'_>) -> bool {
        is_default_sidecar(obj)
    }

    fn context_kinds(&self) -> Vec<String> {
        vec!["Sidecar".into()]
    }

    fn review(&self, obj: &Object<'_>, input: &Input<'_>, out: &mut Vec<Violation>) {
        if !is_default_sidecar(obj) {
            return;
        }
        let others: Vec<String> =
            input.peers(obj, "Sidecar").filter(|o| is_default_sidecar(o)).map(|o| format!("`{}`", o.name)).collect();
        if !others.is_empty() {
            out.push(Violation::new(
                FieldPath::root().key("spec"),
                format!(
                    "namespace `{}` has more than one Sidecar without workloadSelector ({} too); Istio picks one arbitrarily. Keep one default and give the others a workloadSelector",
                    obj.namespace,
                    others.join(", ")
                ),
            ));
        }
    }
}

/// `istio-platform-only-kinds` in CEL, for `meshguard rules export`.
fn native_platform_only_kinds(
    params: &serde_json::Value,
) -> Result<crate::checks::NativeForm, crate::checks::ParamError> {
    use crate::checks::native::{any_glob, list, lit, GROUP, NAMESPACE};
    use crate::checks::NativeValidation;
    let p: PlatformKindsParams = parse_params(params)?;
    let platform = any_glob(&p.platform_namespaces, NAMESPACE);
    let only = list(&p.platform_only_kinds);
    let mesh_wide = list(&p.mesh_wide_kinds);
    let root = lit(&p.root_namespace);
    let owners = lit(&format!(
        "; only the platform team may create it (platform namespaces: {})",
        p.platform_namespaces.join(", ")
    ));
    Ok(vec![NativeValidation::new(
        format!(
            "!{GROUP}.endsWith('istio.io') || {platform} || \
             !(object.kind in {only} || (object.kind in {mesh_wide} && {NAMESPACE} == {root}))"
        ),
        format!(
            "(object.kind in {only} ? object.kind + ' objects change proxies outside namespace `' + {NAMESPACE} + '`' \
             : 'a ' + object.kind + ' in the root namespace `' + {NAMESPACE} + '` applies to the whole mesh') + {owners}"
        ),
        "kind",
    )]
    .into())
}
