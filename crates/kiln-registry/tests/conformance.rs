//! The distribution-spec v1.1 conformance workflows (pull, push, content
//! discovery, content management), over HTTP against the real server, on
//! the filesystem and on S3.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, TestRegistry, error_code, image_manifest};
use kiln_oci::{Digest, media};
use reqwest::StatusCode;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn base_endpoint(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let r = reg.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let r = reg.get("/v2/nothing/here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn pull_workflow(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let layer = b"layer bytes for pull".repeat(1000);
    let (manifest, md) = reg.push_image("team/app/web", "v1", &layer).await;

    for reference in ["v1".to_string(), md.to_string()] {
        let r = reg
            .client
            .get(reg.url(&format!("/v2/team/app/web/manifests/{reference}")))
            .header("accept", media::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), media::OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), md.to_string());
        assert_eq!(r.bytes().await.unwrap(), manifest);
    }
    let r = reg.head("/v2/team/app/web/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), manifest.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), md.to_string());

    // Content negotiation: a client that accepts only Docker types is not
    // handed an OCI manifest.
    let r = reg
        .client
        .get(reg.url("/v2/team/app/web/manifests/v1"))
        .header("accept", media::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let ld = Digest::sha256_of(&layer);
    let r = reg.get(&format!("/v2/team/app/web/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "docker-content-digest"), ld.to_string());
    assert_eq!(r.bytes().await.unwrap(), layer);
    let r = reg.head(&format!("/v2/team/app/web/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), layer.len().to_string());

    let r = reg
        .client
        .get(reg.url(&format!("/v2/team/app/web/blobs/{ld}")))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 10-19/{}", layer.len())
    );
    assert_eq!(r.bytes().await.unwrap(), layer[10..20]);
    let r = reg
        .client
        .get(reg.url(&format!("/v2/team/app/web/blobs/{ld}")))
        .header("range", format!("bytes={}-", layer.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let missing = Digest::sha256_of(b"missing");
    let r = reg.get(&format!("/v2/team/app/web/blobs/{missing}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = reg.get("/v2/team/app/web/manifests/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    // A blob of one repository is not visible from another.
    let r = reg.get(&format!("/v2/other/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn push_monolithic(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let data = b"single request upload";
    let d = Digest::sha256_of(data);
    let r = reg
        .client
        .post(reg.url(&format!("/v2/mono/blobs/uploads/?digest={d}")))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/mono/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    // POST then PUT with the whole body.
    reg.push_blob("mono", b"post then put").await;
    // The empty blob.
    reg.push_blob("mono", b"").await;
    let r = reg
        .head(&format!("/v2/mono/blobs/{}", Digest::sha256_of(b"")))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn push_chunked(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data);
    let r = reg.post("/v2/chunky/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(!header(&r, "docker-upload-uuid").is_empty());
    let mut loc = reg.location(&r);
    let mut offset = 0;
    for chunk in data.chunks(100_000) {
        let end = offset + chunk.len() - 1;
        let r = reg
            .client
            .patch(&loc)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::ACCEPTED,
            "{}",
            r.text().await.unwrap()
        );
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        loc = reg.location(&r);
        offset = end + 1;
    }
    // An out-of-order chunk is refused with 416 and the current range.
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "5-9")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));
    // Status.
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), format!("0-{}", data.len() - 1));
    // A wrong digest is refused and stores nothing.
    let wrong = Digest::sha256_of(b"wrong");
    let r = reg
        .client
        .put(format!("{loc}?digest={wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = reg.head(&format!("/v2/chunky/blobs/{wrong}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The right one completes it.
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = reg
        .get(&format!("/v2/chunky/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
    // A finished session is gone.
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

async fn push_streamed_and_final_chunk(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let data = vec![7u8; 2 << 20];
    let d = Digest::sha256_of(&data);
    let r = reg.post("/v2/stream/blobs/uploads/").await;
    let loc = reg.location(&r);
    // No Content-Range, no Content-Length: a chunked-encoding stream.
    let first = data[..1 << 20].to_vec();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        first
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let r = reg.client.patch(&loc).body(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = reg.location(&r);
    // The last chunk rides on the PUT.
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .body(data[1 << 20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn upload_sessions(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let r = reg.post("/v2/sess/blobs/uploads/").await;
    let loc = reg.location(&r);
    // Another repository cannot use the session.
    let id = loc.rsplit('/').next().unwrap().to_string();
    let r = reg.get(&format!("/v2/other/blobs/uploads/{id}")).await;
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = reg.client.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = reg.get("/v2/sess/blobs/uploads/not-a-uuid").await;
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = reg
        .client
        .put(
            reg.url("/v2/sess/blobs/uploads/00000000-0000-0000-0000-000000000000?digest=sha256:00"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn upload_survives_restart(b: Backend) {
    let mut reg = TestRegistry::start(b).await;
    let data = b"first half|second half".to_vec();
    let r = reg.post("/v2/resume/blobs/uploads/").await;
    let loc = reg.location(&r);
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "0-10")
        .body(data[..11].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let path = loc.trim_start_matches(&reg.base).to_string();
    reg.restart().await;
    let loc = reg.url(&path);
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-10");
    let d = Digest::sha256_of(&data);
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .body(data[11..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = reg
        .get(&format!("/v2/resume/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
}

async fn cross_repository_mount(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let d = reg.push_blob("src/repo", b"shared layer").await;
    let r = reg
        .client
        .post(reg.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/dst/repo/blobs/{d}"));
    // Without `from`, when the blob is stored (auth off).
    let r = reg
        .post(&format!("/v2/third/blobs/uploads/?mount={d}"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg.get(&format!("/v2/third/blobs/{d}")).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"shared layer");
    // A blob the source does not have: fall back to an upload session.
    let missing = Digest::sha256_of(b"nowhere");
    let r = reg
        .client
        .post(reg.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={missing}&from=src/repo"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").contains("/blobs/uploads/"));
}

async fn manifest_kinds(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let cfg = reg.push_blob("kinds", b"{}").await;
    let layer = reg.push_blob("kinds", b"layer").await;
    let docker = image_manifest(media::DOCKER_MANIFEST, &cfg, 2, &[(layer.clone(), 5)], None);
    let r = reg
        .put_manifest("kinds", "docker", media::DOCKER_MANIFEST, &docker)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let oci = image_manifest(media::OCI_MANIFEST, &cfg, 2, &[(layer, 5)], None);
    let r = reg
        .put_manifest("kinds", "oci", media::OCI_MANIFEST, &oci)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for (list_type, child_type, child) in [
        (media::DOCKER_MANIFEST_LIST, media::DOCKER_MANIFEST, &docker),
        (media::OCI_INDEX, media::OCI_MANIFEST, &oci),
    ] {
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": list_type,
            "manifests": [{"mediaType": child_type, "digest": Digest::sha256_of(child).to_string(), "size": child.len(),
                           "platform": {"architecture": "amd64", "os": "linux"}}]
        });
        let body = serde_json::to_vec(&index).unwrap();
        let d = Digest::sha256_of(&body);
        // By digest.
        let r = reg
            .put_manifest("kinds", &d.to_string(), list_type, &body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = reg
            .client
            .get(reg.url(&format!("/v2/kinds/manifests/{d}")))
            .header("accept", list_type)
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "content-type"), list_type);
    }
    // An index whose child is not in the repository.
    let orphan = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": Digest::sha256_of(b"x").to_string(), "size": 1}]});
    let r = reg
        .put_manifest(
            "kinds",
            "orphan",
            media::OCI_INDEX,
            &serde_json::to_vec(&orphan).unwrap(),
        )
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
}

async fn manifest_errors(b: Backend) {
    let reg = TestRegistry::start_with(b, "[limits]\nmax_manifest_bytes = 2048\n").await;
    let cfg = reg.push_blob("bad", b"{}").await;
    let missing = Digest::sha256_of(b"never pushed");
    let m = image_manifest(media::OCI_MANIFEST, &cfg, 2, &[(missing.clone(), 12)], None);
    let r = reg.put_manifest("bad", "t", media::OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("MANIFEST_BLOB_UNKNOWN") && body.contains(&missing.to_string()),
        "{body}"
    );

    let r = reg
        .put_manifest("bad", "t", media::OCI_MANIFEST, b"{not json")
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = reg
        .put_manifest(
            "bad",
            "t",
            "text/plain",
            br#"{"schemaVersion":2,"mediaType":"application/x-unknown","layers":[]}"#,
        )
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = reg
        .put_manifest("bad", "t", media::OCI_MANIFEST, br#"{"schemaVersion":1}"#)
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let big = format!(
        r#"{{"schemaVersion":2,"annotations":{{"x":"{}"}}}}"#,
        "a".repeat(4096)
    );
    let r = reg
        .put_manifest("bad", "t", media::OCI_MANIFEST, big.as_bytes())
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let good = image_manifest(media::OCI_MANIFEST, &cfg, 2, &[], None);
    let wrong = Digest::sha256_of(b"other");
    let r = reg
        .put_manifest("bad", &wrong.to_string(), media::OCI_MANIFEST, &good)
        .await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = reg
        .put_manifest("bad", "bad:tag", media::OCI_MANIFEST, &good)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Nothing of the refused pushes is visible.
    let r = reg.get("/v2/bad/tags/list").await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));
}

async fn invalid_names(b: Backend) {
    let reg = TestRegistry::start(b).await;
    for path in [
        "/v2/a//b/tags/list",
        "/v2/UPPER/tags/list",
        "/v2/a_/manifests/x",
        "/v2/-x/blobs/uploads/",
    ] {
        let r = reg.post(path).await;
        let r = if r.status() == StatusCode::METHOD_NOT_ALLOWED {
            reg.get(path).await
        } else {
            r
        };
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{path}");
    }
    let r = reg.get("/v2/x/blobs/sha256:zzz").await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

async fn tags_and_catalog(b: Backend) {
    let reg = TestRegistry::start(b).await;
    for tag in ["c", "a", "b", "d", "e"] {
        reg.push_image("lists/one", tag, tag.as_bytes()).await;
    }
    reg.push_image("lists/two", "x", b"x").await;
    reg.push_image("zeta", "x", b"x").await;
    let r = reg.get("/v2/lists/one/tags/list").await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "lists/one", "tags": ["a", "b", "c", "d", "e"]})
    );
    let r = reg.get("/v2/lists/one/tags/list?n=2").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/lists/one/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    let r = reg.get("/v2/lists/one/tags/list?n=2&last=d").await;
    assert!(r.headers().get("link").is_none());
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["e"]));
    let r = reg.get("/v2/lists/one/tags/list?n=0").await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));
    let r = reg.get("/v2/unknown/repo/tags/list").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");

    let r = reg.get("/v2/_catalog").await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["lists/one", "lists/two", "zeta"])
    );
    let r = reg.get("/v2/_catalog?n=1&last=lists/one").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=1&last=lists/two>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["lists/two"]));
}

async fn referrers(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let (subject, sd) = reg.push_image("ref", "base", b"base layer").await;
    let empty = reg.push_blob("ref", b"{}").await;
    let mut pushed = Vec::new();
    for (artifact_type, n) in [
        ("application/vnd.example.sbom", 1u8),
        ("application/vnd.example.sig", 2),
        ("application/vnd.example.sbom", 3),
    ] {
        let blob = reg.push_blob("ref", &[n; 10]).await;
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": media::OCI_EMPTY, "digest": empty.to_string(), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": blob.to_string(), "size": 10}],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": sd.to_string(), "size": subject.len()},
            "annotations": {"n": n.to_string()}
        });
        let body = serde_json::to_vec(&m).unwrap();
        let d = Digest::sha256_of(&body);
        let r = reg
            .put_manifest("ref", &d.to_string(), media::OCI_MANIFEST, &body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        assert_eq!(header(&r, "oci-subject"), sd.to_string());
        pushed.push(d);
    }
    let r = reg.get(&format!("/v2/ref/referrers/{sd}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), media::OCI_INDEX);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 3);
    let r = reg
        .client
        .get(reg.url(&format!(
            "/v2/ref/referrers/{sd}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|d| d["artifactType"] == "application/vnd.example.sbom"
                && d["annotations"]["n"].is_string())
    );
    // Deleting a referrer removes it from the list.
    let r = reg
        .delete(&format!("/v2/ref/manifests/{}", pushed[1]))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let v: serde_json::Value = reg
        .get(&format!("/v2/ref/referrers/{sd}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    // Unknown subject: an empty index. Bad digest: 400.
    let r = reg
        .get(&format!("/v2/ref/referrers/{}", Digest::sha256_of(b"?")))
        .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    let r = reg.get("/v2/ref/referrers/sha256:1").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn content_management(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let (_, md) = reg.push_image("mgmt", "t1", b"mgmt layer").await;
    let r = reg
        .put_manifest(
            "mgmt",
            "t2",
            media::OCI_MANIFEST,
            &reg.get("/v2/mgmt/manifests/t1")
                .await
                .bytes()
                .await
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Delete a tag: the manifest stays.
    let r = reg.delete("/v2/mgmt/manifests/t2").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        reg.get("/v2/mgmt/manifests/t2").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.get(&format!("/v2/mgmt/manifests/{md}")).await.status(),
        StatusCode::OK
    );
    // Delete by digest: the manifest and its tags go.
    let r = reg.delete(&format!("/v2/mgmt/manifests/{md}")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        reg.get(&format!("/v2/mgmt/manifests/{md}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.get("/v2/mgmt/manifests/t1").await.status(),
        StatusCode::NOT_FOUND
    );
    let r = reg.delete(&format!("/v2/mgmt/manifests/{md}")).await;
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    // Delete a blob.
    let ld = Digest::sha256_of(b"mgmt layer");
    let r = reg.delete(&format!("/v2/mgmt/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg.get(&format!("/v2/mgmt/blobs/{ld}")).await;
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    let r = reg.delete(&format!("/v2/mgmt/blobs/{ld}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn same_blob_from_32_clients(b: Backend) {
    let reg = std::sync::Arc::new(TestRegistry::start(b).await);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = Digest::sha256_of(&data);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let reg = reg.clone();
            let data = data.clone();
            tokio::spawn(async move { reg.push_blob("race", &data).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), d);
    }
    let got = reg
        .get(&format!("/v2/race/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(Digest::sha256_of(&got), d);
}

async fn garbage_collection(b: Backend) {
    let reg = TestRegistry::start(b).await;
    let (_, _md) = reg.push_image("gc/kept", "v1", b"referenced layer").await;
    let orphan = reg.push_blob("gc/orphan", b"nobody references me").await;
    let r = reg.post("/v2/gc/orphan/blobs/uploads/").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Past the window in which GC treats fresh writes as in flight.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let registry = kiln_registry::server::build(
        reg.data_dir(),
        kiln_registry::Config::parse(&gc_config(b, &reg)).unwrap(),
    )
    .unwrap()
    .0;
    // With the grace period, nothing young is touched.
    let opts = kiln_registry::gc::GcOptions {
        grace: std::time::Duration::from_secs(3600),
        upload_ttl: std::time::Duration::from_secs(3600),
        dry_run: false,
    };
    let report = kiln_registry::gc::collect(&registry, &opts).await.unwrap();
    assert_eq!(report.blobs_deleted, 0);
    let opts = kiln_registry::gc::GcOptions {
        grace: std::time::Duration::ZERO,
        upload_ttl: std::time::Duration::ZERO,
        dry_run: false,
    };
    let report = kiln_registry::gc::collect(&registry, &opts).await.unwrap();
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert_eq!(report.uploads_deleted, 1, "{report:?}");
    let r = reg.head(&format!("/v2/gc/orphan/blobs/{orphan}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reg.get("/v2/gc/kept/manifests/v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let ld = Digest::sha256_of(b"referenced layer");
    let got = reg
        .get(&format!("/v2/gc/kept/blobs/{ld}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"referenced layer");
}

/// The same storage the test registry uses, for a second (GC) process view.
fn gc_config(b: Backend, reg: &TestRegistry) -> String {
    match b {
        Backend::Fs => String::new(),
        Backend::S3 => reg.s3_toml(),
    }
}

async fn metrics_endpoint(b: Backend) {
    let reg = TestRegistry::start(b).await;
    reg.push_image("m", "v", b"metrics").await;
    reg.get("/v2/m/manifests/v").await;
    let text = reg.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            "kiln_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("kiln_registry_received_bytes_total"));
    assert!(text.contains("kiln_registry_stored_blobs 3"), "{text}");
}

on_both_backends!(
    base_endpoint,
    pull_workflow,
    push_monolithic,
    push_chunked,
    push_streamed_and_final_chunk,
    upload_sessions,
    upload_survives_restart,
    cross_repository_mount,
    manifest_kinds,
    manifest_errors,
    invalid_names,
    tags_and_catalog,
    referrers,
    content_management,
    same_blob_from_32_clients,
    garbage_collection,
    metrics_endpoint,
);
