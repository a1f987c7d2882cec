//! The CRD and admission policy YAML committed under charts/pictor-crds must be what the Rust types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/pictor-crds/templates");
    let mut stale = Vec::new();
    for (file, yaml) in pictor_crds::chart_files() {
        let path = dir.join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != yaml {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "CRDs or admission policies differ from the types; run `cargo run -p pictor-crds --bin crdgen` and commit: {stale:?}"
    );
}

#[test]
fn every_kind_is_in_the_pictor_category_with_a_short_name_and_status_subresource() {
    for crd in pictor_crds::crds() {
        let names = &crd.spec.names;
        assert_eq!(names.categories.as_deref(), Some(&["pictor".to_string()][..]), "{}", names.kind);
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{} has no short name",
            names.kind
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{}", names.kind);
        let schema =
            serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap())
                .unwrap();
        let status = &schema["properties"]["status"]["properties"];
        assert!(status["observedGeneration"].is_object(), "{} lacks status.observedGeneration", names.kind);
        let conditions = &status["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{}", names.kind);
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{}", names.kind);
    }
}
