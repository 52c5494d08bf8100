//! The batch manifest, `deploy/kubernetes-batch.yaml`: an Indexed Job whose pods each run `icnr-upscale batch` on
//! one shard of a shared ReadWriteMany volume, with the Deployment's image and the same locked-down pod.
//!
//! No cluster is needed: the manifest is parsed as YAML and checked property by property, as `tests/deploy.rs` does
//! for the Deployment. The batch command itself is not run here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;

const MANIFEST: &str = "deploy/kubernetes-batch.yaml";
const DEPLOYMENT: &str = "deploy/kubernetes.yaml";
const CLAIM: &str = "icnr-upscale-batch-data";
const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
const INDEX_ANNOTATION: &str = "metadata.annotations['batch.kubernetes.io/job-completion-index']";

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of a manifest file, in order.
fn documents_of(file: &str) -> Vec<Value> {
    let text = read(file);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: invalid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn documents() -> Vec<Value> {
    documents_of(MANIFEST)
}

/// The one document of this `kind` in the batch manifest.
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

fn strings(v: &Value, path: &str) -> Vec<String> {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{MANIFEST}: `{path}` is not a list"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("{MANIFEST}: `{path}` holds a non-string {s:?}")).to_string())
        .collect()
}

/// The Job's pod spec.
fn pod() -> Value {
    at(&document("Job"), "spec.template.spec").clone()
}

/// The Job's one container.
fn container() -> Value {
    let containers = at(&pod(), "containers").as_sequence().expect("containers is a list").clone();
    assert_eq!(containers.len(), 1, "{MANIFEST}: the Job runs one container");
    containers[0].clone()
}

/// The container's arguments (after the image's ENTRYPOINT).
fn args() -> Vec<String> {
    strings(&container(), "args")
}

/// The value following `flag` in the arguments (`--flag value`; `--flag=value` is accepted too).
fn flag(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            Some(args.get(i + 1).unwrap_or_else(|| panic!("{MANIFEST}: {flag} has no value")).clone())
        } else {
            a.strip_prefix(&prefix).map(str::to_string)
        }
    })
}

/// The positional arguments of the batch subcommand: those that are neither flags nor a flag's value.
/// Every flag of the manifest takes a value except the listed switches.
fn positionals(args: &[String]) -> Vec<String> {
    const SWITCHES: [&str; 1] = ["--overwrite"];
    let mut out = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a.starts_with("--") {
            if !SWITCHES.contains(&a.as_str()) && !a.contains('=') {
                it.next();
            }
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// The container's environment as name -> its entry (`value` or `valueFrom`).
fn env() -> BTreeMap<String, Value> {
    let c = container();
    let mut out = BTreeMap::new();
    for e in at(&c, "env").as_sequence().expect("env is a list") {
        let name = str_at(e, "name").to_string();
        assert!(out.insert(name.clone(), e.clone()).is_none(), "{MANIFEST}: env {name} is set twice");
    }
    out
}

/// `--shard I/N` as (I, N), both as written.
fn shard() -> (String, String) {
    let value = flag(&args(), "--shard").unwrap_or_else(|| panic!("{MANIFEST}: the batch command has no --shard"));
    let (i, n) = value.split_once('/').unwrap_or_else(|| panic!("{MANIFEST}: --shard {value:?} is not I/N"));
    (i.to_string(), n.to_string())
}

/// The mount path of the volume backed by the claim, in the container.
fn data_mount_path() -> String {
    let volumes = at(&pod(), "volumes").as_sequence().expect("volumes is a list").clone();
    let volume = volumes
        .iter()
        .find(|v| v.get("persistentVolumeClaim").is_some())
        .unwrap_or_else(|| panic!("{MANIFEST}: no volume from a PersistentVolumeClaim"));
    assert_eq!(str_at(volume, "persistentVolumeClaim.claimName"), CLAIM);
    let name = str_at(volume, "name").to_string();
    let c = container();
    let mounts = at(&c, "volumeMounts").as_sequence().expect("volumeMounts is a list");
    let mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("{MANIFEST}: the container does not mount volume {name}"));
    assert!(!mount["readOnly"].as_bool().unwrap_or(false), "{MANIFEST}: the data volume must be writable");
    str_at(mount, "mountPath").trim_end_matches('/').to_string()
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

/// The manifest holds the claim, then the Job that uses it.
#[test]
fn manifest_holds_claim_and_job() {
    let kinds: Vec<String> = documents().iter().map(|d| str_at(d, "kind").to_string()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Job"]);
    assert_eq!(str_at(&document("PersistentVolumeClaim"), "apiVersion"), "v1");
    assert_eq!(str_at(&document("Job"), "apiVersion"), "batch/v1");
    assert_eq!(str_at(&document("PersistentVolumeClaim"), "metadata.name"), CLAIM);
}

/// The claim is shared by pods on any node (ReadWriteMany) and asks for storage.
#[test]
fn claim_is_read_write_many_with_storage() {
    let claim = document("PersistentVolumeClaim");
    let modes = strings(&claim, "spec.accessModes");
    assert!(modes.iter().any(|m| m == "ReadWriteMany"), "{MANIFEST}: the claim's accessModes {modes:?} lack RWX");
    assert!(bytes(at(&claim, "spec.resources.requests.storage")) >= 1 << 30, "{MANIFEST}: under 1 GiB of storage");
}

/// An Indexed Job of N completions, N > 1, at most N pods at once.
#[test]
fn job_is_indexed() {
    let job = document("Job");
    assert_eq!(str_at(&job, "spec.completionMode"), "Indexed");
    let completions = int_at(&job, "spec.completions");
    assert!(completions > 1, "{MANIFEST}: completions {completions}: a single shard is not a parallel batch");
    let parallelism = int_at(&job, "spec.parallelism");
    assert!((1..=completions).contains(&parallelism), "{MANIFEST}: parallelism {parallelism} of {completions}");
}

/// Each pod takes shard `$(JOB_COMPLETION_INDEX)/N` with N = completions, so the indexes 0..N-1 cover every input
/// exactly once.
#[test]
fn shard_count_equals_completions() {
    let (index, count) = shard();
    assert_eq!(index, format!("$({INDEX_VAR})"), "{MANIFEST}: the shard index must be the pod's completion index");
    let count: i64 = count.parse().unwrap_or_else(|_| panic!("{MANIFEST}: shard count {count:?} is not a number"));
    assert_eq!(count, int_at(&document("Job"), "spec.completions"), "{MANIFEST}: --shard .../N must equal completions");
}

/// `$(JOB_COMPLETION_INDEX)` is expanded by Kubernetes only for a declared variable: it is declared from the
/// downward API's completion-index annotation, and every `$(VAR)` in the args is declared.
#[test]
fn completion_index_is_declared_from_downward_api() {
    let env = env();
    let index = env.get(INDEX_VAR).unwrap_or_else(|| panic!("{MANIFEST}: env {INDEX_VAR} is not declared"));
    assert_eq!(str_at(index, "valueFrom.fieldRef.fieldPath"), INDEX_ANNOTATION);
    for arg in args() {
        let mut rest = arg.as_str();
        while let Some(start) = rest.find("$(") {
            let end = rest[start..].find(')').unwrap_or_else(|| panic!("{MANIFEST}: unclosed $( in {arg:?}"));
            let var = &rest[start + 2..start + end];
            assert!(env.contains_key(var), "{MANIFEST}: arg {arg:?} uses $({var}), which is not declared in env");
            rest = &rest[start + end..];
        }
    }
}

/// The container runs the image's binary with the `batch` subcommand, reading and writing on the shared volume,
/// without a progress bar (logs are not a terminal).
#[test]
fn command_is_batch_on_the_shared_volume() {
    let c = container();
    // The image's ENTRYPOINT is the binary: `command` would replace it.
    if let Some(command) = c.get("command") {
        let command: Vec<&str> = command.as_sequence().expect("command").iter().filter_map(Value::as_str).collect();
        assert_eq!(command, ["/usr/local/bin/icnr-upscale"], "{MANIFEST}: command must be the image's binary");
    }
    let args = args();
    assert_eq!(args.first().map(String::as_str), Some("batch"), "{MANIFEST}: args must start with `batch`");
    let mount = data_mount_path();
    let out = flag(&args, "--out-dir").unwrap_or_else(|| panic!("{MANIFEST}: no --out-dir"));
    assert!(out.starts_with(&format!("{mount}/")), "{MANIFEST}: --out-dir {out} is not on the volume at {mount}");
    let inputs = positionals(&args);
    assert!(!inputs.is_empty(), "{MANIFEST}: the batch command has no input");
    for input in &inputs {
        assert!(input.starts_with(&format!("{mount}/")), "{MANIFEST}: input {input} is not on the volume at {mount}");
        assert_ne!(input.trim_end_matches('/'), out.trim_end_matches('/'), "{MANIFEST}: input dir == --out-dir");
    }
    assert_eq!(flag(&args, "--progress").as_deref(), Some("never"), "{MANIFEST}: pass --progress never");
}

/// The pods run the image that the Deployment runs.
#[test]
fn image_is_the_deployments() {
    let deployment = documents_of(DEPLOYMENT)
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .expect("deploy/kubernetes.yaml has a Deployment");
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"].as_str().expect("its image");
    assert_eq!(str_at(&container(), "image"), image);
}

/// Failed pods are retried a bounded number of times, pods are not restarted in place forever, and the finished
/// Job is cleaned up.
#[test]
fn job_retries_are_bounded_and_cleaned_up() {
    let job = document("Job");
    let spec = at(&job, "spec");
    let per_index = spec.get("backoffLimitPerIndex").and_then(Value::as_i64);
    let total = spec.get("backoffLimit").and_then(Value::as_i64);
    assert!(per_index.or(total).is_some(), "{MANIFEST}: set backoffLimitPerIndex or backoffLimit");
    assert!(per_index.or(total).unwrap() >= 0);
    let pod = pod();
    let restart = str_at(&pod, "restartPolicy");
    assert!(["Never", "OnFailure"].contains(&restart), "{MANIFEST}: restartPolicy {restart}");
    if per_index.is_some() || spec.get("podFailurePolicy").is_some() {
        assert_eq!(restart, "Never", "{MANIFEST}: backoffLimitPerIndex and podFailurePolicy need restartPolicy Never");
    }
    assert!(int_at(&job, "spec.ttlSecondsAfterFinished") > 0);
    // A usage error (exit 2) is the same on every retry: if there is a failure policy, it fails the Job at once.
    if let Some(policy) = spec.get("podFailurePolicy") {
        let rules = at(policy, "rules").as_sequence().expect("podFailurePolicy.rules is a list");
        let usage = rules.iter().find(|r| {
            r["action"].as_str() == Some("FailJob")
                && r["onExitCodes"]["operator"].as_str() == Some("In")
                && r["onExitCodes"]["values"].as_sequence().is_some_and(|v| v.contains(&Value::from(2)))
        });
        let usage = usage.unwrap_or_else(|| panic!("{MANIFEST}: no FailJob rule for exit code 2 (usage error)"));
        if let Some(name) = usage["onExitCodes"]["containerName"].as_str() {
            assert_eq!(name, str_at(&container(), "name"));
        }
    }
}

/// CPU and memory are requested and limited, requests == limits, there are as many CPUs as images at once
/// (`--jobs`, when given; the Deployment likewise has as many CPUs as concurrent jobs), and the memory limit holds
/// the batch's `--memory-mb` budget with room to spare.
#[test]
fn resources_are_set() {
    let c = container();
    for kind in ["requests", "limits"] {
        assert!(millicores(at(&c, &format!("resources.{kind}.cpu"))) > 0);
        assert!(bytes(at(&c, &format!("resources.{kind}.memory"))) >= 256 << 20);
    }
    let cpu = millicores(at(&c, "resources.limits.cpu"));
    assert_eq!(millicores(at(&c, "resources.requests.cpu")), cpu, "cpu request must equal the limit");
    assert_eq!(
        bytes(at(&c, "resources.requests.memory")),
        bytes(at(&c, "resources.limits.memory")),
        "memory request must equal the limit"
    );
    // The batch's own memory budget for the images in flight must fit in the limit, with room for the process.
    if let Some(mb) = flag(&args(), "--memory-mb") {
        let mb: u64 = mb.parse().unwrap_or_else(|_| panic!("{MANIFEST}: --memory-mb {mb:?}"));
        let limit = bytes(at(&c, "resources.limits.memory"));
        assert!(
            limit >= (mb + 512) << 20,
            "{MANIFEST}: memory limit {} MiB leaves under 512 MiB over --memory-mb {mb}",
            limit >> 20
        );
    }
    if let Some(jobs) = flag(&args(), "--jobs") {
        let jobs: u64 = jobs.parse().unwrap_or_else(|_| panic!("{MANIFEST}: --jobs {jobs:?}"));
        assert_eq!(cpu, jobs * 1000, "{MANIFEST}: cpu limit must equal --jobs ({jobs})");
    }
}

/// The pod and its container run as the image's non-root uid, cannot gain privileges, have no capabilities, cannot
/// write their root filesystem and use the runtime's default seccomp profile.
#[test]
fn security_context_is_non_root_and_locked_down() {
    let c = container();
    let p = pod();
    let dockerfile_uid: i64 = read("Dockerfile")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .and_then(|u| u.trim().split(':').next()?.parse().ok())
        .expect("the Dockerfile has a numeric USER");
    assert_ne!(dockerfile_uid, 0);
    assert!(bool_at(&p, "securityContext.runAsNonRoot"));
    assert_eq!(int_at(&p, "securityContext.runAsUser"), dockerfile_uid);
    assert_eq!(str_at(&p, "securityContext.seccompProfile.type"), "RuntimeDefault");
    assert!(bool_at(&c, "securityContext.runAsNonRoot"));
    assert_eq!(int_at(&c, "securityContext.runAsUser"), dockerfile_uid);
    assert!(bool_at(&c, "securityContext.readOnlyRootFilesystem"));
    assert!(!bool_at(&c, "securityContext.allowPrivilegeEscalation"));
    assert_eq!(strings(&c, "securityContext.capabilities.drop"), ["ALL"]);
}

/// The Job and its pods carry the app label.
#[test]
fn pods_are_labelled() {
    let job = document("Job");
    for path in ["metadata.labels", "spec.template.metadata.labels"] {
        let labels = at(&job, path);
        assert_eq!(labels["app.kubernetes.io/name"].as_str(), Some("icnr-upscale-batch"), "{MANIFEST}: {path}");
    }
}
