//! The OpenAPI 3.1 document served at `/api/openapi.json`: every route of
//! the API with its method, purpose and body/response schema names, so the
//! whole service can be automated.

use serde_json::{Value, json};

/// (method, path, summary, request schema, response schema)
const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    (
        "post",
        "/api/v1/builds",
        "Submit a build (kiln container-build)",
        Some("SubmitBuild"),
        "Build",
    ),
    (
        "get",
        "/api/v1/builds",
        "List builds (state, component, owner, package, limit)",
        None,
        "BuildList",
    ),
    (
        "get",
        "/api/v1/builds/{id}",
        "One build by id or N-V-R",
        None,
        "Build",
    ),
    (
        "post",
        "/api/v1/builds/{id}/cancel",
        "Cancel a queued or running build",
        None,
        "Build",
    ),
    (
        "get",
        "/api/v1/builds/{id}/log",
        "The build log from ?offset=; ?follow=true streams until the build ends",
        None,
        "Text",
    ),
    (
        "get",
        "/api/v1/targets",
        "List build targets",
        None,
        "TargetList",
    ),
    (
        "put",
        "/api/v1/targets/{name}",
        "Create or replace a target (admin)",
        Some("Target"),
        "Target",
    ),
    (
        "get",
        "/api/v1/components",
        "List components",
        None,
        "ComponentList",
    ),
    (
        "put",
        "/api/v1/components/{name}",
        "Create or replace a component (admin)",
        Some("Component"),
        "Component",
    ),
    (
        "get",
        "/api/v1/tags/{tag}/builds",
        "Builds in a tag",
        None,
        "BuildList",
    ),
    (
        "put",
        "/api/v1/tags/{tag}/builds/{id}",
        "Tag a build",
        None,
        "Empty",
    ),
    (
        "delete",
        "/api/v1/tags/{tag}/builds/{id}",
        "Untag a build",
        None,
        "Empty",
    ),
    (
        "get",
        "/api/v1/tags/{tag}/history",
        "Tag and untag history",
        None,
        "TagEventList",
    ),
    (
        "get",
        "/api/v1/tags",
        "List tags and whether their latest images take automatic rebuilds",
        None,
        "TagInfoList",
    ),
    (
        "put",
        "/api/v1/tags/{tag}",
        "Turn automatic rebuilds of a tag's latest images on or off (admin; creates the tag)",
        Some("TagSettings"),
        "TagInfo",
    ),
    (
        "get",
        "/api/v1/images",
        "Images holding a package: ?package=NAME[<OP>[E:]V[-R]] (OP one of < <= = >= >), ?tag=, ?all=true for every complete build, ?source=true to match the source package's name",
        None,
        "ImageMatchList",
    ),
    (
        "get",
        "/api/v1/builds/{id}/lineage",
        "A build's ancestors and the tree of builds made FROM it",
        None,
        "Lineage",
    ),
    (
        "post",
        "/api/v1/package-updates",
        "Report updated packages (admin): a rebuild event (201 new, 200 the same updates reported before)",
        Some("PackageUpdate"),
        "PackageUpdateAnswer",
    ),
    (
        "post",
        "/api/v1/rebuild-plan",
        "What updated packages would rebuild (dry run; nothing is recorded)",
        Some("RebuildPlanRequest"),
        "PlanView",
    ),
    (
        "get",
        "/api/v1/rebuild-events",
        "List rebuild events, newest first (state, limit)",
        None,
        "RebuildEventList",
    ),
    (
        "get",
        "/api/v1/rebuild-events/{id}",
        "A rebuild event and its items",
        None,
        "RebuildEventInfo",
    ),
    ("get", "/api/v1/whoami", "The caller", None, "User"),
    (
        "post",
        "/api/v1/tokens",
        "Create a token for a user (admin)",
        Some("TokenRequest"),
        "Token",
    ),
    (
        "get",
        "/api/v1/events",
        "Event log as server-sent events from ?after=",
        None,
        "EventStream",
    ),
    (
        "post",
        "/api/v1/tasks/claim",
        "A worker claims a task (204: none)",
        Some("ClaimRequest"),
        "Assignment",
    ),
    (
        "post",
        "/api/v1/tasks/{id}/heartbeat",
        "Renew a claim (409: canceled or lost)",
        Some("Heartbeat"),
        "Empty",
    ),
    (
        "post",
        "/api/v1/tasks/{id}/prepared",
        "Report labels and parent; get the NVR, labels, tags and expected updates (422: refused)",
        Some("Prepared"),
        "PreparedAnswer",
    ),
    (
        "post",
        "/api/v1/tasks/{id}/log",
        "Append to the build log (?worker=)",
        Some("Text"),
        "Empty",
    ),
    (
        "post",
        "/api/v1/tasks/{id}/complete",
        "Record the result",
        Some("Completion"),
        "Build",
    ),
    (
        "post",
        "/api/v1/tasks/{id}/fail",
        "Record a failure",
        Some("Failure"),
        "Build",
    ),
];

fn schema_ref(name: &str) -> Value {
    match name {
        "Text" => json!({"type": "string"}),
        "Empty" => json!({}),
        "EventStream" => json!({"type": "string", "description": "text/event-stream"}),
        list if list.ends_with("List") => {
            json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{}", &list[..list.len() - 4])}})
        }
        other => json!({"$ref": format!("#/components/schemas/{other}")}),
    }
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, request, response) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(response)}}},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}
            }
        });
        if *path == "/api/v1/package-updates" {
            op["responses"]["201"] = json!({"description": "Created", "content": {"application/json": {"schema": schema_ref(response)}}});
        }
        if let Some(req) = request {
            op["requestBody"] =
                json!({"content": {"application/json": {"schema": schema_ref(req)}}});
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let obj = |props: &[&str]| {
        let mut p = serde_json::Map::new();
        for name in props {
            p.insert(name.to_string(), json!({}));
        }
        json!({"type": "object", "properties": p})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "kiln hub", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "SubmitBuild": obj(&["source", "target", "scratch", "isolated", "release", "no_cache"]),
                "Build": obj(&["id", "state", "component", "nvr", "source_url", "source_ref", "commit", "target", "owner", "scratch", "isolated", "parent_ref", "parent_digest", "parent_build_id", "manifest_digest", "config_digest", "image_size", "layers", "tags", "packages", "reason", "no_cache", "parent_pin", "autorebuild", "rebuild_item_id", "created_at", "started_at", "completed_at"]),
                "Target": obj(&["name", "allowed_parents", "repos", "dest_tag", "registry", "autorebuild"]),
                "Component": obj(&["name", "git_url", "owners"]),
                "TagEvent": obj(&["tag", "build_id", "action", "user", "at"]),
                "User": obj(&["name", "admin"]),
                "TokenRequest": obj(&["user", "description", "admin"]),
                "Token": obj(&["user", "token"]),
                "ClaimRequest": obj(&["worker"]),
                "Assignment": obj(&["task_id", "lease_secs", "build", "target"]),
                "Heartbeat": obj(&["worker"]),
                "Prepared": obj(&["worker", "commit", "labels", "parent", "container_yaml"]),
                "PreparedAnswer": obj(&["nvr", "labels", "tags", "expect"]),
                "Completion": obj(&["worker", "manifest_digest", "config_digest", "image_size", "layers", "parent_digest", "tags", "packages"]),
                "Failure": obj(&["worker", "reason"]),
                "ApiError": obj(&["error", "message"]),
                "TagInfo": obj(&["name", "autorebuild"]),
                "TagSettings": obj(&["autorebuild"]),
                "ImageMatch": obj(&["build_id", "nvr", "tags", "package"]),
                "BuildSummary": obj(&["id", "nvr", "state", "parent_build_id", "manifest_digest", "completed_at"]),
                "LineageNode": obj(&["build", "children"]),
                "Lineage": obj(&["build", "ancestors", "children"]),
                "PackageUpdate": obj(&["packages", "repo"]),
                "PackageUpdateAnswer": obj(&["event", "duplicate"]),
                "RebuildPlanRequest": obj(&["packages"]),
                "PlanView": obj(&["batches", "skipped", "no_effect", "cycles"]),
                "PlannedImage": obj(&["build_id", "nvr", "repository", "tags", "parent_build_id", "depth", "reasons", "skipped"]),
                "RebuildEvent": obj(&["id", "trigger", "state", "updates", "repo", "trigger_build_id", "replaced_build_id", "submitter", "message", "created_at", "updated_at"]),
                "RebuildEventInfo": obj(&["event", "items"]),
                "RebuildItemInfo": obj(&["id", "event_id", "original_build_id", "repository", "depth", "parent_item_id", "reasons", "expect", "state", "build_id", "attempts", "coalesced_into", "message", "created_at", "updated_at", "original_nvr", "build_nvr", "build_state"]),
            }
        },
        "security": [{"bearer": []}],
        "paths": Value::Object(paths),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented_once() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, super::ROUTES.len());
        assert!(paths["/api/v1/builds/{id}"]["get"]["parameters"][0]["name"] == "id");
        assert!(paths["/api/v1/tags/{tag}"]["put"]["parameters"][0]["name"] == "tag");
        assert!(paths["/api/v1/package-updates"]["post"]["responses"]["201"].is_object());
    }

    /// Every `$ref` in the document names a schema it defines.
    #[test]
    fn every_reference_resolves() {
        fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = super::document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.iter().any(|r| r.ends_with("/RebuildEvent")));
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not defined"
            );
        }
    }
}
