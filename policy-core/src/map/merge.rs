//! An ApplyConfiguration merged as server-side apply merges it, for the core workload kinds.
//!
//! The API server reads each field's merge type from the kind's OpenAPI schema. meshguard carries
//! the part of it that workloads and Services use (from `k8s.io/api`'s list markers):
//! - lists merged by key (`listType=map`): `containers`, `initContainers`, `ephemeralContainers`,
//!   `volumes`, `schedulingGates`, `resourceClaims`, `env`, `claims` by `name`; container `ports` by
//!   `containerPort` + `protocol`; a Service's `spec.ports` by `port` + `protocol` (`protocol`
//!   defaults to `TCP`); `volumeMounts` by `mountPath`; `volumeDevices` by `devicePath`;
//!   `hostAliases` by `ip`; `topologySpreadConstraints` by `topologyKey` + `whenUnsatisfiable`;
//!   `ownerReferences` by `uid`;
//! - sets (`listType=set`): `finalizers`;
//! - atomic: every other list (the default of lists without a marker, e.g. `args`, `command`,
//!   `tolerations`), and the maps and structs marked atomic: `selector`, `nodeSelector`,
//!   `imagePullSecrets` items, the `*KeyRef` and `fieldRef` selectors, `managedFields`.
//!
//! As the API server, a patch that sets an atomic list, map or struct is refused ("may not mutate
//! atomic arrays, maps or structs"); maps and other structs merge field by field; a list-map item
//! whose keys match a live one merges into it, others are appended after the live items. A `null`
//! in the patch removes the field (meshguard's reading: the API server's is not specified).

use serde_json::{Map, Value};

/// The keys of a list-map field, by its name (and the kind, for `ports`).
fn list_keys(field: &str, parent_path: &str, kind: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "schedulingGates"
        | "resourceClaims"
        | "env"
        | "claims" => &["name"],
        "ports" if kind == "Service" && parent_path == ".spec" => &["port", "protocol"],
        "ports" => &["containerPort", "protocol"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        "ownerReferences" => &["uid"],
        _ => return None,
    })
}

fn is_set(field: &str) -> bool {
    field == "finalizers"
}

/// Maps and structs the schema marks atomic, by field name.
fn is_atomic_map(field: &str, parent_field: &str) -> bool {
    matches!(
        field,
        "selector"
            | "nodeSelector"
            | "secretKeyRef"
            | "configMapKeyRef"
            | "fieldRef"
            | "resourceFieldRef"
            | "managedFields"
    ) || parent_field == "imagePullSecrets"
}

/// Whether two list-map items have the same keys (`protocol` defaults to `TCP`, as the schema says).
fn same_keys(a: &Value, b: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|k| {
        let (x, y) = (a.get(k), b.get(k));
        if *k == "protocol" {
            x.and_then(Value::as_str).unwrap_or("TCP") == y.and_then(Value::as_str).unwrap_or("TCP")
        } else {
            x == y
        }
    })
}

/// Paths (`.spec.initContainers[0].args`) where `patch` sets something atomic.
fn atomics(patch: &Value, kind: &str) -> Vec<String> {
    let mut found = Vec::new();
    // (value, path, its field name, its parent's field name)
    let mut pending: Vec<(&Value, String, String, String)> = vec![(patch, String::new(), String::new(), String::new())];
    while let Some((value, path, field, parent_field)) = pending.pop() {
        match value {
            Value::Object(map) => {
                if !path.is_empty() && is_atomic_map(&field, &parent_field) {
                    found.push(path);
                    continue;
                }
                for (k, v) in map {
                    pending.push((v, format!("{path}.{k}"), k.clone(), field.clone()));
                }
            }
            Value::Array(items) => {
                let parent_path = path.rsplit_once('.').map_or("", |(p, _)| p);
                if list_keys(&field, parent_path, kind).is_none() && !is_set(&field) {
                    found.push(path);
                    continue;
                }
                for (i, v) in items.iter().enumerate() {
                    pending.push((v, format!("{path}[{i}]"), field.clone(), field.clone()));
                }
            }
            _ => {}
        }
    }
    found.sort();
    found
}

/// Merges `patch` (an `Object{...}`'s JSON) into `live`, the object of `kind`.
pub fn apply_configuration(live: &mut Value, patch: &Value, kind: &str) -> Result<(), String> {
    if !patch.is_object() {
        return Err(format!("must evaluate to Object but got {}", type_name(patch)));
    }
    let atomic = atomics(patch, kind);
    if !atomic.is_empty() {
        return Err(format!(
            "invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: {}",
            atomic.join(", ")
        ));
    }
    // (live node, patch node, path, field name): without recursion.
    let mut pending: Vec<(&mut Value, &Value, String, String)> = vec![(live, patch, String::new(), String::new())];
    while let Some((into, from, path, field)) = pending.pop() {
        match (into, from) {
            (Value::Object(target), Value::Object(source)) => {
                for (k, v) in source {
                    if v.is_null() {
                        target.remove(k);
                        continue;
                    }
                    let slot = target.entry(k.clone()).or_insert_with(|| empty_like(v));
                    if !same_shape(slot, v) || !(v.is_object() || v.is_array()) {
                        *slot = empty_like(v);
                    }
                }
                for (k, slot) in target.iter_mut() {
                    if let Some(v) = source.get(k).filter(|v| v.is_object() || v.is_array()) {
                        pending.push((slot, v, format!("{path}.{k}"), k.clone()));
                    }
                }
            }
            (Value::Array(target), Value::Array(source)) => {
                let parent_path = path.rsplit_once('.').map_or("", |(p, _)| p).to_string();
                if is_set(&field) {
                    for v in source {
                        if !target.contains(v) {
                            target.push(v.clone());
                        }
                    }
                    continue;
                }
                let keys = list_keys(&field, &parent_path, kind).unwrap_or(&[]);
                let mut merges: Vec<(usize, &Value)> = Vec::new();
                for item in source {
                    match target.iter().position(|t| same_keys(t, item, keys)) {
                        Some(i) => merges.push((i, item)),
                        None => target.push(item.clone()),
                    }
                }
                // Each live item is merged with at most one patch item (keys are unique).
                let mut slots: Vec<Option<&mut Value>> = target.iter_mut().map(Some).collect();
                for (i, item) in merges {
                    if let Some(slot) = slots.get_mut(i).and_then(Option::take) {
                        pending.push((slot, item, format!("{path}[{i}]"), field.clone()));
                    }
                }
            }
            (into, from) => *into = from.clone(),
        }
    }
    Ok(())
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        other => other.clone(),
    }
}

fn same_shape(a: &Value, b: &Value) -> bool {
    matches!((a, b), (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)))
        || !(a.is_object() || a.is_array() || b.is_object() || b.is_array())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_maps_merge_by_key_and_append_new_items() {
        let mut pod = json!({"spec": {"initContainers": [{"name": "init", "image": "i:1"}],
            "containers": [{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}],
                            "ports": [{"containerPort": 80}]}]}});
        let patch = json!({"spec": {"initContainers": [{"name": "mesh-proxy", "image": "p:1", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}]}});
        apply_configuration(&mut pod, &patch, "Pod").unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"initContainers": [{"name": "init", "image": "i:1"}, {"name": "mesh-proxy", "image": "p:1", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "a:1", "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
                                "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}]}})
        );
    }

    #[test]
    fn atomic_lists_maps_and_structs_are_refused_as_the_api_server_refuses_them() {
        let mut pod = json!({"spec": {}});
        let e =
            apply_configuration(&mut pod, &json!({"spec": {"initContainers": [{"name": "p", "args": ["a"]}]}}), "Pod")
                .unwrap_err();
        assert_eq!(
            e,
            "invalid ApplyConfiguration: may not mutate atomic arrays, maps or structs: .spec.initContainers[0].args"
        );
        let e = apply_configuration(
            &mut pod,
            &json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "tolerations": []}}),
            "Deployment",
        )
        .unwrap_err();
        assert!(e.ends_with(".spec.selector, .spec.tolerations"), "{e}");
        assert_eq!(pod, json!({"spec": {}}), "nothing is half applied");
        assert!(apply_configuration(&mut pod, &json!("x"), "Pod").unwrap_err().contains("must evaluate to Object"));
    }

    #[test]
    fn maps_merge_by_field_sets_union_and_null_removes() {
        let mut d = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}});
        let patch = json!({"metadata": {"labels": {"a": "9", "b": null, "c": "3"}, "finalizers": ["y", "x"]}});
        apply_configuration(&mut d, &patch, "Deployment").unwrap();
        assert_eq!(d, json!({"metadata": {"labels": {"a": "9", "c": "3"}, "finalizers": ["x", "y"]}}));
    }
}
