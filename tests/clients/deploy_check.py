"""Checks the deployment manifests (deploy/kserve, deploy/k8s) and the Containerfile.

    python deploy_check.py ROOT [ROOT ...]

ROOT is a project checkout (or a copy of its deploy/ and Containerfile). For each one, one
JSON object on stdout: {"results": [{"root", "documents", "kinds", "errors": [...]}]};
the exit status is 0 whenever the checks ran (tests/deploy.rs reads the errors, and feeds
broken copies to see that each kind of mistake is caught).

1. Every YAML document parses and has apiVersion, kind and metadata.name.
2. Each is built, field by field, into the models of the `kubernetes` Python client
   (V1Deployment, V1Service, V2HorizontalPodAutoscaler, V1PodDisruptionBudget,
   V1ConfigMap, V1PersistentVolumeClaim) or of the `kserve` package
   (V1alpha1ClusterServingRuntime, V1beta1InferenceService): a field that the model does
   not have (a typo), a value of the wrong type, or a missing required field is an error.
   (The clients' own ApiClient.deserialize skips unknown fields silently.)
3. Cross-checks: selectors match the pod labels, probes and Service targets name ports
   that the container has, the HPA and the PDB point at the Deployment, volume mounts
   and the ConfigMap and PVC they use exist, the runtime's args name KServe's TorchServe
   layout, its ports and Prometheus annotations are those of config.properties with the
   runtime's `--set` args over it (and the file agrees with what the args pin), the
   Prometheus Kubernetes job (deploy/prometheus/kubernetes.yml) keeps pods by
   annotations that the Deployment's pods carry, the Deployment runs what the runtime runs (image, args), the ConfigMap holds
   deploy/kserve/config.properties, the Containerfile's command and user are the
   runtime's, and every container is non-root with resources.
"""

import datetime
import json
import os
import re
import sys

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
import yaml

MODELS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}

MODEL_STORE = "/mnt/models/model-store"
TS_CONFIG = "/mnt/models/config/config.properties"


class Invalid(Exception):
    pass


def model_class(name):
    for module in (kserve_models, k8s_models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise Invalid(f"no model class {name}")


def build(data, typ, path):
    """`data` as the client model type `typ` (openapi-generator's type strings)."""
    if data is None:
        return None
    # `list[X]`/`dict(str, X)` (kserve's generator), `List[X]`/`Dict[str, X]` (kubernetes').
    if typ.startswith(("list[", "List[")):
        if not isinstance(data, list):
            raise Invalid(f"{path}: a list expected, got {data!r}")
        return [build(x, typ[5:-1], f"{path}[{i}]") for i, x in enumerate(data)]
    if typ.startswith(("dict(", "Dict[")):
        if not isinstance(data, dict):
            raise Invalid(f"{path}: a map expected, got {data!r}")
        inner = typ[typ.index(",") + 1 : -1].strip()
        return {k: build(v, inner, f"{path}.{k}") for k, v in data.items()}
    scalar = {"str": str, "int": int, "float": (int, float), "bool": bool}
    if typ in scalar:
        if not isinstance(data, scalar[typ]) or (typ == "int" and isinstance(data, bool)):
            raise Invalid(f"{path}: {typ} expected, got {data!r}")
        return data
    if typ == "object":
        return data
    if typ in ("datetime", "date"):
        if not isinstance(data, (str, datetime.date)):
            raise Invalid(f"{path}: {typ} expected, got {data!r}")
        return data
    cls = model_class(typ)
    if not isinstance(data, dict):
        raise Invalid(f"{path}: an object ({typ}) expected, got {data!r}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise Invalid(f"{path}: {typ} has no field {', '.join(unknown)}")
    kwargs = {
        by_json[k]: build(v, cls.openapi_types[by_json[k]], f"{path}.{k}")
        for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except ValueError as e:  # the models' own required-field checks
        raise Invalid(f"{path} ({typ}): {e}") from None


def properties(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def url_port(value):
    m = re.fullmatch(r"https?://[^:/]+:(\d+)/?", value or "")
    return int(m.group(1)) if m else None


def flags(args):
    """`--a=b c` -> ['--a', 'b', 'c']: the same command however the flags are written."""
    out = []
    for a in args:
        out.extend(a.split("=", 1) if a.startswith("--") and "=" in a else [a])
    return out


def containerfile_runtime(text):
    """USER, CMD and ENTRYPOINT of the Containerfile's last stage."""
    stage = text[text.rindex("\nFROM ") :]
    found = {}
    for key in ("USER", "CMD", "ENTRYPOINT"):
        m = re.findall(rf"^{key} (.+)$", stage, re.M)
        if m:
            value = m[-1].strip()
            found[key] = json.loads(value) if value.startswith("[") else value
    found["EXPOSE"] = [int(p) for m in re.findall(r"^EXPOSE (.+)$", stage, re.M) for p in m.split()]
    return found


def check_container(c, where, errors):
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    for probe in ("livenessProbe", "readinessProbe"):
        p = c.get(probe)
        if not p:
            errors.append(f"{where}: no {probe}")
            continue
        port = (p.get("httpGet") or {}).get("port")
        if port not in ports and port not in ports.values():
            errors.append(f"{where}: {probe} port {port!r} is none of the container's ports {ports}")
    want = {"livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready"}
    for probe, path in want.items():
        got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            errors.append(f"{where}: {probe} path is {got!r}, not {path}")
    sc = c.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") in (None, 0):
        errors.append(f"{where}: securityContext must set runAsNonRoot: true and a runAsUser other than 0")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(kind) or {}):
                errors.append(f"{where}: no resources.{kind}.{r}")
    a = flags(c.get("args") or [])
    for flag, value in (("--model-store", MODEL_STORE), ("--ts-config", TS_CONFIG)):
        if flag not in a or a.index(flag) + 1 >= len(a) or a[a.index(flag) + 1] != value:
            errors.append(f"{where}: args must give {flag} {value} (KServe's TorchServe layout): {c.get('args')}")
    if a[:2] != ["start", "--foreground"]:
        errors.append(f"{where}: args must start with `start --foreground`: {c.get('args')}")
    return ports


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_root(root):
    errors, docs = [], []
    files = []
    for sub in ("deploy/kserve", "deploy/k8s"):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            errors.append(f"no folder {sub}")
            continue
        files += [os.path.join(sub, f) for f in sorted(os.listdir(d)) if f.endswith((".yaml", ".yml"))]
    for rel in files:
        try:
            with open(os.path.join(root, rel)) as f:
                loaded = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            errors.append(f"{rel}: not YAML: {e}")
            continue
        if not loaded:
            errors.append(f"{rel}: no document")
        for i, doc in enumerate(loaded):
            where = f"{rel}#{i}"
            if not isinstance(doc, dict) or not all(doc.get(k) for k in ("apiVersion", "kind")):
                errors.append(f"{where}: no apiVersion or kind")
                continue
            if not (doc.get("metadata") or {}).get("name"):
                errors.append(f"{where}: no metadata.name")
            model = MODELS.get((doc["apiVersion"], doc["kind"]))
            if model is None:
                errors.append(f"{where}: {doc['apiVersion']} {doc['kind']} is no kind this check knows")
                continue
            try:
                build(doc, model, f"{where}({doc['kind']})")
            except Invalid as e:
                errors.append(str(e))
            docs.append((rel, doc))

    by_kind = {}
    for rel, doc in docs:
        by_kind.setdefault(doc["kind"], []).append((rel, doc))

    def one(kind):
        found = by_kind.get(kind, [])
        if len(found) != 1:
            errors.append(f"expected one {kind}, found {len(found)}")
            return None, {}
        return found[0]

    try:
        with open(os.path.join(root, "deploy/kserve/config.properties")) as f:
            props_text = f.read()
    except OSError as e:
        errors.append(f"deploy/kserve/config.properties: {e}")
        props_text = ""
    file_props = properties(props_text)
    # The runtime's `--set KEY=VALUE` args are over the file: they pin the container's
    # ports whatever the storage's config.properties says (KServe's TorchServe sample
    # says :8085). deploy/kserve/config.properties must agree with them all the same.
    pinned = {}
    for _, doc in docs:
        if doc["kind"] == "ClusterServingRuntime":
            for c in (doc.get("spec") or {}).get("containers") or []:
                a = flags(c.get("args") or [])
                for i, flag in enumerate(a[:-1]):
                    if flag == "--set" and "=" in a[i + 1]:
                        k, v = a[i + 1].split("=", 1)
                        pinned[k] = v
    props = dict(file_props, **pinned)
    for key, value in pinned.items():
        if key in file_props and file_props[key] != value:
            errors.append(f"config.properties: {key} is {file_props[key]!r}, and the runtime's args pin {value!r}")
    http_port = url_port(props.get("inference_address"))
    metrics_port = url_port(props.get("metrics_address"))
    grpc_port = int(props.get("grpc_inference_port", "7070"))
    for key, want in (("model_store", MODEL_STORE), ("load_models", "all")):
        if props.get(key) != want:
            errors.append(f"config.properties: {key} is {props.get(key)!r}, not {want}")
    for key in ("inference_address", "metrics_address"):
        if "//0.0.0.0:" not in props.get(key, ""):
            errors.append(f"config.properties: {key} must listen on 0.0.0.0 (other pods reach it)")
    if props.get("grpc_inference_address", "").split(":")[0] != "0.0.0.0":
        errors.append("config.properties: grpc_inference_address must be 0.0.0.0")

    # ---- KServe ----
    rel, rt = one("ClusterServingRuntime")
    runtime_container = {}
    if rt:
        spec = rt.get("spec") or {}
        if rt["metadata"].get("name") != "kserve-wasmserve":
            errors.append(f"{rel}: the runtime is named {rt['metadata'].get('name')!r}, not kserve-wasmserve")
        formats = {f.get("name"): f for f in spec.get("supportedModelFormats") or []}
        if not (formats.get("pytorch") or {}).get("autoSelect"):
            errors.append(f"{rel}: pytorch must be a supported format with autoSelect")
        if "torchscript" not in formats:
            errors.append(f"{rel}: torchscript must be a supported format")
        missing = {"v1", "v2", "grpc-v2"} - set(spec.get("protocolVersions") or [])
        if missing:
            errors.append(f"{rel}: protocolVersions lacks {sorted(missing)}")
        containers = {c.get("name"): c for c in spec.get("containers") or []}
        c = containers.get("kserve-container")
        if c is None:
            errors.append(f"{rel}: no container kserve-container")
        else:
            runtime_container = c
            ports = check_container(c, f"{rel} kserve-container", errors)
            plist = c.get("ports") or []
            if not plist or plist[0]["containerPort"] != http_port or "grpc" in plist[0].get("name", "") or "h2c" in plist[0].get("name", ""):
                errors.append(f"{rel}: the first port must be HTTP on {http_port} (inference_address)")
            if ports.get("h2c") != grpc_port:
                errors.append(f"{rel}: no port named h2c on {grpc_port} (grpc_inference_port)")
            mounts = {m["name"] for m in c.get("volumeMounts") or []}
            vols = {v["name"] for v in spec.get("volumes") or []}
            if mounts - vols:
                errors.append(f"{rel}: volumeMounts of no volume: {sorted(mounts - vols)}")
        ann = spec.get("annotations") or {}
        if ann.get("prometheus.kserve.io/port") != str(metrics_port):
            errors.append(f"{rel}: prometheus.kserve.io/port is {ann.get('prometheus.kserve.io/port')!r}, metrics_address's port is {metrics_port}")
        if ann.get("prometheus.kserve.io/path") != "/metrics":
            errors.append(f"{rel}: prometheus.kserve.io/path must be /metrics")

        rel_i, isvc = one("InferenceService")
        if isvc:
            m = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
            if m.get("runtime") not in (None, rt["metadata"].get("name")):
                errors.append(f"{rel_i}: runtime {m.get('runtime')!r} is not the ClusterServingRuntime")
            if (m.get("modelFormat") or {}).get("name") not in formats:
                errors.append(f"{rel_i}: modelFormat {m.get('modelFormat')} is not one the runtime supports")
            if m.get("protocolVersion") and m["protocolVersion"] not in (spec.get("protocolVersions") or []):
                errors.append(f"{rel_i}: protocolVersion {m['protocolVersion']} is not the runtime's")
            if not re.match(r"^(pvc|gs|s3|https?|hf|oci)://.+", m.get("storageUri") or ""):
                errors.append(f"{rel_i}: storageUri {m.get('storageUri')!r} is no storage URI")

    # ---- Kubernetes without KServe ----
    rel_d, dep = one("Deployment")
    if dep:
        spec = dep.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if not matches((spec.get("selector") or {}).get("matchLabels"), labels):
            errors.append(f"{rel_d}: selector.matchLabels do not match the pod template's labels")
        pod = tmpl.get("spec") or {}
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            errors.append(f"{rel_d}: the pod's securityContext must set runAsNonRoot: true")
        containers = pod.get("containers") or []
        c = containers[0] if containers else {}
        ports = check_container(c, f"{rel_d} {c.get('name')}", errors)
        if runtime_container:
            if c.get("image") != runtime_container.get("image"):
                errors.append(f"{rel_d}: image {c.get('image')} is not the runtime's {runtime_container.get('image')}")
            if flags(c.get("args") or []) != flags(runtime_container.get("args") or []):
                errors.append(f"{rel_d}: args differ from the runtime's")
        for want, what in ((http_port, "inference"), (grpc_port, "gRPC"), (metrics_port, "metrics")):
            if want not in ports.values():
                errors.append(f"{rel_d}: no container port {want} ({what}, from config.properties)")
        vols = {v["name"]: v for v in pod.get("volumes") or []}
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
        for m in set(mounts.values()) - set(vols):
            errors.append(f"{rel_d}: volumeMount {m} names no volume")
        if not any(p in mounts for p in ("/mnt/models", "/mnt/models/model-store")):
            errors.append(f"{rel_d}: nothing mounted at /mnt/models/model-store")
        cms = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
        pvcs = {d["metadata"]["name"] for _, d in by_kind.get("PersistentVolumeClaim", [])}
        for v in vols.values():
            if "configMap" in v and v["configMap"].get("name") not in cms:
                errors.append(f"{rel_d}: volume {v['name']} uses the ConfigMap {v['configMap'].get('name')}, which is not in deploy/k8s")
            if "persistentVolumeClaim" in v and v["persistentVolumeClaim"].get("claimName") not in pvcs:
                errors.append(f"{rel_d}: volume {v['name']} uses the PVC {v['persistentVolumeClaim'].get('claimName')}, which is not in deploy/k8s")
        cfg = vols.get(mounts.get("/mnt/models/config"), {}).get("configMap")
        if cfg and cfg.get("name") in cms:
            text = (cms[cfg["name"]].get("data") or {}).get("config.properties")
            if text != props_text:
                errors.append(f"{rel_d}: the ConfigMap {cfg['name']}'s config.properties is not deploy/kserve/config.properties")
        if (tmpl.get("metadata") or {}).get("annotations", {}).get("prometheus.io/port") != str(metrics_port):
            errors.append(f"{rel_d}: the pod's prometheus.io/port annotation is not the metrics port {metrics_port}")

        rel_s, svc = one("Service")
        if svc:
            s = svc.get("spec") or {}
            if not matches(s.get("selector"), labels):
                errors.append(f"{rel_s}: selector {s.get('selector')} does not match the Deployment's pod labels {labels}")
            for p in s.get("ports") or []:
                t = p.get("targetPort", p.get("port"))
                if t not in ports and t not in ports.values():
                    errors.append(f"{rel_s}: port {p.get('name')} targets {t!r}, which is none of the container's ports {ports}")
            targets = {p.get("targetPort") for p in s.get("ports") or []}
            for want, what in ((http_port, "HTTP"), (grpc_port, "gRPC"), (metrics_port, "metrics")):
                names = {n for n, v in ports.items() if v == want}
                if not ({want} | names) & targets:
                    errors.append(f"{rel_s}: no port to the container's {what} port {want}")
        rel_h, hpa = one("HorizontalPodAutoscaler")
        if hpa:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if (ref.get("kind"), ref.get("name"), ref.get("apiVersion")) != ("Deployment", dep["metadata"]["name"], dep["apiVersion"]):
                errors.append(f"{rel_h}: scaleTargetRef {ref} is not the Deployment {dep['metadata']['name']}")
            hs = hpa.get("spec") or {}
            if hs.get("minReplicas", 1) > hs.get("maxReplicas", 0):
                errors.append(f"{rel_h}: minReplicas above maxReplicas")
            uses_cpu = any(((m.get("resource") or {}).get("name") == "cpu") for m in hs.get("metrics") or [])
            if uses_cpu and "cpu" not in ((c.get("resources") or {}).get("requests") or {}):
                errors.append(f"{rel_h}: scales on CPU utilization, and the container requests no CPU")
        rel_p, pdb = one("PodDisruptionBudget")
        if pdb:
            if not matches(((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels"), labels):
                errors.append(f"{rel_p}: selector does not match the Deployment's pod labels")
            if hpa and isinstance((pdb.get("spec") or {}).get("minAvailable"), int):
                if pdb["spec"]["minAvailable"] >= (hpa.get("spec") or {}).get("minReplicas", 1):
                    errors.append(f"{rel_p}: minAvailable {pdb['spec']['minAvailable']} leaves no pod to evict at the HPA's minReplicas")

    # ---- Prometheus: the Kubernetes scrape config keeps the pods the Deployment makes ----
    try:
        with open(os.path.join(root, "deploy/prometheus/kubernetes.yml")) as f:
            prom = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        errors.append(f"deploy/prometheus/kubernetes.yml: {e}")
        prom = {}
    if prom and dep:
        annotations = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
        prefix = "__meta_kubernetes_pod_annotation_"
        for job in prom.get("scrape_configs") or []:
            for rule in job.get("relabel_configs") or []:
                for label in rule.get("source_labels") or []:
                    if not label.startswith(prefix):
                        continue
                    # Kubernetes discovery turns prometheus.io/port into prometheus_io_port.
                    wanted = label[len(prefix):]
                    have = {re.sub(r"[^a-zA-Z0-9_]", "_", k): k for k in annotations}
                    if wanted not in have:
                        errors.append(f"deploy/prometheus/kubernetes.yml: job {job.get('job_name')} reads the pod annotation {wanted}, which {rel_d}'s pods do not carry")
                    elif rule.get("action") == "keep" and not re.fullmatch(str(rule.get("regex", "(.*)")), str(annotations[have[wanted]])):
                        errors.append(f"deploy/prometheus/kubernetes.yml: job {job.get('job_name')} keeps {wanted} ~ {rule.get('regex')}, and the pods say {annotations[have[wanted]]!r}")

    # ---- the Containerfile: the image runs what the runtime runs ----
    try:
        with open(os.path.join(root, "Containerfile")) as f:
            cf = containerfile_runtime(f.read())
    except (OSError, ValueError) as e:
        errors.append(f"Containerfile: {e}")
        cf = None
    if cf is not None and runtime_container:
        if cf.get("ENTRYPOINT") != ["/usr/local/bin/wasmserve"]:
            errors.append(f"Containerfile: ENTRYPOINT {cf.get('ENTRYPOINT')} is not [\"/usr/local/bin/wasmserve\"]")
        if flags(cf.get("CMD") or []) != flags(runtime_container.get("args") or []):
            errors.append(f"Containerfile: CMD {cf.get('CMD')} is not the runtime's args {runtime_container.get('args')}")
        uid = str((runtime_container.get("securityContext") or {}).get("runAsUser"))
        if str(cf.get("USER", "")).split(":")[0] != uid:
            errors.append(f"Containerfile: USER {cf.get('USER')} is not the runtime's runAsUser {uid}")
        for want in (http_port, grpc_port, metrics_port):
            if want not in cf["EXPOSE"]:
                errors.append(f"Containerfile: port {want} is not EXPOSEd")

    return {
        "root": root,
        "documents": len(docs),
        "kinds": sorted({d["kind"] for _, d in docs}),
        "errors": errors,
    }


def main():
    roots = sys.argv[1:]
    if not roots:
        sys.exit("usage: deploy_check.py ROOT [ROOT ...]")
    json.dump({"results": [check_root(r) for r in roots]}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
