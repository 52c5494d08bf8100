//! The deployment files agree with the service: `deploy/kubernetes.yaml` (Deployment, Service,
//! HorizontalPodAutoscaler) and the `Dockerfile`.
//!
//! No cluster or Docker engine is needed: the manifests are parsed as YAML and checked property by property, and
//! every `ICNR_UPSCALE_*` variable they set is parsed by the real `serve` flags, so a renamed flag or a bad value
//! fails here rather than in a pod that never becomes ready.

use std::collections::BTreeMap;
use std::path::Path;

use clap::{Args, Command};
use icnr_upscale::server::ServeArgs;
use serde::Deserialize;
use serde_yaml::Value;

const MANIFEST: &str = "deploy/kubernetes.yaml";
const DOCKERFILE: &str = "Dockerfile";
/// The port the image exposes and the manifests target.
const PORT: i64 = 8080;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of the manifest file, in order.
fn documents() -> Vec<Value> {
    let text = read(MANIFEST);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{MANIFEST}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one document of this `kind`.
fn document(kind: &str) -> Value {
    let mut found: Vec<Value> = documents().into_iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "{MANIFEST}: expected exactly one {kind}");
    found.remove(0)
}

/// Follows `path` (dot-separated keys, or list indexes) from `v`, panicking with the path if it is missing.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        let next = match key.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(key),
        };
        cur = next.unwrap_or_else(|| panic!("{MANIFEST}: missing `{path}` (at `{key}`)"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).as_str().unwrap_or_else(|| panic!("{MANIFEST}: `{path}` is not a string"))
}

fn int_at(v: &Value, path: &str) -> i64 {
    at(v, path).as_i64().unwrap_or_else(|| panic!("{MANIFEST}: `{path}` is not an integer"))
}

fn bool_at(v: &Value, path: &str) -> bool {
    at(v, path).as_bool().unwrap_or_else(|| panic!("{MANIFEST}: `{path}` is not a boolean"))
}

/// The Deployment's one container.
fn container() -> Value {
    let deployment = document("Deployment");
    let containers = at(&deployment, "spec.template.spec.containers").as_sequence().expect("containers is a list");
    assert_eq!(containers.len(), 1, "{MANIFEST}: the Deployment runs one container");
    containers[0].clone()
}

/// The container's environment as name -> value.
fn env() -> BTreeMap<String, String> {
    let c = container();
    let list = at(&c, "env").as_sequence().expect("env is a list");
    let mut out = BTreeMap::new();
    for e in list {
        let name = str_at(e, "name").to_string();
        let value = str_at(e, "value").to_string();
        assert!(out.insert(name.clone(), value).is_none(), "{MANIFEST}: env {name} is set twice");
    }
    out
}

/// A Kubernetes CPU quantity in millicores: `"2"`, `2`, `"1500m"`, `"0.5"`.
fn millicores(q: &Value) -> u64 {
    let s = match q {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("not a CPU quantity: {other:?}"),
    };
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().unwrap_or_else(|_| panic!("bad CPU quantity {s:?}"));
    }
    let cores: f64 = s.parse().unwrap_or_else(|_| panic!("bad CPU quantity {s:?}"));
    (cores * 1000.0).round() as u64
}

/// A Kubernetes memory quantity in bytes: `"2Gi"`, `"512Mi"`, `"2G"`, `"1073741824"`.
fn bytes(q: &Value) -> u64 {
    let s = q.as_str().map(str::to_string).or_else(|| q.as_u64().map(|n| n.to_string())).expect("memory quantity");
    const UNITS: [(&str, u64); 6] =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000)];
    for (suffix, mult) in UNITS {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap_or_else(|_| panic!("bad memory quantity {s:?}")) * mult;
        }
    }
    s.parse().unwrap_or_else(|_| panic!("bad memory quantity {s:?}"))
}

/// The `serve` flags, resolved as the binary would resolve them from this environment: the manifest's
/// `ICNR_UPSCALE_<FLAG>` variables become `--<flag>` arguments, and every other flag keeps its default.
/// Returns each flag's value (by clap id, e.g. `max_body_bytes`) as the raw string.
fn serve_flags(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let cmd = ServeArgs::augment_args(Command::new("serve").no_binary_name(true));
    let mut argv = Vec::new();
    for (name, value) in env {
        let flag = name
            .strip_prefix("ICNR_UPSCALE_")
            .unwrap_or_else(|| panic!("{MANIFEST}: env {name} is not an ICNR_UPSCALE_* setting"))
            .to_lowercase()
            .replace('_', "-");
        let known = cmd.get_arguments().any(|a| a.get_long() == Some(flag.as_str()));
        assert!(known, "{MANIFEST}: env {name} matches no `icnr-upscale serve` flag (--{flag})");
        argv.push(format!("--{flag}={value}"));
    }
    let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
    let matches = cmd
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{MANIFEST}: `icnr-upscale serve` rejects the manifest's environment: {e}"));
    ids.into_iter()
        .filter_map(|id| {
            let raw = matches.get_raw(&id)?;
            let joined = raw.map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>().join(",");
            Some((id, joined))
        })
        .collect()
}

fn flag_u64(flags: &BTreeMap<String, String>, id: &str) -> u64 {
    let raw = flags.get(id).unwrap_or_else(|| panic!("`icnr-upscale serve` has no value for {id}"));
    raw.replace('_', "").parse().unwrap_or_else(|_| panic!("{id} = {raw:?} is not a whole number"))
}

/// The manifest holds exactly a Deployment, a Service and an autoscaling/v2 HorizontalPodAutoscaler, all named
/// icnr-upscale.
#[test]
fn manifest_holds_deployment_service_and_hpa() {
    let kinds: Vec<String> = documents().iter().map(|d| str_at(d, "kind").to_string()).collect();
    assert_eq!(kinds, ["Deployment", "Service", "HorizontalPodAutoscaler"]);
    for d in documents() {
        assert_eq!(str_at(&d, "metadata.name"), "icnr-upscale");
    }
    assert_eq!(str_at(&document("Deployment"), "apiVersion"), "apps/v1");
    assert_eq!(str_at(&document("Service"), "apiVersion"), "v1");
    assert_eq!(str_at(&document("HorizontalPodAutoscaler"), "apiVersion"), "autoscaling/v2");
}

/// Two replicas of one container that listens on 8080 on all interfaces, as the image does.
#[test]
fn deployment_runs_two_replicas_listening_on_8080() {
    let d = document("Deployment");
    assert_eq!(int_at(&d, "spec.replicas"), 2);
    let c = container();
    assert_eq!(int_at(&c, "ports.0.containerPort"), PORT);
    assert_eq!(env().get("ICNR_UPSCALE_BIND").map(String::as_str), Some("0.0.0.0:8080"));
    // The selector must pick the pods the template makes.
    let selector = at(&d, "spec.selector.matchLabels").as_mapping().expect("matchLabels");
    let labels = at(&d, "spec.template.metadata.labels").as_mapping().expect("pod labels");
    for (k, v) in selector {
        assert_eq!(labels.get(k), Some(v), "{MANIFEST}: pod labels lack selector label {k:?}");
    }
}

/// Every environment variable is a real `serve` flag with a value it accepts.
#[test]
fn deployment_env_parses_as_serve_flags() {
    let flags = serve_flags(&env());
    assert_eq!(flags.get("bind").map(String::as_str), Some("0.0.0.0:8080"));
    assert!(flag_u64(&flags, "max_concurrent_jobs") >= 1);
}

/// CPU: as many CPUs as concurrent jobs, which share them (one rayon pool), requests == limits (Guaranteed QoS). Memory: requests == limits, and the limit
/// covers the worst case of the configured limits (the arithmetic is the manifest's comment). Per running job, the
/// larger of decoding (body + decoded RGBA16 input at 8 bytes/pixel + the decoder's copy) and encoding (body + input
/// + an incompressible RGBA16 output PNG, twice for a growing Vec); plus every queued body and 64 MiB for the process.
#[test]
fn resources_match_max_concurrent_jobs() {
    let c = container();
    let flags = serve_flags(&env());
    let jobs = flag_u64(&flags, "max_concurrent_jobs");
    let cpu_limit = millicores(at(&c, "resources.limits.cpu"));
    let cpu_request = millicores(at(&c, "resources.requests.cpu"));
    assert_eq!(cpu_limit, jobs * 1000, "cpu limit must equal ICNR_UPSCALE_MAX_CONCURRENT_JOBS ({jobs})");
    assert_eq!(cpu_request, cpu_limit, "cpu request must equal the limit");

    let mem_limit = bytes(at(&c, "resources.limits.memory"));
    let mem_request = bytes(at(&c, "resources.requests.memory"));
    assert_eq!(mem_request, mem_limit, "memory request must equal the limit");
    let body = flag_u64(&flags, "max_body_bytes");
    let input = flag_u64(&flags, "max_input_pixels") * 8;
    let output = flag_u64(&flags, "max_output_pixels") * 8;
    let queue = flag_u64(&flags, "max_queue");
    let per_job = (body + 2 * input).max(body + input + 2 * output);
    let worst = jobs * per_job + queue * body + (64 << 20);
    assert!(
        mem_limit >= worst,
        "memory limit {} MiB is below the worst case {} MiB of {jobs} jobs and {queue} queued bodies",
        mem_limit >> 20,
        worst >> 20
    );
}

/// Liveness and readiness both GET /healthz on the container port.
#[test]
fn probes_hit_healthz() {
    let c = container();
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(str_at(&c, &format!("{probe}.httpGet.path")), "/healthz");
        assert_eq!(int_at(&c, &format!("{probe}.httpGet.port")), PORT);
    }
}

/// The container runs as uid 10001, never root, cannot gain privileges, has no capabilities and cannot write its
/// root filesystem (the service writes nothing to disk).
#[test]
fn security_context_is_non_root_and_locked_down() {
    let c = container();
    assert!(bool_at(&c, "securityContext.runAsNonRoot"));
    assert_eq!(int_at(&c, "securityContext.runAsUser"), 10001);
    assert!(bool_at(&c, "securityContext.readOnlyRootFilesystem"));
    assert!(!bool_at(&c, "securityContext.allowPrivilegeEscalation"));
    let drop: Vec<&str> = at(&c, "securityContext.capabilities.drop")
        .as_sequence()
        .expect("capabilities.drop is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(drop, ["ALL"]);
    let pod = document("Deployment");
    assert!(bool_at(&pod, "spec.template.spec.securityContext.runAsNonRoot"));
}

/// The Service maps port 80 to the container's 8080 and selects the Deployment's pods.
#[test]
fn service_maps_80_to_8080() {
    let s = document("Service");
    assert_eq!(int_at(&s, "spec.ports.0.port"), 80);
    assert_eq!(int_at(&s, "spec.ports.0.targetPort"), PORT);
    let d = document("Deployment");
    assert_eq!(at(&s, "spec.selector"), at(&d, "spec.selector.matchLabels"));
}

/// The HPA scales the Deployment on CPU utilisation, from at least the Deployment's replicas.
#[test]
fn hpa_scales_deployment_on_cpu() {
    let h = document("HorizontalPodAutoscaler");
    assert_eq!(str_at(&h, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(str_at(&h, "spec.scaleTargetRef.name"), "icnr-upscale");
    let min = int_at(&h, "spec.minReplicas");
    let max = int_at(&h, "spec.maxReplicas");
    assert!(min >= int_at(&document("Deployment"), "spec.replicas") && min <= max, "replicas {min}..{max}");
    assert_eq!(str_at(&h, "spec.metrics.0.type"), "Resource");
    assert_eq!(str_at(&h, "spec.metrics.0.resource.name"), "cpu");
    assert_eq!(str_at(&h, "spec.metrics.0.resource.target.type"), "Utilization");
    let target = int_at(&h, "spec.metrics.0.resource.target.averageUtilization");
    assert!((1..=100).contains(&target), "averageUtilization {target}");
}

/// The Dockerfile's instructions (continuation lines joined, comments dropped) as (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read(DOCKERFILE).replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (ins, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (ins.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// The instructions of the last (runtime) stage.
fn runtime_stage() -> Vec<(String, String)> {
    let all = dockerfile();
    let last_from = all.iter().rposition(|(i, _)| i == "FROM").expect("a FROM line");
    all[last_from..].to_vec()
}

/// A JSON-array (exec form) argument list, e.g. `["serve"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{DOCKERFILE}: `{args}` is not exec form: {e}"))
}

/// Multi-stage with cargo-chef dependency caching; the runtime stage is a slim image that only copies the binary.
#[test]
fn dockerfile_is_multi_stage_with_dependency_caching() {
    let all = dockerfile();
    let froms = all.iter().filter(|(i, _)| i == "FROM").count();
    assert!(froms >= 3, "{DOCKERFILE}: expected chef/planner/builder/runtime stages, found {froms} FROM lines");
    let runs: Vec<&str> = all.iter().filter(|(i, _)| i == "RUN").map(|(_, a)| a.as_str()).collect();
    assert!(runs.iter().any(|r| r.contains("cargo chef prepare")), "{DOCKERFILE}: no `cargo chef prepare`");
    assert!(runs.iter().any(|r| r.contains("cargo chef cook --release")), "{DOCKERFILE}: no `cargo chef cook`");
    let runtime = runtime_stage();
    let base = &runtime[0].1;
    assert!(base.contains("slim") || base.contains("distroless"), "{DOCKERFILE}: runtime base {base:?} is not slim");
    assert!(!runtime.iter().any(|(i, _)| i == "RUN"), "{DOCKERFILE}: the runtime stage should only copy the binary");
}

/// The runtime stage runs as the same numeric non-root user as the Kubernetes securityContext, exposes 8080, binds
/// 0.0.0.0:8080 through the environment, has a HEALTHCHECK that uses the binary itself, and starts `serve` as the
/// Deployment does.
#[test]
fn dockerfile_runtime_is_non_root_with_port_env_and_healthcheck() {
    let runtime = runtime_stage();
    let get = |ins: &str| -> Vec<&str> { runtime.iter().filter(|(i, _)| i == ins).map(|(_, a)| a.as_str()).collect() };

    let users = get("USER");
    let user = *users.last().unwrap_or_else(|| panic!("{DOCKERFILE}: no USER in the runtime stage"));
    let uid: u32 = user.split(':').next().unwrap().parse().expect("USER is numeric, so runAsNonRoot can check it");
    assert_ne!(uid, 0, "{DOCKERFILE}: USER is root");
    assert_eq!(i64::from(uid), int_at(&container(), "securityContext.runAsUser"));

    assert_eq!(get("EXPOSE"), ["8080"]);
    assert!(
        get("ENV").contains(&"ICNR_UPSCALE_BIND=0.0.0.0:8080"),
        "{DOCKERFILE}: no ENV ICNR_UPSCALE_BIND=0.0.0.0:8080"
    );

    let hc = get("HEALTHCHECK");
    assert_eq!(hc.len(), 1, "{DOCKERFILE}: expected one HEALTHCHECK");
    let cmd = hc[0].split_once("CMD ").map(|(_, c)| c).expect("HEALTHCHECK ... CMD [...]");
    assert_eq!(exec_form(cmd), ["/usr/local/bin/icnr-upscale", "healthcheck"]);

    // ENTRYPOINT + CMD as the container would run them, against the Deployment's args.
    let entry = get("ENTRYPOINT").last().map(|e| exec_form(e)).unwrap_or_default();
    let cmd = get("CMD").last().map(|c| exec_form(c)).expect("a CMD");
    let mut argv = entry;
    argv.extend(cmd.iter().cloned());
    assert_eq!(argv, ["/usr/local/bin/icnr-upscale", "serve"]);
    let args: Vec<String> = at(&container(), "args")
        .as_sequence()
        .expect("args is a list")
        .iter()
        .map(|v| v.as_str().expect("string arg").to_string())
        .collect();
    assert_eq!(args, cmd, "the Deployment's args must match the image's CMD");
}
