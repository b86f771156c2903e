//! `meshguard rules export`: a rule set as objects the API server enforces itself
//! ([`policy_core::export`]), printed as a YAML stream ready for `kubectl apply -f -`, and the
//! rules that stay with the webhook (or Envoy) reported on stderr with why.

/// Objects as one YAML stream (`---` before each document).
pub fn yaml_stream(objects: &[serde_json::Value]) -> String {
    objects.iter().map(|o| policy_core::yaml::to_document(o, true)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_reads_back_as_the_objects() {
        let objects = vec![
            serde_json::json!({"kind": "A", "spec": {"expression": "object.a == 'x: y'\n  && true", "n": 3, "f": 1.5, "l": [], "m": {}, "z": null, "yes": "yes"}}),
            serde_json::json!({"kind": "B", "list": ["#not a comment", "- dash", "", "1"]}),
        ];
        let text = yaml_stream(&objects);
        let back: Vec<serde_json::Value> =
            policy_core::yaml::parse_documents(&text).unwrap().into_iter().map(|d| d.value).collect();
        assert_eq!(back, objects, "{text}");
    }
}
