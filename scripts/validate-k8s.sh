#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests in deploy/kubernetes (no cluster, no kubectl):
#   1. every built-in resource against the Kubernetes OpenAPI schemas bundled with
#      kubernetes-validate (PyPI), strictly (unknown fields are errors), for each version in
#      $K8S_VERSIONS; a kind without a bundled schema is an error unless it is a known CRD
#      (KEDA's ScaledObject) or the Kustomization, which step 2 checks instead;
#   2. what a schema cannot see: the CRDs' and the Kustomization's required fields, the
#      embedded thresh.toml files (valid TOML, only `thresh serve` keys, no secrets), and how
#      the pieces refer to each other (selectors, Services, ConfigMaps, Secret keys, the PVC,
#      ports, probes, drain timing, security context).
# Exits non-zero on any failure. Needs python3 (3.11+ for tomllib; tomli is installed
# otherwise) and PyPI, once, for the validator.
#   bash scripts/validate-k8s.sh [DIR]     (DIR: default deploy/kubernetes)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$(cd "${1:-$root/deploy/kubernetes}" && pwd)"
# Oldest Kubernetes the manifests support, and a recent one.
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.33.0}"
# Pinned so that the bundled schemas (and their versions) do not change under CI.
KV_REQUIREMENT="${KV_REQUIREMENT:-kubernetes-validate==1.37.0}"

python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "validate-k8s: python3 is required" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "== validate-k8s: installing $KV_REQUIREMENT into a scratch venv"
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$KV_REQUIREMENT"
if ! "$tmp/venv/bin/python" -c 'import tomllib' 2>/dev/null; then
  "$tmp/venv/bin/pip" install -q --disable-pip-version-check tomli
fi

shopt -s nullglob
files=("$dir"/*.yaml)
if [ "${#files[@]}" -eq 0 ]; then
  echo "validate-k8s: no manifests in $dir" >&2
  exit 1
fi

status=0
# Kinds without a bundled schema that step 2 checks by hand ("kind apiVersion").
known_crds='ScaledObject keda.sh/v1alpha1
Kustomization kustomize.config.k8s.io/v1beta1'
for version in $K8S_VERSIONS; do
  echo "== schemas: kubernetes-validate --strict -k $version (${#files[@]} files)"
  out="$tmp/kv-$version.txt"
  rc=0
  "$tmp/venv/bin/kubernetes-validate" --strict -k "$version" "${files[@]}" >"$out" 2>&1 || rc=$?
  sed "s|$root/||g" "$out"
  if [ "$rc" -ne 0 ]; then
    echo "FAIL schema validation against Kubernetes $version (exit $rc)" >&2
    status=1
  fi
  # A missing schema is only a warning to kubernetes-validate; here it is an error unless
  # the kind is a known CRD (a typo in apiVersion or kind would otherwise pass unchecked).
  while IFS= read -r line; do
    kind=$(sed -n 's/.*for kind \([^ ]*\) with api version \([^ ]*\) for.*/\1 \2/p' <<<"$line")
    if [ -n "$kind" ] && grep -qxF "$kind" <<<"$known_crds"; then
      echo "skip $kind: a CRD or kustomize file, no bundled schema (checked in the next step)"
    else
      echo "FAIL no schema for: ${line#WARN }" >&2
      status=1
    fi
  done < <(grep '^WARN' "$out" || true)
done

echo "== structure, thresh.toml and cross-references"
"$tmp/venv/bin/python" - "$dir" <<'PY' || status=1
import os
import re
import sys

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

d = sys.argv[1]
failures = []


def ok(msg):
    print(f"ok   {msg}")


def check(cond, msg):
    if cond:
        ok(msg)
    else:
        failures.append(msg)
        print(f"FAIL {msg}")
    return cond


# The `thresh serve` settings a thresh.toml may use, with their TOML types.
PATHS = {"policy", "policy_tokenizer", "reward", "aligner"}
STRINGS = {"policy_model", "reward_head", "device", "dtype", "weights", "host", "log_format"}
INTS = {
    "port", "max_queue", "max_batch_requests", "max_n", "kv_budget_tokens", "max_body_bytes",
    "request_timeout", "shutdown_timeout", "max_connections", "header_timeout",
    "body_timeout", "max_input_tokens", "max_tokens_limit", "default_chat_max_tokens",
    "default_completion_max_tokens", "prefix_cache_mb",
}
BOOLS = {"score_plain"}
ALLOWED = PATHS | STRINGS | INTS | BOOLS
CLUSTER_SCOPED = {"Namespace", "Kustomization"}
NAMESPACE = "thresh"

docs = []  # (file, resource)
for name in sorted(os.listdir(d)):
    if not name.endswith(".yaml"):
        continue
    with open(os.path.join(d, name)) as f:
        try:
            items = [x for x in yaml.safe_load_all(f) if x]
        except yaml.YAMLError as e:
            check(False, f"{name}: YAML parses ({e})")
            continue
    check(len(items) > 0, f"{name}: YAML parses ({len(items)} resources)")
    docs.extend((name, x) for x in items)

by_kind = {}
seen = set()
for fname, r in docs:
    kind, api = r.get("kind"), r.get("apiVersion")
    meta = r.get("metadata") or {}
    name = meta.get("name")
    if kind == "Kustomization":
        check(bool(api), f"{fname}: Kustomization has apiVersion")
        by_kind.setdefault(kind, []).append((fname, r))
        continue
    if not check(bool(kind and api and name), f"{fname}: {kind}/{name} has apiVersion, kind, metadata.name"):
        continue
    if kind not in CLUSTER_SCOPED:
        check(meta.get("namespace") == NAMESPACE, f"{fname}: {kind}/{name} is in namespace {NAMESPACE}")
    check((kind, name) not in seen, f"{fname}: {kind}/{name} is defined once")
    seen.add((kind, name))
    by_kind.setdefault(kind, []).append((fname, r))


def get(kind, name):
    for fname, r in by_kind.get(kind, []):
        if r["metadata"]["name"] == name:
            return r
    return None


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- thresh.toml in ConfigMaps --------------------------------------------------------------
tomls = {}  # ConfigMap name -> parsed settings
for fname, cm in by_kind.get("ConfigMap", []):
    text = (cm.get("data") or {}).get("thresh.toml")
    if text is None:
        continue
    cname = cm["metadata"]["name"]
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        check(False, f"{fname}: {cname}'s thresh.toml parses as TOML ({e})")
        continue
    ok(f"{fname}: {cname}'s thresh.toml parses as TOML ({len(cfg)} keys)")
    tomls[cname] = cfg
    unknown = sorted(set(cfg) - ALLOWED)
    check(not unknown, f"{fname}: {cname}'s keys are thresh serve settings" + (f" (unknown: {unknown})" if unknown else ""))
    secretish = sorted(k for k in cfg if re.search(r"api_key|api-key|secret|password", k))
    check(not secretish, f"{fname}: {cname} holds no API keys" + (f" (found {secretish})" if secretish else ""))
    for k, v in cfg.items():
        if k in PATHS | STRINGS:
            want, good = "a string", isinstance(v, str) and v != ""
        elif k in INTS:
            want, good = "a positive integer", isinstance(v, int) and not isinstance(v, bool) and v > 0
            if k == "prefix_cache_mb":
                want, good = "an integer >= 0", isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif k in BOOLS:
            want, good = "true or false", isinstance(v, bool)
        else:
            continue
        if not good:
            check(False, f"{fname}: {cname}: {k} = {v!r} is {want}")
    check(cfg.get("log_format", "json") in ("text", "json"), f"{fname}: {cname}: log_format is text or json")
    pol = str(cfg.get("policy", ""))
    if pol.startswith(("http://", "https://")):
        check("policy_tokenizer" in cfg, f"{fname}: {cname}: a remote policy comes with policy_tokenizer")
    else:
        check("policy_tokenizer" not in cfg and "policy_model" not in cfg,
              f"{fname}: {cname}: policy_tokenizer/policy_model only with a remote policy")

# ---- Deployments ----------------------------------------------------------------------------
secrets = {}
for fname, s in by_kind.get("Secret", []):
    keys = set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())
    secrets[s["metadata"]["name"]] = keys
    if s["metadata"]["name"] == "thresh-api-keys":
        check(keys == {"THRESH_API_KEY", "THRESH_POLICY_API_KEY", "THRESH_REWARD_API_KEY"},
              f"{fname}: thresh-api-keys holds THRESH_API_KEY, THRESH_POLICY_API_KEY, THRESH_REWARD_API_KEY")
        vals = (s.get("stringData") or {}).values()
        check(all("REPLACE" in str(v) for v in vals), f"{fname}: example values are marked REPLACE")

pod_templates = {}  # Deployment name -> template labels
deploy_ports = {}   # Deployment name -> {port name: number}
for fname, dep in by_kind.get("Deployment", []):
    dname = dep["metadata"]["name"]
    spec = dep["spec"]
    tmpl = spec["template"]
    labels = tmpl["metadata"].get("labels", {})
    pod_templates[dname] = labels
    check(matches(spec["selector"].get("matchLabels"), labels),
          f"{fname}: {dname}: selector matches the pod template's labels")
    pod = tmpl["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    ports = {}
    for c in pod["containers"]:
        for p in c.get("ports", []):
            ports[p.get("name", str(p["containerPort"]))] = p["containerPort"]
            ports[str(p["containerPort"])] = p["containerPort"]
        sc = c.get("securityContext") or {}
        check(sc.get("allowPrivilegeEscalation") is False, f"{fname}: {dname}/{c['name']}: no privilege escalation")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            check(probe in c, f"{fname}: {dname}/{c['name']}: has a {probe}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            pr = c.get(probe, {}).get("httpGet", {})
            if pr:
                check(pr.get("path") == "/health" and str(pr.get("port")) in ports,
                      f"{fname}: {dname}/{c['name']}: {probe} is GET /health on a container port")
        for ef in c.get("envFrom", []):
            ref = (ef.get("secretRef") or {}).get("name")
            if ref:
                check(ref in secrets, f"{fname}: {dname}: envFrom Secret {ref} is defined")
        for e in c.get("env", []):
            ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {})
            if ref:
                check(ref.get("key") in secrets.get(ref.get("name"), set()),
                      f"{fname}: {dname}: env {e['name']} comes from a defined Secret key ({ref.get('name')}/{ref.get('key')})")
        res = c.get("resources") or {}
        check(bool(res.get("requests")) and bool(res.get("limits")),
              f"{fname}: {dname}/{c['name']}: resource requests and limits")
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"{fname}: {dname}: volume {m['name']} (at {m['mountPath']}) is declared")
    deploy_ports[dname] = ports
    for vname, v in volumes.items():
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            check(get("PersistentVolumeClaim", claim) is not None, f"{fname}: {dname}: PVC {claim} is defined")
        if "configMap" in v:
            cmn = v["configMap"]["name"]
            check(get("ConfigMap", cmn) is not None, f"{fname}: {dname}: ConfigMap {cmn} is defined")

    # thresh containers: the image from docker/Dockerfile.
    for c in pod["containers"]:
        if not c["image"].split(":")[0].endswith("thresh"):
            continue
        who = f"{fname}: {dname}/{c['name']}"
        check(c.get("args") == ["serve", "--config", "/etc/thresh/thresh.toml"],
              f"{who}: args are serve --config /etc/thresh/thresh.toml")
        check("command" not in c, f"{who}: keeps the image's entrypoint (/usr/local/bin/thresh)")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        cfg_mount = mounts.get("/etc/thresh")
        cfg = None
        if check(cfg_mount is not None and "configMap" in volumes.get(cfg_mount["name"], {}),
                 f"{who}: a ConfigMap is mounted at /etc/thresh"):
            cmn = volumes[cfg_mount["name"]]["configMap"]["name"]
            cfg = tomls.get(cmn)
            check(cfg is not None, f"{who}: ConfigMap {cmn} has thresh.toml")
        models = mounts.get("/models")
        check(models is not None and models.get("readOnly") is True
              and volumes.get(models["name"], {}).get("persistentVolumeClaim", {}).get("claimName") == "thresh-models"
              and volumes[models["name"]]["persistentVolumeClaim"].get("readOnly") is True,
              f"{who}: PVC thresh-models mounted read-only at /models")
        sc = c.get("securityContext") or {}
        psc = pod.get("securityContext") or {}
        check((sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True, f"{who}: runAsNonRoot")
        check(psc.get("runAsUser", sc.get("runAsUser")) == 10001, f"{who}: runs as the image's user 10001")
        check(sc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem")
        check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{who}: drops ALL capabilities")
        if cfg is None:
            continue
        port = cfg.get("port", 8080)
        check(port in ports.values() and ports.get("http") == port, f"{who}: containerPort http is thresh.toml's port {port}")
        check(cfg.get("host") == "0.0.0.0", f"{who}: listens on 0.0.0.0")
        # Drain: SIGTERM comes after preStop; thresh then drains for shutdown_timeout.
        drain = cfg.get("shutdown_timeout", 30)
        pre = ((c.get("lifecycle") or {}).get("preStop") or {})
        sleep = 0
        cmd = (pre.get("exec") or {}).get("command") or []
        if len(cmd) == 2 and cmd[0] == "sleep":
            sleep = int(cmd[1])
        elif "sleep" in pre:
            sleep = int(pre["sleep"]["seconds"])
        grace = pod.get("terminationGracePeriodSeconds", 30)
        check(grace > drain + sleep,
              f"{who}: terminationGracePeriodSeconds {grace} > preStop {sleep} s + shutdown_timeout {drain} s")
        live = c["livenessProbe"]
        check(live.get("failureThreshold", 3) * live.get("periodSeconds", 10) > drain,
              f"{who}: liveness gives up after more than shutdown_timeout (no restart mid-drain)")
        st = c["startupProbe"]
        check(st.get("failureThreshold", 3) * st.get("periodSeconds", 10) >= 300,
              f"{who}: startupProbe allows at least 5 minutes for loading")
        remote_reward = str(cfg.get("reward", "")).startswith(("http://", "https://"))
        remote_policy = str(cfg.get("policy", "")).startswith(("http://", "https://"))
        env_names = {e["name"] for e in c.get("env", [])}
        for ef in c.get("envFrom", []):
            env_names |= secrets.get((ef.get("secretRef") or {}).get("name"), set())
        check(remote_reward or "THRESH_REWARD_API_KEY" not in env_names,
              f"{who}: THRESH_REWARD_API_KEY only with a remote reward")
        check(remote_policy or "THRESH_POLICY_API_KEY" not in env_names,
              f"{who}: THRESH_POLICY_API_KEY only with a remote policy")
        # URLs of in-namespace servers must name a Service of these manifests and its port.
        for key in ("policy", "reward"):
            m = re.match(r"https?://([a-z0-9-]+)(?:\.thresh(?:\.svc(?:\.cluster\.local)?)?)?:(\d+)(/.*)?$", str(cfg.get(key, "")))
            if not m:
                continue
            svc = get("Service", m.group(1))
            check(svc is not None and any(p["port"] == int(m.group(2)) for p in svc["spec"]["ports"]),
                  f"{who}: {key} {cfg[key]} is Service {m.group(1)} port {m.group(2)}")
            if key == "reward":
                check((m.group(3) or "").rstrip("/") == "/v1/rewards", f"{who}: remote reward speaks /v1/rewards")

# ---- the gateway ----------------------------------------------------------------------------
gw = get("Deployment", "thresh-gateway")
if check(gw is not None, "thresh-gateway.yaml: Deployment thresh-gateway exists"):
    check(gw["spec"].get("replicas") == 2, "gateway: 2 replicas")
    ann = gw["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics"
          and ann.get("prometheus.io/port") == "8080", "gateway: Prometheus scrape annotations for :8080/metrics")
    c = gw["spec"]["template"]["spec"]["containers"][0]
    check(c["image"] == "thresh:latest", "gateway: image thresh:latest")
    check(any((ef.get("secretRef") or {}).get("name") == "thresh-api-keys" for ef in c.get("envFrom", [])),
          "gateway: environment from Secret thresh-api-keys")
    cfgname = next(v["configMap"]["name"] for v in gw["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    check(cfgname == "thresh-config", "gateway: reads ConfigMap thresh-config")
    pdbs = [p for _, p in by_kind.get("PodDisruptionBudget", [])
            if matches(p["spec"]["selector"].get("matchLabels"), pod_templates["thresh-gateway"])]
    check(len(pdbs) == 1, "gateway: one PodDisruptionBudget selects its pods")

# ---- Services -------------------------------------------------------------------------------
for fname, svc in by_kind.get("Service", []):
    sname = svc["metadata"]["name"]
    targets = [n for n, labels in pod_templates.items() if matches(svc["spec"].get("selector"), labels)]
    if check(len(targets) == 1, f"{fname}: Service {sname} selects the pods of one Deployment ({targets})"):
        for p in svc["spec"]["ports"]:
            tp = str(p.get("targetPort", p["port"]))
            check(tp in deploy_ports[targets[0]], f"{fname}: Service {sname} port {p['port']} -> container port {tp}")
    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{fname}: Service {sname} is ClusterIP")
expected_ports = {"thresh-gateway": 8080, "vllm-policy": 8000, "reward": 8080}
for sname, port in expected_ports.items():
    svc = get("Service", sname)
    check(svc is not None and [p["port"] for p in svc["spec"]["ports"]] == [port], f"Service {sname} on port {port}")

# ---- vLLM -----------------------------------------------------------------------------------
vl = get("Deployment", "vllm-policy")
if check(vl is not None, "vllm-policy.yaml: Deployment vllm-policy exists"):
    c = vl["spec"]["template"]["spec"]["containers"][0]
    image, _, tag = c["image"].partition(":")
    ver = tuple(int(x) for x in re.findall(r"\d+", tag)[:3]) if re.match(r"v?\d", tag) else ()
    check(image == "vllm/vllm-openai" and ver >= (0, 10, 2), f"vllm: image {c['image']} is vllm/vllm-openai v0.10.2 or later")
    args = c.get("args", [])
    check("--model" in args and args.index("--model") + 1 < len(args), "vllm: --model given")
    check(str(c["resources"]["limits"].get("nvidia.com/gpu")) == "1", "vllm: one nvidia.com/gpu")
    check(c["readinessProbe"]["httpGet"]["path"] == "/health", "vllm: readiness on /health")

# ---- KEDA ScaledObject (CRD: no bundled schema) -----------------------------------------------
SO_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
           "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
for fname, so in by_kind.get("ScaledObject", []):
    who = f"{fname}: ScaledObject {so['metadata']['name']}"
    check(so["apiVersion"] == "keda.sh/v1alpha1", f"{who}: apiVersion keda.sh/v1alpha1")
    spec = so.get("spec") or {}
    extra = sorted(set(spec) - SO_SPEC)
    check(not extra, f"{who}: spec has only ScaledObject fields" + (f" (unknown: {extra})" if extra else ""))
    ref = spec.get("scaleTargetRef") or {}
    check(ref.get("kind", "Deployment") == "Deployment" and get("Deployment", ref.get("name")) is not None,
          f"{who}: scaleTargetRef names a Deployment here ({ref.get('name')})")
    check(spec.get("minReplicaCount") == 2 and spec.get("maxReplicaCount") == 10, f"{who}: 2 to 10 replicas")
    for k in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        if k in spec:
            check(isinstance(spec[k], int), f"{who}: {k} is an integer")
    triggers = spec.get("triggers") or []
    check(len(triggers) > 0, f"{who}: has triggers")
    for t in triggers:
        md = t.get("metadata") or {}
        check(all(isinstance(v, str) for v in md.values()), f"{who}: trigger metadata values are strings")
        if t.get("type") == "prometheus":
            check(all(md.get(k) for k in ("serverAddress", "query", "threshold")),
                  f"{who}: prometheus trigger has serverAddress, query, threshold")
            check(re.match(r"^\s*sum\s*\(\s*thresh_queue_depth\b", md.get("query", "")) is not None,
                  f"{who}: query is sum(thresh_queue_depth...)")
            try:
                thr = float(md.get("threshold", ""))
            except ValueError:
                thr = 0
            check(thr > 0, f"{who}: threshold is a positive number")
        else:
            check(False, f"{who}: trigger type {t.get('type')} is prometheus")

# ---- HPA alternative --------------------------------------------------------------------------
for fname, h in by_kind.get("HorizontalPodAutoscaler", []):
    who = f"{fname}: HPA {h['metadata']['name']}"
    ref = h["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and get("Deployment", ref["name"]) is not None, f"{who}: targets a Deployment here")
    check(h["spec"].get("minReplicas") == 2 and h["spec"]["maxReplicas"] == 10, f"{who}: 2 to 10 replicas")
    check(any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "thresh_queue_depth" for m in h["spec"]["metrics"]),
          f"{who}: Pods metric thresh_queue_depth")

# ---- kustomization ----------------------------------------------------------------------------
ks = by_kind.get("Kustomization", [])
if check(len(ks) == 1, "kustomization.yaml: one Kustomization"):
    fname, k = ks[0]
    res = k.get("resources") or []
    for r in res:
        check(os.path.isfile(os.path.join(d, r)), f"{fname}: resource {r} exists")
    core = {"namespace.yaml", "thresh-config.yaml", "thresh-secret.yaml", "thresh-gateway.yaml", "autoscaling.yaml"}
    check(core <= set(res), f"{fname}: lists the core resources {sorted(core)}")
    check(not ({"autoscaling.yaml", "hpa-custom-metric.yaml"} <= set(res)), f"{fname}: only one autoscaler")
    check(k.get("namespace") in (None, NAMESPACE), f"{fname}: namespace {NAMESPACE}")
    # Every PVC, ConfigMap and Secret the listed workloads need is listed too.
    listed = {n for n, _ in docs if n in res}
    needed = set()
    for fn, dep in by_kind.get("Deployment", []):
        if fn not in listed:
            continue
        for v in dep["spec"]["template"]["spec"].get("volumes", []):
            for kind, key, field in (("PersistentVolumeClaim", "persistentVolumeClaim", "claimName"),
                                     ("ConfigMap", "configMap", "name")):
                if key in v:
                    needed.add((kind, v[key][field]))
        for c in dep["spec"]["template"]["spec"]["containers"]:
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    needed.add(("Secret", ef["secretRef"]["name"]))
    have = {(r["kind"], r["metadata"]["name"]) for n, r in docs if n in listed and "metadata" in r}
    missing = sorted(needed - have)
    check(not missing, f"{fname}: the listed workloads' PVC, ConfigMaps and Secrets are listed" + (f" (missing {missing})" if missing else ""))

print()
if failures:
    print(f"validate-k8s: {len(failures)} check(s) failed")
    sys.exit(1)
print(f"validate-k8s: {len(docs)} documents in {len({n for n, _ in docs})} files passed")
PY

if [ "$status" -ne 0 ]; then
  echo "validate-k8s: FAILED" >&2
  exit 1
fi
echo "validate-k8s: all manifests valid (Kubernetes $K8S_VERSIONS)"
