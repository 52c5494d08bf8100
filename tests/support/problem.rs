//! RFC 9457 problem documents: the one check of an error answer.

/// Checks an error answer is `application/problem+json` with a `type` URI, non-empty `title` and `detail`, and a
/// `status` equal to the HTTP status; returns the document.
pub fn check_problem(status: u16, content_type: Option<&str>, body: &[u8]) -> Result<serde_json::Value, String> {
    let ct = content_type.unwrap_or("");
    if ct != "application/problem+json" {
        return Err(format!("content-type {ct:?}, expected application/problem+json"));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("problem body is not JSON ({e}): {}", super::http::lossy(body)))?;
    for field in ["type", "title", "detail"] {
        match v.get(field).and_then(|f| f.as_str()) {
            Some(s) if !s.is_empty() => {}
            _ => return Err(format!("problem without a non-empty string `{field}`: {v}")),
        }
    }
    if !v["type"].as_str().is_some_and(|t| t.contains(':')) {
        return Err(format!("problem `type` is not a URI: {v}"));
    }
    if v.get("status").and_then(|s| s.as_u64()) != Some(status as u64) {
        return Err(format!("problem `status` is not {status}: {v}"));
    }
    Ok(v)
}

/// The `detail` of a problem document that passed [`check_problem`].
pub fn detail(problem: &serde_json::Value) -> String {
    problem["detail"].as_str().unwrap_or_default().to_owned()
}

/// Asserts that a reqwest answer has this status, is a problem document ([`check_problem`]) and carries an
/// `X-Request-Id`; returns the document.
pub async fn assert_problem(res: reqwest::Response, status: u16) -> serde_json::Value {
    let got = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("problem body");
    assert_eq!(got, status, "status; body: {}", String::from_utf8_lossy(&body));
    assert!(headers.get("x-request-id").is_some(), "X-Request-Id on a {status}");
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
    check_problem(status, ct, &body).unwrap_or_else(|e| panic!("a {status}: {e}"))
}
