"""Deployment files against the code: docker-compose.yml, deploy/Dockerfile, deploy/k8s/.

Each file is parsed (PyYAML) and checked against what the code declares: the services
(``SERVICE_CLASSES``), the CLI (``build_parser``), the HTTP routes (``build_http_app``), the
settings read from the environment (``shared/config.py``) and the queue names (``RabbitBus``).
The checkers return a list of problems; the mutation tests at the end change one thing in a
parsed manifest (a typo) and show that the checker reports it. Kubernetes objects are also
validated against Kubernetes' own JSON schemas (``kubernetes-validate``, which ships them:
no network), and when ``kubectl`` is installed the kustomization is built and checked too.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tess_ffi.cli import build_parser
from tess_ffi.pipeline import SERVICE_CLASSES
from tess_ffi.shared.bus import EmbeddedBus, RabbitBus
from tess_ffi.shared.config import Settings
from tess_ffi.shared.contracts import Topic
from tess_ffi.shared.runtime import build_http_app

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
RABBITMQ_CONF = REPO / "deploy" / "rabbitmq" / "rabbitmq.conf"
CONFIG_SOURCE = REPO / "shared" / "config.py"

#: Services that must run as exactly one replica (in-process state; see the manifests' notes):
#: the fetcher waits for its star list on a queue shared by all fetchers, the aggregator
#: serialises job state with in-process locks, the enricher counts results in memory.
SINGLETONS = ("fetcher", "aggregator", "enricher")
#: Services that write the Parquet outputs under TESS_FFI_DATA_DIR.
WRITERS = ("aggregator", "enricher")
API_VERSIONS = {
    "Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1",
    "PersistentVolumeClaim": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1",
    "ScaledObject": "keda.sh/v1alpha1", "TriggerAuthentication": "keda.sh/v1alpha1",
}
NO_SPEC = ("Namespace", "ConfigMap", "Secret")


# -- what the code declares ---------------------------------------------------------------------

def config_env_vars() -> set[str]:
    """TESS_FFI_* variables shared/config.py reads (and their *_FILE forms when it has them)."""
    source = CONFIG_SOURCE.read_text()
    names = set(re.findall(r'_env\(\s*"(TESS_FFI_[A-Z0-9_]+)"', source))
    names |= set(re.findall(r'environ(?:\.get)?\(\s*"(TESS_FFI_[A-Z0-9_]+)"', source))
    if 'f"{name}_FILE"' in source:
        names |= {f"{n}_FILE" for n in names}
    return names


def http_routes() -> set[str]:
    app = build_http_app([], EmbeddedBus())
    return {resource.canonical for resource in app.router.resources()}


def photometer_queue(namespace: str | None = None) -> str:
    bus = RabbitBus("amqp://localhost/", namespace=namespace or Settings().namespace)
    return bus.queue_name(Topic.FFI, "photometer")


def dockerfile() -> dict[str, Any]:
    """The Dockerfile's final stage: ENTRYPOINT, USER, ENV, EXPOSE, HEALTHCHECK, useradd uid."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages = re.split(r"(?m)^FROM\s", text)
    final = stages[-1]
    info: dict[str, Any] = {"text": final, "env": {}, "users": [], "healthcheck": None}
    for line in final.splitlines():
        line = line.strip()
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ENTRYPOINT":
            info["entrypoint"] = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        elif word == "USER":
            info["users"].append(rest.strip())
        elif word == "ENV":
            info["env"].update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', rest)))
        elif word == "EXPOSE":
            info["expose"] = [int(p.split("/")[0]) for p in rest.split()]
        elif word == "HEALTHCHECK":
            info["healthcheck"] = rest
        elif word == "WORKDIR":
            info["workdir"] = rest.strip()
    uid = re.search(r"useradd\b[^\n]*--uid[ =](\d+)", final)
    info["uid"] = int(uid.group(1)) if uid else None
    return info


def cli_serve_name(argv: list[str], entrypoint: list[str]) -> tuple[str | None, str | None]:
    """The service an argv starts: (name, None), or (None, problem)."""
    if argv[: len(entrypoint)] != entrypoint:
        return None, f"runs {argv[:1]}, not the image's entrypoint {entrypoint}"
    try:
        args = build_parser().parse_args(argv[len(entrypoint):])
    except SystemExit:
        return None, f"{argv[len(entrypoint):]} is not a valid tess-ffi CLI command"
    if args.command != "serve":
        return None, f"runs `tess-ffi {args.command}`, not `tess-ffi serve NAME`"
    if args.name not in SERVICE_CLASSES:
        return None, f"serves {args.name!r}, which is not a service ({', '.join(SERVICE_CLASSES)})"
    return args.name, None


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ('1Gi', '512Mi', '500m', '2') as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6,
             "G": 1e9, "m": 1e-3}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def rabbit_settings(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


# -- loading ---------------------------------------------------------------------------------

def load_manifests(folder: Path = K8S) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc.setdefault("__file__", path.name)
                docs.append(doc)
    return docs


def load_kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def example_secret_keys() -> dict[str, set[str]]:
    """Secret name -> keys, from the kustomization's secretGenerator and its example files."""
    secrets: dict[str, set[str]] = {}
    for gen in load_kustomization().get("secretGenerator", []):
        keys: set[str] = set()
        for env in gen.get("envs", []):
            example = K8S / f"{env}.example"
            for line in example.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    keys.add(line.split("=", 1)[0].strip())
        for item in gen.get("literals", []) + gen.get("files", []):
            keys.add(item.split("=", 1)[0])
        secrets[gen["name"]] = keys
    return secrets


# -- Kubernetes checks -----------------------------------------------------------------------

def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs
            if d.get("kind") == kind and isinstance(d.get("metadata"), dict)
            and "name" in d["metadata"]}


def _workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d.get("kind") in ("Deployment", "StatefulSet"))


def _container_env(pod: dict[str, Any], container: dict[str, Any],
                   configmaps: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    env: dict[str, Any] = {}
    problems = []
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            cm = configmaps.get(ref.get("name"))
            if cm is None:
                problems.append(f"envFrom names a missing ConfigMap {ref.get('name')!r}")
            else:
                env.update(cm.get("data") or {})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env, problems


def check_k8s(docs: list[dict[str, Any]], secrets: dict[str, set[str]]) -> list[str]:
    """Problems in a set of manifests (empty when consistent with the code)."""
    problems: list[str] = []
    known_env = config_env_vars()
    routes = http_routes()
    image = dockerfile()
    entrypoint = image["entrypoint"]

    seen: set[tuple[Any, Any]] = set()
    for doc in docs:
        meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
        where = f"{doc.get('__file__', '?')}: {doc.get('kind')}/{meta.get('name')}"
        for key in ("apiVersion", "kind", "metadata"):
            if key not in doc:
                problems.append(f"{where}: no {key}")
        if doc.get("kind") not in NO_SPEC and "spec" not in doc:
            problems.append(f"{where}: no spec")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            problems.append(f"{where}: no metadata.name")
            continue
        expected = API_VERSIONS.get(str(doc.get("kind")))
        if expected is None:
            problems.append(f"{where}: unexpected kind")
        elif doc.get("apiVersion") != expected:
            problems.append(f"{where}: apiVersion {doc.get('apiVersion')!r}, expected {expected!r}")
        ident = (doc.get("kind"), doc["metadata"]["name"])
        if ident in seen:
            problems.append(f"{where}: defined twice")
        seen.add(ident)
    if any(p.endswith(("no metadata.name", "no kind")) for p in problems):
        return problems

    configmaps = _by_kind(docs, "ConfigMap")
    deployments = _by_kind(docs, "Deployment")
    pvcs = _by_kind(docs, "PersistentVolumeClaim")
    secret_keys = dict(secrets)
    for name, doc in _by_kind(docs, "Secret").items():
        secret_keys[name] = set(doc.get("data") or {}) | set(doc.get("stringData") or {})

    def secret_ref(where: str, name: str | None, key: str | None = None) -> None:
        if name not in secret_keys:
            problems.append(f"{where}: Secret {name!r} is neither in the manifests nor generated")
        elif key is not None and key not in secret_keys[name]:
            problems.append(f"{where}: Secret {name!r} has no key {key!r}")

    # ConfigMaps: only settings the code reads; never the broker URL itself (a credential).
    for name, cm in configmaps.items():
        for var in cm.get("data") or {}:
            if var.startswith("TESS_FFI_") and var not in known_env:
                problems.append(f"ConfigMap {name}: {var} is not read by shared/config.py")
        if "TESS_FFI_BROKER" in (cm.get("data") or {}):
            problems.append(f"ConfigMap {name}: TESS_FFI_BROKER is a credential; use a Secret "
                            "file and TESS_FFI_BROKER_FILE")

    http_ports: dict[str, int] = {}
    for wl in _workloads(docs):
        name = wl["metadata"]["name"]
        where = f"{wl['kind']} {name}"
        spec = wl.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if not selector:
            problems.append(f"{where}: no selector.matchLabels")
        for k, v in selector.items():
            if labels.get(k) != v:
                problems.append(f"{where}: selector {k}={v} does not match the template labels")
        pod = template.get("spec") or {}
        for vol in pod.get("volumes", []):
            if "secret" in vol:
                secret_ref(f"{where} volume {vol['name']}", vol["secret"].get("secretName"))
                for item in vol["secret"].get("items", []):
                    secret_ref(f"{where} volume {vol['name']}", vol["secret"].get("secretName"),
                               item.get("key"))
            if "configMap" in vol and vol["configMap"].get("name") not in configmaps:
                problems.append(f"{where}: volume {vol['name']} names a missing ConfigMap")
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is not None and claim not in pvcs:
                problems.append(f"{where}: volume {vol['name']} claims {claim!r}, not defined")
        for container in pod.get("containers", []):
            for item in container.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secret_ref(f"{where} env {item['name']}", ref.get("name"), ref.get("key"))
        if wl["kind"] != "Deployment":
            continue

        # Deployments of the pipeline: one container of the project's image.
        sec = pod.get("securityContext") or {}
        containers = pod.get("containers") or []
        if len(containers) != 1:
            problems.append(f"{where}: expected one container, found {len(containers)}")
            continue
        c = containers[0]
        if not str(c.get("image", "")).startswith("tess-ffi:"):
            problems.append(f"{where}: image {c.get('image')!r} is not tess-ffi:TAG")
        argv = list(c["command"]) + list(c.get("args", [])) if "command" in c \
            else entrypoint + list(c.get("args", []))
        served, problem = cli_serve_name(argv, entrypoint)
        if problem:
            problems.append(f"{where}: command {argv} {problem}")
        elif served != name:
            problems.append(f"{where}: runs `serve {served}` under the name {name!r}")
        env, env_problems = _container_env(pod, c, configmaps)
        problems += [f"{where}: {p}" for p in env_problems]
        for var in env:
            if var.startswith("TESS_FFI_") and var not in known_env:
                problems.append(f"{where}: {var} is not read by shared/config.py")
        if "TESS_FFI_BROKER" in env:
            problems.append(f"{where}: TESS_FFI_BROKER in the environment; mount it as a file")
        port = int(env.get("TESS_FFI_HTTP_PORT", -1))
        if env.get("TESS_FFI_HTTP_HOST") not in ("0.0.0.0", "::"):
            problems.append(f"{where}: TESS_FFI_HTTP_HOST must be 0.0.0.0 for probes to reach it")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        if ports.get("http") != port:
            problems.append(f"{where}: container port 'http' is {ports.get('http')}, but "
                            f"TESS_FFI_HTTP_PORT is {port}")
        http_ports[name] = port
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet")
            if not get:
                problems.append(f"{where}: no {probe} httpGet")
                continue
            if get.get("path") not in routes:
                problems.append(f"{where}: {probe} path {get.get('path')!r} is not a route of "
                                f"build_http_app ({sorted(routes)})")
            elif get.get("path") != path:
                problems.append(f"{where}: {probe} should probe {path}, not {get.get('path')}")
            target = get.get("port")
            if (ports.get(target) if isinstance(target, str) else target) != port:
                problems.append(f"{where}: {probe} port {target!r} is not the HTTP port {port}")
        startup = (c.get("startupProbe") or {}).get("httpGet")
        if startup and startup.get("path") not in routes:
            problems.append(f"{where}: startupProbe path {startup.get('path')!r} is not a route")
        resources = c.get("resources") or {}
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(part) or {}):
                    problems.append(f"{where}: no resources.{part}.{res}")
        if name == "photometer":
            limit = quantity((resources.get("limits") or {}).get("memory", 0))
            if not 0.75 * 2**30 <= limit <= 1.5 * 2**30:
                problems.append(f"{where}: memory limit {limit / 2**30:.2f} GiB, expected ~1 GiB")
        csec = c.get("securityContext") or {}
        uid = csec.get("runAsUser", sec.get("runAsUser"))
        if not (sec.get("runAsNonRoot") or csec.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot is not set")
        if uid in (None, 0) or (image["uid"] is not None and uid != image["uid"]):
            problems.append(f"{where}: runAsUser {uid}, expected the image's user {image['uid']}")
        if csec.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if csec.get("readOnlyRootFilesystem"):
            writable = {m["mountPath"] for m in c.get("volumeMounts", [])}
            for wanted in ("/tmp", image.get("workdir")):
                if wanted not in writable:
                    problems.append(f"{where}: read-only root filesystem but {wanted} is not a "
                                    "writable volume (caches and temporary files go there)")
        # The broker URL: a mounted Secret file, read through TESS_FFI_BROKER_FILE.
        broker_file = env.get("TESS_FFI_BROKER_FILE")
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if not broker_file:
            problems.append(f"{where}: TESS_FFI_BROKER_FILE is not set")
        else:
            found = False
            for vname, mount in mounts.items():
                secret = (volumes.get(vname) or {}).get("secret")
                if not secret:
                    continue
                rel = os.path.relpath(broker_file, mount["mountPath"])
                if rel.startswith(".."):
                    continue
                files = ({i["path"] for i in secret["items"]} if secret.get("items")
                         else secret_keys.get(secret.get("secretName"), set()))
                found = rel in files
            if not found:
                problems.append(f"{where}: TESS_FFI_BROKER_FILE {broker_file} is not a file of "
                                "a mounted Secret")
        data_dir = env.get("TESS_FFI_DATA_DIR")
        if name in WRITERS:
            ok = any(m["mountPath"] == data_dir
                     and "persistentVolumeClaim" in (volumes.get(m["name"]) or {})
                     for m in mounts.values())
            if not ok:
                problems.append(f"{where}: no PersistentVolumeClaim mounted at "
                                f"TESS_FFI_DATA_DIR ({data_dir})")
        if name in SINGLETONS:
            if spec.get("replicas", 1) != 1:
                problems.append(f"{where}: must run exactly one replica")
            if (spec.get("strategy") or {}).get("type") != "Recreate":
                problems.append(f"{where}: needs strategy Recreate (two must never overlap)")
    for service in SERVICE_CLASSES:
        if service not in deployments:
            problems.append(f"no Deployment for the service {service!r}")
    for name, pvc in pvcs.items():
        if "ReadWriteMany" not in (pvc.get("spec") or {}).get("accessModes", []):
            problems.append(f"PersistentVolumeClaim {name}: the writers run in different pods; "
                            "it needs ReadWriteMany")

    # Services: their selectors pick the pods of one workload, their target ports exist.
    workloads = list(_workloads(docs))
    for name, svc in _by_kind(docs, "Service").items():
        where = f"Service {name}"
        selector = (svc.get("spec") or {}).get("selector") or {}
        matches = [wl for wl in workloads
                   if selector and all(
                       ((wl["spec"].get("template") or {}).get("metadata") or {})
                       .get("labels", {}).get(k) == v for k, v in selector.items())]
        if len(matches) != 1:
            problems.append(f"{where}: selector {selector} matches {len(matches)} workloads "
                            "(expected one)" if matches else
                            f"{where}: selector {selector} matches no Deployment or StatefulSet")
            continue
        wl = matches[0]
        cports = {p.get("name"): p.get("containerPort")
                  for c in wl["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"].get("ports", []):
            if not port.get("name"):
                problems.append(f"{where}: port {port.get('port')} has no name")
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str) and target not in cports:
                problems.append(f"{where}: targetPort {target!r} is no container port of "
                                f"{wl['metadata']['name']}")
            if isinstance(target, int) and target not in cports.values():
                problems.append(f"{where}: targetPort {target} is no container port")
        if wl["kind"] == "Deployment" and wl["metadata"]["name"] in http_ports:
            want = http_ports[wl["metadata"]["name"]]
            if not any(p.get("name") == "http" and p.get("port") == want
                       for p in svc["spec"].get("ports", [])):
                problems.append(f"{where}: no port named 'http' on {want}")

    # KEDA: photometers scale on the image queue, through the management API.
    auths = _by_kind(docs, "TriggerAuthentication")
    scaled = _by_kind(docs, "ScaledObject")
    namespace = None
    for cm in configmaps.values():
        namespace = (cm.get("data") or {}).get("TESS_FFI_NAMESPACE", namespace)
    prefetch = None
    for cm in configmaps.values():
        prefetch = (cm.get("data") or {}).get("TESS_FFI_PREFETCH", prefetch)
    if not scaled:
        problems.append("no KEDA ScaledObject for the photometers")
    for name, so in scaled.items():
        where = f"ScaledObject {name}"
        target = (so.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind", "Deployment") != "Deployment" or target.get("name") != "photometer":
            problems.append(f"{where}: targets {target.get('kind', 'Deployment')} "
                            f"{target.get('name')!r}, not the photometer Deployment")
        elif target.get("name") not in deployments:
            problems.append(f"{where}: its target Deployment does not exist")
        elif "replicas" in deployments["photometer"]["spec"]:
            problems.append("Deployment photometer: sets replicas although KEDA owns the count")
        if int(so["spec"].get("minReplicaCount", 0)) < 1:
            problems.append(f"{where}: minReplicaCount must be >= 1 (photometers build the star "
                            "list before any image is queued)")
        triggers = so["spec"].get("triggers") or []
        if len(triggers) != 1:
            problems.append(f"{where}: expected one trigger")
        for trig in triggers:
            meta = trig.get("metadata") or {}
            if trig.get("type") != "rabbitmq":
                problems.append(f"{where}: trigger type {trig.get('type')!r}, not rabbitmq")
            if meta.get("protocol") != "http":
                problems.append(f"{where}: protocol {meta.get('protocol')!r}; use http (amqp "
                                "mode ignores unacknowledged messages)")
            if meta.get("mode") != "QueueLength":
                problems.append(f"{where}: mode {meta.get('mode')!r}, not QueueLength")
            queue = photometer_queue(namespace)
            if meta.get("queueName") != queue:
                problems.append(f"{where}: queueName {meta.get('queueName')!r}, but the code "
                                f"declares {queue!r}")
            if prefetch is not None and str(meta.get("value")) != str(prefetch):
                problems.append(f"{where}: value {meta.get('value')!r} should equal "
                                f"TESS_FFI_PREFETCH ({prefetch})")
            if "host" in meta or "password" in meta:
                problems.append(f"{where}: credentials in the trigger; use a TriggerAuthentication")
            ref = (trig.get("authenticationRef") or {}).get("name")
            if ref not in auths:
                problems.append(f"{where}: authenticationRef {ref!r} is not defined")
    for name, auth in auths.items():
        params = set()
        for ref in (auth.get("spec") or {}).get("secretTargetRef", []):
            params.add(ref.get("parameter"))
            secret_ref(f"TriggerAuthentication {name}", ref.get("name"), ref.get("key"))
        if "host" not in params:
            problems.append(f"TriggerAuthentication {name}: no 'host' (the management URL)")

    # The broker's settings in the cluster are the ones docker compose uses.
    rabbit_cm = configmaps.get("rabbitmq-config")
    if rabbit_cm is not None:
        text = "\n".join((rabbit_cm.get("data") or {}).values())
        if rabbit_settings(text) != rabbit_settings(RABBITMQ_CONF.read_text()):
            problems.append("ConfigMap rabbitmq-config differs from deploy/rabbitmq/rabbitmq.conf")
        limit = int(rabbit_settings(text).get("max_message_size", 128 * 2**20))
        for cm in configmaps.values():
            size = (cm.get("data") or {}).get("TESS_FFI_MAX_MESSAGE_BYTES")
            if size is not None and int(size) > limit:
                problems.append(f"TESS_FFI_MAX_MESSAGE_BYTES {size} exceeds the broker's "
                                f"max_message_size {limit}")
    return problems


# -- docker compose and the Dockerfile -------------------------------------------------------

CREDENTIAL_KEY = re.compile(r"PASS|PASSWORD|SECRET|TOKEN|_USER$|_KEY$", re.I)
ONLY_VARS = re.compile(r"(\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}|:)+")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def check_compose(compose: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    known_env = config_env_vars()
    image = dockerfile()
    entrypoint = image["entrypoint"]
    services = compose.get("services") or {}
    for name in SERVICE_CLASSES:
        if name not in services:
            problems.append(f"compose: no service {name!r}")
    for name, svc in services.items():
        where = f"compose {name}"
        env = _environment(svc)
        for key, value in env.items():
            if CREDENTIAL_KEY.search(key) and not ONLY_VARS.fullmatch(value):
                problems.append(f"{where}: {key} is a hard-coded credential; use ${{VAR}}")
            userinfo = re.search(r"://([^@/]+)@", value)
            if userinfo and not ONLY_VARS.fullmatch(userinfo.group(1)):
                problems.append(f"{where}: {key} has a hard-coded credential in its URL")
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{where}: depends on {dep!r}, which is not a service")
        if name == "rabbitmq":
            for vol in svc.get("volumes", []):
                src = str(vol).split(":")[0]
                if src.startswith(".") and not (REPO / src).exists():
                    problems.append(f"{where}: mounts {src}, which does not exist")
            continue
        if name not in SERVICE_CLASSES:
            continue
        command = svc.get("command")
        args = shlex.split(command) if isinstance(command, str) else list(command or [])
        argv = entrypoint + args
        served, problem = cli_serve_name(argv, entrypoint)
        if problem:
            problems.append(f"{where}: command {argv} {problem}")
        elif served != name:
            problems.append(f"{where}: runs `serve {served}` under the name {name!r}")
        for var in env:
            if var.startswith("TESS_FFI_") and var not in known_env:
                problems.append(f"{where}: {var} is not read by shared/config.py")
        merged = {**image["env"], **env}
        port = int(merged.get("TESS_FFI_HTTP_PORT", -1))
        health_port = re.search(r"127\.0\.0\.1:(\d+)/healthz", image["healthcheck"] or "")
        if health_port and int(health_port.group(1)) != port:
            problems.append(f"{where}: TESS_FFI_HTTP_PORT {port} but the image's HEALTHCHECK "
                            f"probes {health_port.group(1)}")
        if merged.get("TESS_FFI_HTTP_HOST") not in ("0.0.0.0", "::"):
            problems.append(f"{where}: TESS_FFI_HTTP_HOST must be 0.0.0.0 to publish the port")
        for mapping in svc.get("ports", []):
            container = int(str(mapping).rsplit(":", 1)[-1].split("/")[0])
            if container != port:
                problems.append(f"{where}: publishes container port {container}, but the HTTP "
                                f"port is {port}")
        if name in WRITERS:
            data_dir = merged.get("TESS_FFI_DATA_DIR")
            if not any(str(v).split(":")[1:2] == [data_dir] for v in svc.get("volumes", [])):
                problems.append(f"{where}: no volume at TESS_FFI_DATA_DIR ({data_dir})")
    photometer = services.get("photometer") or {}
    replicas = (photometer.get("deploy") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 1:
        problems.append("compose photometer: no deploy.replicas")
    for mapping in photometer.get("ports", []) or []:
        if ":" in str(mapping):
            problems.append(f"compose photometer: fixed host port {mapping!r} (--scale would "
                            "start only one)")
    return problems


def check_dockerfile(info: dict[str, Any]) -> list[str]:
    problems = []
    pyproject = (REPO / "pyproject.toml").read_text()
    entry = info.get("entrypoint") or []
    if not entry or not re.search(rf'^{re.escape(entry[0])}\s*=\s*"tess_ffi\.cli:main"',
                                   pyproject, re.M):
        problems.append(f"Dockerfile: ENTRYPOINT {entry} is not the tess-ffi console script")
    users = info["users"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the final stage runs as root (add USER)")
    if not info["healthcheck"] or "/healthz" not in info["healthcheck"]:
        problems.append("Dockerfile: no HEALTHCHECK on /healthz")
    for var in info["env"]:
        if var.startswith("TESS_FFI_") and var not in config_env_vars():
            problems.append(f"Dockerfile: {var} is not read by shared/config.py")
    port = int(info["env"].get("TESS_FFI_HTTP_PORT", -1))
    if port not in info.get("expose", []):
        problems.append(f"Dockerfile: EXPOSE {info.get('expose')} lacks TESS_FFI_HTTP_PORT {port}")
    health = re.search(r":(\d+)/healthz", info["healthcheck"] or "")
    if health and int(health.group(1)) != port:
        problems.append(f"Dockerfile: HEALTHCHECK probes port {health.group(1)}, not {port}")
    if "/healthz" not in http_routes():
        problems.append("the code has no /healthz route")
    return problems


# -- the tests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return load_manifests()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_code_facts_the_checks_rely_on():
    assert {"TESS_FFI_BROKER", "TESS_FFI_BROKER_FILE", "TESS_FFI_HTTP_PORT",
            "TESS_FFI_DATA_DIR"} <= config_env_vars()
    assert {"/healthz", "/readyz", "/metrics", "/status"} <= http_routes()
    assert photometer_queue() == "tess-ffi.ffi.photometer"
    assert dockerfile()["entrypoint"] == ["tess-ffi"]


def test_every_manifest_parses_and_is_listed():
    kustomization = load_kustomization()
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files, f"kustomization.yaml lists {sorted(listed)}, folder: {sorted(files)}"
    for path in K8S.glob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs if d is not None), path.name
    for gen in kustomization.get("secretGenerator", []):
        for env in gen.get("envs", []):
            assert (K8S / f"{env}.example").is_file(), f"{env}.example is missing"


def test_kubernetes_manifests_match_the_code(manifests):
    assert check_k8s(manifests, example_secret_keys()) == []


def test_compose_matches_the_code(compose):
    assert check_compose(compose) == []


def test_dockerfile():
    assert check_dockerfile(dockerfile()) == []


def test_same_rabbitmq_everywhere(manifests, compose):
    statefulset = _by_kind(manifests, "StatefulSet")["rabbitmq"]
    image = statefulset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == compose["services"]["rabbitmq"]["image"]
    assert "management" in image  # KEDA reads queue lengths through the management API


def test_secret_example_is_consistent():
    """The example credentials agree with each other and with the Services they name."""
    env: dict[str, str] = {}
    for line in (K8S / "secrets.env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    user, password = env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"]
    broker = re.fullmatch(r"amqp://([^:]+):([^@]+)@([^:/]+):5672/", env["broker_url"])
    management = re.fullmatch(r"http://([^:]+):([^@]+)@([^:/]+):15672/", env["management_url"])
    assert broker and management
    assert broker.group(1, 2) == management.group(1, 2) == (user, password)
    # KEDA resolves the host from its own namespace: the Service's full name.
    namespace = load_kustomization()["namespace"]
    assert management.group(3).startswith(f"rabbitmq.{namespace}.svc")
    assert broker.group(3).split(".")[0] in _by_kind(load_manifests(), "Service")


def test_kubernetes_json_schemas(manifests):
    """Every core object against Kubernetes' schema (KEDA's CRDs have none there)."""
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is not installed (pip install -e '.[test]')")
        pytest.skip("kubernetes-validate is not installed")
    version = kubernetes_validate.latest_version()
    checked = 0
    for doc in manifests:
        doc = {k: v for k, v in doc.items() if k != "__file__"}
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 10


def test_kustomize_build(tmp_path):
    """`kubectl kustomize` builds the folder (with the example secrets) into valid objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    shutil.copy(folder / "secrets.env.example", folder / "secrets.env")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    namespace = load_kustomization()["namespace"]
    assert all(d["metadata"].get("namespace") == namespace
               for d in built if d["kind"] != "Namespace")
    secrets = _by_kind(built, "Secret")
    assert "tess-ffi-credentials" in secrets  # no hash suffix: KEDA names it
    assert check_k8s(built, {}) == []


# -- the checkers reject typos ---------------------------------------------------------------

def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return _find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(docs, "ConfigMap", "tess-ffi-config")["data"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for part in parents:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        doc[last] = value
    return apply


K8S_TYPOS: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "service name": (lambda d: _container(d, "photometer").update(
        command=["tess-ffi", "serve", "photometr"]), "not a service"),
    "swapped service": (lambda d: _container(d, "analyzer").update(
        command=["tess-ffi", "serve", "enricher"]), "under the name 'analyzer'"),
    "cli subcommand": (lambda d: _container(d, "fetcher").update(
        command=["tess-ffi", "serv", "fetcher"]), "not a valid tess-ffi CLI command"),
    "entrypoint": (lambda d: _container(d, "fetcher").update(
        command=["tess_ffi", "serve", "fetcher"]), "entrypoint"),
    "probe path": (lambda d: _set("livenessProbe.httpGet.path", "/healthzz")(
        _container(d, "aggregator")), "not a route"),
    "readiness on liveness": (lambda d: _set("readinessProbe.httpGet.path", "/healthz")(
        _container(d, "aggregator")), "should probe /readyz"),
    "container port": (lambda d: _set("ports.0.containerPort", 8081)(
        _container(d, "enricher")), "TESS_FFI_HTTP_PORT is 8080"),
    "http port setting": (lambda d: _config(d).update(TESS_FFI_HTTP_PORT="9090"),
                          "TESS_FFI_HTTP_PORT is 9090"),
    "env var name": (lambda d: _config(d).update(TESS_FFI_HTTP_PROT="8080"),
                     "TESS_FFI_HTTP_PROT is not read"),
    "broker in config": (lambda d: _config(d).update(TESS_FFI_BROKER="amqp://u:p@h/"),
                         "credential"),
    "broker file path": (lambda d: _config(d).update(
        TESS_FFI_BROKER_FILE="/var/run/secrets/tess-ffi/broker"), "not a file of a mounted"),
    "selector": (lambda d: _find(d, "Deployment", "analyzer")["spec"]["selector"]["matchLabels"]
                 .update({"app.kubernetes.io/name": "analyser"}), "does not match the template"),
    "service selector": (lambda d: _find(d, "Service", "enricher")["spec"]["selector"]
                         .update({"app.kubernetes.io/name": "enrichr"}), "matches no"),
    "service target port": (lambda d: _set("spec.ports.0.targetPort", "htp")(
        _find(d, "Service", "fetcher")), "no container port"),
    "queue name": (lambda d: _set("spec.triggers.0.metadata.queueName", "tess-ffi.ffi.photometers")(
        _find(d, "ScaledObject", "photometer")), "the code declares 'tess-ffi.ffi.photometer'"),
    "scale target": (lambda d: _set("spec.scaleTargetRef.name", "photometers")(
        _find(d, "ScaledObject", "photometer")), "not the photometer Deployment"),
    "amqp mode": (lambda d: _set("spec.triggers.0.metadata.protocol", "amqp")(
        _find(d, "ScaledObject", "photometer")), "protocol 'amqp'"),
    "scale to zero": (lambda d: _set("spec.minReplicaCount", 0)(
        _find(d, "ScaledObject", "photometer")), "minReplicaCount"),
    "secret key": (lambda d: _set("spec.secretTargetRef.0.key", "management-url")(
        _find(d, "TriggerAuthentication", "rabbitmq-management")), "has no key 'management-url'"),
    "photometer memory": (lambda d: _set("resources.limits.memory", "8Gi")(
        _container(d, "photometer")), "expected ~1 GiB"),
    "root": (lambda d: _find(d, "Deployment", "enricher")["spec"]["template"]["spec"]
             ["securityContext"].update(runAsUser=0), "runAsUser 0"),
    "read-only home": (lambda d: _container(d, "analyzer").update(volumeMounts=[
        m for m in _container(d, "analyzer")["volumeMounts"] if m["mountPath"] != "/home/tess"]),
        "/home/tess is not a writable volume"),
    "no data volume": (lambda d: _container(d, "aggregator").update(volumeMounts=[
        m for m in _container(d, "aggregator")["volumeMounts"] if m["mountPath"] != "/data"]),
        "no PersistentVolumeClaim mounted"),
    "scaled singleton": (lambda d: _set("spec.replicas", 2)(_find(d, "Deployment", "fetcher")),
                         "exactly one replica"),
    "rabbit config drift": (lambda d: _find(d, "ConfigMap", "rabbitmq-config")["data"].update(
        {"90-tess-ffi.conf": "max_message_size = 16777216\n"}), "differs from"),
    "missing kind": (lambda d: _find(d, "Service", "fetcher").pop("kind"), "no kind"),
    "wrong apiVersion": (lambda d: _find(d, "Deployment", "fetcher").update(apiVersion="v1"),
                         "expected 'apps/v1'"),
}


@pytest.mark.parametrize("typo", sorted(K8S_TYPOS))
def test_k8s_checker_rejects(typo, manifests):
    mutate, expected = K8S_TYPOS[typo]
    docs = copy.deepcopy(manifests)
    mutate(docs)
    problems = check_k8s(docs, example_secret_keys())
    assert any(expected in p for p in problems), f"{typo}: not caught; problems: {problems}"


COMPOSE_TYPOS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "service name": (lambda c: c["services"]["photometer"].update(
        command=["serve", "photometre"]), "not a service"),
    "cli subcommand": (lambda c: c["services"]["fetcher"].update(
        command=["server", "fetcher"]), "not a valid tess-ffi CLI command"),
    "fixed host port": (lambda c: c["services"]["photometer"].update(
        ports=["127.0.0.1:8082:8080"]), "fixed host port"),
    "no replicas": (lambda c: c["services"]["photometer"].pop("deploy"), "deploy.replicas"),
    "password": (lambda c: c["services"]["rabbitmq"]["environment"].update(
        RABBITMQ_DEFAULT_PASS="hunter2"), "hard-coded credential"),
    "password in url": (lambda c: c["services"]["analyzer"].update(environment={
        **c["services"]["analyzer"]["environment"],
        "TESS_FFI_BROKER": "amqp://${RABBITMQ_USER}:hunter2@rabbitmq:5672/"}),
        "credential in its URL"),
    "env var name": (lambda c: c["services"]["enricher"].update(environment={
        **c["services"]["enricher"]["environment"], "TESS_FFI_DATADIR": "/data"}),
        "TESS_FFI_DATADIR is not read"),
    "port mapping": (lambda c: c["services"]["aggregator"].update(
        ports=["127.0.0.1:8083:8000"]), "publishes container port 8000"),
    "missing service": (lambda c: c["services"].pop("analyzer"), "no service 'analyzer'"),
}


@pytest.mark.parametrize("typo", sorted(COMPOSE_TYPOS))
def test_compose_checker_rejects(typo, compose):
    mutate, expected = COMPOSE_TYPOS[typo]
    changed = copy.deepcopy(compose)
    mutate(changed)
    problems = check_compose(changed)
    assert any(expected in p for p in problems), f"{typo}: not caught; problems: {problems}"


@pytest.mark.parametrize("typo,expected", [
    ("USER root", "runs as root"),
    ("HEALTHCHECK", "no HEALTHCHECK"),
    ("EXPOSE", "EXPOSE"),
])
def test_dockerfile_checker_rejects(typo, expected):
    info = dockerfile()
    if typo == "USER root":
        info["users"].append("root")
    elif typo == "HEALTHCHECK":
        info["healthcheck"] = None
    else:
        info["expose"] = [8000]
    assert any(expected in p for p in check_dockerfile(info))
