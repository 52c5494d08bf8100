//! The (method, path) pairs the router serves.

/// Every (method, path) the router serves; the OpenAPI test checks `openapi.yaml` against this list, and a test
/// checks the live router answers each of them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("POST", "/upscale"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("GET", "/kernel"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.yaml"),
];

/// `ROUTES` as text, for the 404 detail.
pub fn route_list() -> String {
    ROUTES.iter().map(|(m, p)| format!("{m} {p}")).collect::<Vec<_>>().join(", ")
}
