"""Offline checks of the deployment files; run by scripts/check-deploy.sh.

    python check_deploy.py kubernetes --k8s-version 1.30.0 [--k8s-version ...] DIR
    python check_deploy.py compose COMPOSE_FILE

`kubernetes`: every manifest in DIR (except kustomization.yaml) is validated
against the Kubernetes JSON schemas bundled with the `kubernetes-validate`
package, in strict mode (unknown fields are errors). Unlike the
`kubernetes-validate` command line, a kind or apiVersion without a schema is
an error, not a warning. Then the manifests are checked against each other:
selectors match pod labels, referenced ConfigMaps/Secrets/Services/ports
exist, kustomization.yaml lists every file, BERTH_* keys are current settings
(the variables of the settings table in README.md).

`compose`: structural checks that the JSON schema (run separately with
check-jsonschema) cannot do: build contexts, Dockerfile targets and bind-mounted
files exist, depends_on names exist, the Berth services agree, the nginx
upstreams are services, BERTH_* variables are real settings.

Prints one line per problem and exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
errors: list[str] = []


def error(where: object, message: str) -> None:
    errors.append(f"ERROR {where}: {message}")
    print(errors[-1])


def ok(message: str) -> None:
    print(f"ok    {message}")


SETTINGS_TABLE = "| setting | env | flag | default |"


def berth_setting_names() -> set[str] | None:
    """The BERTH_* variables Berth reads: the env column of README.md's
    settings table (Berth derives them from its settings; a unit test in
    src/config.rs keeps the table equal to what it derives)."""
    try:
        text = (REPO_ROOT / "README.md").read_text()
    except OSError:
        return None
    if SETTINGS_TABLE not in text:
        return None
    rows = text.split(SETTINGS_TABLE, 1)[1].splitlines()[2:]
    names = set()
    for row in rows:
        if not row.startswith("|"):
            break
        env = row.split("|")[2]
        names.update(re.findall(r"`(BERTH_[A-Z0-9_]+)`", env))
    names.add("BERTH_CONFIG")  # read by the command line, not by the settings loader
    return names


def berth_old_names() -> dict[str, str]:
    """Old flat variables and their names now (BERTH_STORAGE ->
    BERTH_STORAGE_LOCATION), from LEGACY in src/config.rs."""
    try:
        text = (REPO_ROOT / "src" / "config.rs").read_text()
    except OSError:
        return {}
    match = re.search(r"pub const LEGACY:[^=]*=\s*\[(.*?)\];", text, re.S)
    if not match:
        return {}
    pairs = re.findall(r'\("([a-z0-9_]+)",\s*"([a-z0-9_.]+)"\)', match.group(1))
    return {"BERTH_" + old.upper(): "BERTH_" + new.replace(".", "_").upper() for old, new in pairs}


def check_berth_env_keys(where: str, keys: set[str]) -> None:
    known = berth_setting_names()
    if known is None:
        print(f"warn  {where}: the settings table not found in README.md; BERTH_* names not checked")
        return
    old_names = berth_old_names()
    for key in sorted(k for k in keys if k.startswith("BERTH_")):
        if key in known:
            continue
        # An old flat name still works, with a warning at start-up; the
        # deployment files use the current ones.
        if key in old_names:
            error(where, f"{key} is an old name (still read, with a warning): use {old_names[key]}")
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(sorted(known))}"
        error(where, f"{key} is not a Berth setting ({hint})")


# ---------------------------------------------------------------- Kubernetes


def load_documents(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        error(path, f"not valid YAML: {e}")
        return []
    result = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            error(path, f"document {i + 1} is not a mapping")
            continue
        missing = [k for k in ("apiVersion", "kind") if not doc.get(k)]
        if missing or not (doc.get("metadata") or {}).get("name"):
            error(path, f"document {i + 1} lacks {', '.join(missing) or 'metadata.name'}")
            continue
        result.append(doc)
    return result


def check_kubernetes(directory: Path, versions: list[str]) -> None:
    import kubernetes_validate.utils as kv

    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    manifests = [p for p in files if p.name not in ("kustomization.yaml", "kustomization.yml")]
    if not manifests:
        error(directory, "no manifests found")
        return

    resources: dict[tuple[str, str, str], dict] = {}
    for path in manifests:
        for doc in load_documents(path):
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as e:
                    field = ".".join(str(p) for p in e.path) or "(top level)"
                    error(path, f"{name} (Kubernetes {e.version}, strict): {field}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    error(path, f"{name}: {e.message}")
                except kv.VersionNotSupportedError as e:
                    error(path, f"kubernetes-validate does not know Kubernetes {e.version}")
                else:
                    ok(f"{path.name}: {name} valid against Kubernetes {version} (strict)")
            key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
            if key in resources:
                error(path, f"{name} is defined twice")
            resources[key] = doc | {"__file__": path.name}

    check_kubernetes_references(resources)
    check_kustomization(directory, manifests)


def find(resources: dict, kind: str, namespace: str, name: str) -> dict | None:
    return resources.get((kind, namespace, name))


def check_kubernetes_references(resources: dict) -> None:
    namespaces = {name for (kind, _, name) in resources if kind == "Namespace"}
    workloads = [d for (kind, _, _), d in resources.items() if kind == "Deployment"]

    for (kind, ns, name), doc in resources.items():
        where = f"{doc['__file__']}: {kind}/{name}"
        if kind != "Namespace" and namespaces and ns not in namespaces:
            error(where, f"namespace '{ns}' is not one of the Namespaces defined here ({', '.join(sorted(namespaces))})")
        if kind in ("ConfigMap", "Secret"):
            check_berth_env_keys(where, set((doc.get("data") or {}) | (doc.get("stringData") or {})))

    for deploy in workloads:
        ns, name = deploy["metadata"].get("namespace", ""), deploy["metadata"]["name"]
        where = f"{deploy['__file__']}: Deployment/{name}"
        spec = deploy["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        selector = spec["selector"].get("matchLabels", {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            error(where, f"selector {selector} does not match the pod labels {labels}")
        pod = spec["template"]["spec"]
        volume_names = {v["name"] for v in pod.get("volumes", [])}
        for volume in pod.get("volumes", []):
            for field, kind, key in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                ref = volume.get(field)
                if ref and not ref.get("optional") and not find(resources, kind, ns, ref[key]):
                    error(where, f"volume {volume['name']} uses {kind} {ref[key]}, which is not defined")
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    ref = source.get(field)
                    if ref and not ref.get("optional") and not find(resources, kind, ns, ref["name"]):
                        error(where, f"envFrom uses {kind} {ref['name']}, which is not defined")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volume_names:
                    error(where, f"volumeMount {mount['name']} has no volume")
            check_berth_env_keys(where, {e["name"] for e in container.get("env", [])})
        ok(f"{deploy['__file__']}: Deployment/{name} selector, volumes and envFrom references resolve")

    def pods_matching(ns: str, selector: dict) -> list[dict]:
        return [
            d for d in workloads
            if d["metadata"].get("namespace", "") == ns
            and selector
            and all(d["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]

    for (kind, ns, name), doc in resources.items():
        where = f"{doc['__file__']}: {kind}/{name}"
        if kind == "Service":
            matched = pods_matching(ns, doc["spec"].get("selector", {}))
            if not matched:
                error(where, f"selector {doc['spec'].get('selector')} matches no Deployment's pods")
            port_names = {
                p.get("name")
                for d in matched
                for c in d["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in doc["spec"].get("ports", []) if matched else []:
                target = port.get("targetPort")
                if isinstance(target, str) and target not in port_names:
                    error(where, f"targetPort '{target}' is not a container port name ({sorted(n for n in port_names if n)})")
            if matched:
                ok(f"{doc['__file__']}: Service/{name} selects {', '.join(d['metadata']['name'] for d in matched)}")
        elif kind == "PodDisruptionBudget":
            if not pods_matching(ns, doc["spec"].get("selector", {}).get("matchLabels", {})):
                error(where, "selector matches no Deployment's pods")
        elif kind == "Ingress":
            for rule in doc["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    backend = path["backend"]["service"]
                    service = find(resources, "Service", ns, backend["name"])
                    if not service:
                        error(where, f"backend Service {backend['name']} is not defined")
                        continue
                    port = backend["port"]
                    ports = service["spec"].get("ports", [])
                    if not any(p.get("name") == port.get("name") or p.get("port") == port.get("number") for p in ports):
                        error(where, f"backend port {port} is not a port of Service {backend['name']}")
            annotations = doc["metadata"].get("annotations", {})
            if annotations.get("nginx.ingress.kubernetes.io/proxy-body-size") != "0":
                error(where, 'annotation nginx.ingress.kubernetes.io/proxy-body-size must be "0" (image layers are large)')
            ok(f"{doc['__file__']}: Ingress/{name} backends resolve")


def check_kustomization(directory: Path, manifests: list[Path]) -> None:
    path = directory / "kustomization.yaml"
    if not path.exists():
        return
    try:
        kustomization = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        error(path, f"not valid YAML: {e}")
        return
    listed = kustomization.get("resources", [])
    for name in listed:
        if not (directory / name).is_file():
            error(path, f"resource {name} does not exist")
    for manifest in manifests:
        if manifest.name not in listed:
            error(path, f"{manifest.name} is not listed under resources")
    if kustomization.get("kind") != "Kustomization":
        error(path, "kind must be Kustomization")
    ok(f"{path.name} lists every manifest")


# ---------------------------------------------------------------- Compose


def dockerfile_stages(dockerfile: Path) -> set[str]:
    return {
        m.group(1).lower()
        for m in re.finditer(r"^\s*FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.I | re.M)
    }


def env_keys(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def check_compose(compose_file: Path) -> None:
    base = compose_file.parent
    try:
        compose = yaml.safe_load(compose_file.read_text())
    except yaml.YAMLError as e:
        error(compose_file, f"not valid YAML: {e}")
        return
    services: dict = compose.get("services") or {}
    if not services:
        error(compose_file, "no services")
        return
    named_volumes = set((compose.get("volumes") or {}).keys())

    for name, service in services.items():
        where = f"{compose_file.name}: service {name}"
        if not service.get("image") and not service.get("build"):
            error(where, "has neither image nor build")
        build = service.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if build:
            context = (base / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                error(where, f"build context {context} does not exist")
            elif not dockerfile.is_file():
                error(where, f"Dockerfile {dockerfile} does not exist")
            elif build.get("target") and build["target"].lower() not in dockerfile_stages(dockerfile):
                error(where, f"build target {build['target']} is not a stage of {dockerfile}")
        depends = service.get("depends_on") or []
        for dep in depends if isinstance(depends, list) else depends.keys():
            if dep not in services:
                error(where, f"depends_on {dep}, which is not a service")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    error(where, f"bind-mounted {source} does not exist")
            elif source and source not in named_volumes:
                error(where, f"volume {source} is not declared under top-level volumes")

    berth = {
        name: s for name, s in services.items()
        if isinstance(s.get("build"), dict) and s["build"].get("dockerfile", "").endswith("docker/Dockerfile")
    }
    if len(berth) < 2:
        error(compose_file, f"expected at least two Berth services built from docker/Dockerfile, found {sorted(berth)}")
    envs = {name: env_keys(s) for name, s in berth.items()}
    required = {"BERTH_DATABASE_URL", "BERTH_STORAGE_LOCATION", "BERTH_PUBLIC_URL", "BERTH_AUTH_ADMIN_PASSWORD",
                "AWS_ENDPOINT", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for name, env in envs.items():
        where = f"{compose_file.name}: service {name}"
        for key in sorted(required - env.keys()):
            error(where, f"environment lacks {key}")
        check_berth_env_keys(where, set(env))
        if not env.get("BERTH_DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
            error(where, "BERTH_DATABASE_URL must be a postgres:// URL (instances share the database)")
        if not env.get("BERTH_STORAGE_LOCATION", "").startswith("s3://"):
            error(where, "BERTH_STORAGE_LOCATION must be an s3:// URL (instances share the blobs)")
    if len({tuple(sorted(e.items())) for e in envs.values()}) > 1:
        error(compose_file, f"the Berth services {sorted(envs)} have different environments")
    if berth:
        ok(f"{compose_file.name}: Berth services {', '.join(sorted(berth))} share one configuration")

    # The load balancer: nginx.conf mounted from here, upstreams are Berth services.
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if not source.endswith("nginx.conf") or not (base / source).is_file():
                continue
            conf = (base / source).read_text()
            where = f"{source} (service {name})"
            upstreams = set(re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):\d+", conf, re.M))
            if not upstreams:
                error(where, "no upstream servers")
            for host in sorted(upstreams - berth.keys()):
                error(where, f"upstream server {host} is not a Berth service")
            for directive in ("client_max_body_size 0;", "proxy_request_buffering off;", "proxy_set_header Host"):
                if directive not in conf:
                    error(where, f"lacks `{directive}`")
            public = next(iter(envs.values()), {}).get("BERTH_PUBLIC_URL", "")
            port = re.search(r":(\d+)/?$", public)
            published = [str(p) for p in service.get("ports") or []]
            if port and not any(p.split(":")[-2:-1] == [port.group(1)] for p in published):
                error(where, f"no published port {port.group(1)} matching BERTH_PUBLIC_URL {public} (ports: {published})")
            ok(f"{source}: upstreams {', '.join(sorted(upstreams))}; unlimited unbuffered bodies; Host forwarded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    k8s = sub.add_parser("kubernetes")
    k8s.add_argument("--k8s-version", action="append", required=True)
    k8s.add_argument("directory", type=Path)
    compose = sub.add_parser("compose")
    compose.add_argument("file", type=Path)
    args = parser.parse_args()

    if args.what == "kubernetes":
        check_kubernetes(args.directory, args.k8s_version)
    else:
        check_compose(args.file)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
