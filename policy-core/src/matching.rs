//! Which objects a rule applies to: the fields and meaning of a Gatekeeper Constraint's `spec.match`.

use crate::object::{map_str, Input, Object};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `kinds`, `namespaces`, `excludedNamespaces`, `labelSelector`, `namespaceSelector`, `scope`;
/// every field given must match. Namespace lists accept `prefix*` and `*suffix` globs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    #[serde(default)]
    pub kinds: Vec<KindSelector>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub scope: Scope,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindSelector {
    /// `""` is the core group; `"*"` matches every group; empty matches every group.
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
}

impl KindSelector {
    pub fn matches(&self, group: &str, kind: &str) -> bool {
        let group_ok = self.api_groups.is_empty() || self.api_groups.iter().any(|g| g == "*" || g == group);
        let kind_ok = self.kinds.is_empty() || self.kinds.iter().any(|k| k == "*" || k == kind);
        group_ok && kind_ok
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum Scope {
    #[default]
    #[serde(rename = "*")]
    All,
    Cluster,
    Namespaced,
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, all must hold.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn validate(&self) -> Result<(), String> {
        for (i, e) in self.match_expressions.iter().enumerate() {
            let needs_values = matches!(e.operator, LabelOperator::In | LabelOperator::NotIn);
            if needs_values == e.values.is_empty() {
                let want = if needs_values { "needs a non-empty `values`" } else { "must not have `values`" };
                return Err(format!("matchExpressions[{i}]: operator {:?} {want}", e.operator));
            }
        }
        Ok(())
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.matches_by(|k| map_str(labels, k))
    }

    /// Whether the selector selects namespace `name` with `labels`: with the label the API server
    /// sets on every namespace, `kubernetes.io/metadata.name`, where the object (as written in a
    /// repo) does not carry it.
    pub fn matches_namespace(&self, labels: &Map<String, Value>, name: &str) -> bool {
        self.matches_by(|k| {
            map_str(labels, k).or_else(|| (k == NAMESPACE_NAME_LABEL).then_some(std::borrow::Cow::Borrowed(name)))
        })
    }

    fn matches_by<'l>(&self, get: impl Fn(&str) -> Option<std::borrow::Cow<'l, str>>) -> bool {
        self.match_labels.iter().all(|(k, v)| get(k).as_deref() == Some(v.as_str()))
            && self.match_expressions.iter().all(|e| {
                let have = get(&e.key);
                match e.operator {
                    LabelOperator::In => have.is_some_and(|h| e.values.iter().any(|v| *v == *h)),
                    LabelOperator::NotIn => have.is_none_or(|h| e.values.iter().all(|v| *v != *h)),
                    LabelOperator::Exists => have.is_some(),
                    LabelOperator::DoesNotExist => have.is_none(),
                }
            })
    }
}

/// The label the API server puts on every Namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `name`, `prefix*` or `*suffix`, as Gatekeeper's namespace lists accept.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return name.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return name.ends_with(suffix);
    }
    pattern == name
}

pub fn any_glob(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, name))
}

impl Match {
    pub fn validate(&self) -> Result<(), String> {
        for (field, list) in [("namespaces", &self.namespaces), ("excludedNamespaces", &self.excluded_namespaces)] {
            if let Some(bad) = list.iter().find(|p| p.is_empty() || p.trim_matches('*').contains('*')) {
                return Err(format!("{field}: `{bad}` is not a name, `prefix*` or `*suffix`"));
            }
        }
        if let Some(s) = &self.label_selector {
            s.validate().map_err(|e| format!("labelSelector.{e}"))?;
        }
        if let Some(s) = &self.namespace_selector {
            s.validate().map_err(|e| format!("namespaceSelector.{e}"))?;
        }
        Ok(())
    }

    pub fn matches(&self, obj: &Object<'_>, input: &Input<'_>) -> bool {
        if !self.kinds.is_empty() && !self.kinds.iter().any(|k| k.matches(obj.group, obj.kind)) {
            return false;
        }
        match self.scope {
            Scope::Cluster if !obj.is_cluster_scoped() => return false,
            Scope::Namespaced if obj.is_cluster_scoped() => return false,
            _ => {}
        }
        if let Some(sel) = &self.label_selector {
            if !sel.matches(obj.labels()) {
                return false;
            }
        }
        // Gatekeeper: a Namespace matches by its own name; other cluster-scoped objects are not
        // filtered by namespace criteria at all.
        let namespace = if obj.kind == "Namespace" { obj.name } else { obj.namespace };
        if namespace.is_empty() {
            return true;
        }
        if !self.namespaces.is_empty() && !any_glob(&self.namespaces, namespace) {
            return false;
        }
        if any_glob(&self.excluded_namespaces, namespace) {
            return false;
        }
        if let Some(sel) = &self.namespace_selector {
            // A namespace the input says nothing about cannot be shown to match.
            match input.labels_of_namespace(obj) {
                Some(labels) if sel.matches_namespace(labels, namespace) => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_carries_its_name_label_as_the_api_server_sets_it() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!(
            {"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": ["legacy"]}]}
        ))
        .unwrap();
        let none = Map::new();
        assert!(!sel.matches_namespace(&none, "legacy"), "the name label is implied");
        assert!(sel.matches_namespace(&none, "shop"));
        assert!(sel.matches(&none), "plain label matching implies nothing");
        let written: Map<String, Value> =
            serde_json::from_value(serde_json::json!({NAMESPACE_NAME_LABEL: "other"})).unwrap();
        assert!(sel.matches_namespace(&written, "legacy"), "a label the object carries wins");
    }
    use serde_json::json;

    fn m(v: Value) -> Match {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("kube-*", "kube-system"));
        assert!(glob_match("*-prod", "pay-prod"));
        assert!(!glob_match("kube-*", "default"));
        assert!(glob_match("team-a", "team-a"));
    }

    #[test]
    fn matches_kinds_namespaces_and_selectors() {
        let values = vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pay", "labels": {"wave": "1"}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "pay", "labels": {"app": "d"}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "kube-system"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
        ];
        let input = Input::new(&values, "default");
        let [ns, deploy, svc, role] = [0, 1, 2, 3].map(|i| input.objects[i]);

        let apps = m(json!({"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}));
        assert!(apps.matches(&deploy, &input) && !apps.matches(&svc, &input));

        let excl = m(json!({"excludedNamespaces": ["kube-*"]}));
        assert!(!excl.matches(&svc, &input) && excl.matches(&deploy, &input) && excl.matches(&role, &input));

        let wave = m(
            json!({"namespaceSelector": {"matchExpressions": [{"key": "wave", "operator": "In", "values": ["1", "2"]}]}}),
        );
        assert!(wave.matches(&deploy, &input) && wave.matches(&ns, &input));
        assert!(!wave.matches(&svc, &input), "unknown namespace labels do not match a selector");

        let labels = m(json!({"labelSelector": {"matchLabels": {"app": "d"}}}));
        assert!(labels.matches(&deploy, &input) && !labels.matches(&svc, &input));

        let cluster = m(json!({"scope": "Cluster"}));
        assert!(cluster.matches(&role, &input) && !cluster.matches(&deploy, &input));
    }

    #[test]
    fn rejects_bad_selectors() {
        assert!(m(json!({"labelSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}))
            .validate()
            .is_err());
        assert!(m(json!({"namespaces": ["a*b*"]})).validate().is_err());
        assert!(serde_json::from_value::<Match>(json!({"kind": []})).is_err());
    }
}
