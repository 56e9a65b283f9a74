"""The deployment files under infra/: every YAML parses and the references between them hold.

Nothing here builds or deploys; it reads the files and cross-checks them against each
other and against the code they deploy:

- one image everywhere (Kubernetes, Knative, Cloud Run, compose, the scripts);
- every environment variable is a `Settings` field or a known platform/library
  variable, and every value is a string `Settings` accepts;
- every FUNCTION_TARGET is a target of functions/main.py (read with `ast`, with its
  signature type), and probes only ask a target for paths it answers with 200, with
  the seed's timings, on the container's port;
- ConfigMap, Secret, PVC, volume, Service, CephSource and namespace references resolve,
  and the files settings name (API_KEYS_FILE) are mounted;
- request timeouts follow UPLOAD_TIMEOUT_SECS; Cloud Run's /tmp-in-memory budget (bundles,
  and whole stored files for the file readers); deploy.sh deploys every service file and
  lets INVOKER call exactly the public ones;
- the Dockerfile (base, numeric non-root USER, `pip install .`, functions-framework CMD,
  ignore file) and compose (build contexts, pinned images, wiring);
- the event wiring scripts name the services and buckets the manifests define;
- the retention sweep's schedules (the PingSource, deploy.sh's Cloud Scheduler job) call
  the services that run `gc_sweep`;
- infra/README.md's target table and Knative apply loop name what the manifests deploy.

Each checker returns a list of problems. The tests at the end break a copy of the
files on purpose and expect the checker to notice, so no check can silently go blind.
Over 500 lines because every cross-check needs the views the others build on, and
splitting them would scatter one contract over several files.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from core.auth import Authenticator, hash_key
from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PLATFORMS = ("kubernetes", "knative", "cloudrun")

# Targets the architecture plans but functions/main.py does not define yet, with their
# signature type. Manifests may name them; once one is defined, drop it here: it is then
# checked like any other target. (on_bundle_uploaded was one until it was written.) A
# planned HTTP target is probed as if wrapped like the others (`_with_probes`).
PLANNED_TARGETS: dict[str, str] = {}  # targets deployed before functions/main.py defines them
ROUTER_TARGET = "service"
# Targets that process a whole bundle: their request timeout is UPLOAD_TIMEOUT_SECS.
BUNDLE_TARGETS = {"upload", ROUTER_TARGET, "on_bundle_uploaded", "bundle_events"}
# Targets that copy one whole stored file to the temp folder (GET /api/v1/delta/file, the
# MCP tool read_file); a tree file can be as large as MAX_UNCOMPRESSED_MB.
FILE_TARGETS = {"file", "mcp"}
# Settings naming a file the container must be given (a Secret mounted as a volume).
FILE_SETTINGS = ("API_KEYS_FILE", "JWT_JWKS_FILE")
# Variables read by what runs in the image besides `Settings`.
ALLOWED_ENV = {
    # functions-framework (_cli.py, _http/gunicorn.py)
    "FUNCTION_TARGET", "FUNCTION_SOURCE", "FUNCTION_SIGNATURE_TYPE", "PORT", "HOST",
    "WORKERS", "THREADS", "GUNICORN_LOG_LEVEL", "CLOUD_RUN_TIMEOUT_SECONDS",
    # boto3 / botocore
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
}
# Set by Knative / Cloud Run themselves; a manifest that sets them is refused.
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
LIVENESS = {"periodSeconds": 10, "initialDelaySeconds": 30}
READINESS = {"periodSeconds": 5, "initialDelaySeconds": 10}
TIMINGS = {"livenessProbe": LIVENESS, "readinessProbe": READINESS}
PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
MEMORY_HEADROOM_MIB = 1024  # the process itself, besides bundles staged in /tmp
KNOWN_KINDS = {
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"), ("v1", "Service"), ("apps/v1", "Deployment"),
    ("serving.knative.dev/v1", "Service"), ("sources.knative.dev/v1alpha1", "CephSource"),
    ("sources.knative.dev/v1", "PingSource"),
}
WORKLOAD_KINDS = {("apps/v1", "Deployment"), ("serving.knative.dev/v1", "Service")}


# --- loading ----------------------------------------------------------------------------


@dataclass
class Doc:
    path: str  # relative to the repository root
    body: dict[str, Any]

    @property
    def platform(self) -> str:
        return Path(self.path).parts[1]

    @property
    def kind(self) -> tuple[str, str]:
        return self.body.get("apiVersion", ""), self.body.get("kind", "")

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return self.body.get("metadata", {}).get("namespace")

    @property
    def pod(self) -> dict[str, Any]:
        return self.body["spec"]["template"]["spec"]

    def __str__(self) -> str:
        return f"{self.path}:{self.body.get('kind')}/{self.name}"


@dataclass(frozen=True)
class MainModule:
    names: frozenset[str]  # module-level names: functions-framework looks targets up there
    kinds: dict[str, str]  # target -> "http" | "cloudevent", when decorated or wrapped
    wraps: dict[str, str]  # target -> the handler it wraps (health = http(_health))
    wrappers: dict[str, tuple[str, ...]]  # target -> calls around that handler (_with_probes)
    routes: dict[str, str]  # ROUTES: path -> handler name
    functions: dict[str, tuple[frozenset[str], frozenset[str]]]  # def -> (names it calls, strings)

    def health_paths(self) -> set[str]:
        handler = self.routes.get("/health")
        return {"/health"} | {p for p, h in self.routes.items() if handler and h == handler}

    def probe_paths(self, target: str) -> set[str]:
        """Health paths the target answers with the health handler (200 when healthy).

        The router and targets wrapping the handler answer them all; a target whose wrapper
        calls the handler answers the health paths that wrapper names (_with_probes)."""
        handler = self.routes.get("/health")
        if target == ROUTER_TARGET or (handler and self.wraps.get(target) == handler):
            return self.health_paths()
        answered: set[str] = set()
        for wrapper in self.wrappers.get(target, ()):
            calls, strings = self.functions.get(wrapper, (frozenset(), frozenset()))
            if handler in calls:
                answered |= strings & self.health_paths()
        return answered

    def http_probe_targets(self) -> set[str]:
        """Targets that answer GET on (some of) the health paths with 200."""
        return {ROUTER_TARGET} | {t for t in self.kinds if self.probe_paths(t)}


@dataclass
class Infra:
    docs: list[Doc]
    compose: dict[str, Any]
    dockerfile: str
    dockerignore: str
    scripts: dict[str, str]  # path relative to infra/ -> text
    main: MainModule
    readme: str  # infra/README.md


def _decorator_kind(node: ast.expr) -> str | None:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    return {"http": "http", "cloud_event": "cloudevent"}.get(name or "")


def parse_main(source: str) -> MainModule:
    names: set[str] = set()
    kinds: dict[str, str] = {}
    wraps: dict[str, str] = {}
    wrappers: dict[str, tuple[str, ...]] = {}
    routes: dict[str, str] = {}
    functions: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
            inner = list(ast.walk(node))
            calls = [n.func for n in inner if isinstance(n, ast.Call)]
            functions[node.name] = (
                frozenset(f.id for f in calls if isinstance(f, ast.Name)),
                frozenset(n.value for n in inner if isinstance(n, ast.Constant) and isinstance(n.value, str)))
            for decorator in node.decorator_list:
                if kind := _decorator_kind(decorator):
                    kinds[node.name] = kind
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in (t for t in targets if isinstance(t, ast.Name)):
                names.add(target.id)
                value = node.value
                if isinstance(value, ast.Call) and (kind := _decorator_kind(value.func)):
                    kinds[target.id] = kind
                    wrapped = value.args[0] if value.args else None
                    chain: list[str] = []
                    while isinstance(wrapped, ast.Call) and wrapped.args:  # e.g. _with_probes(_upload)
                        if isinstance(wrapped.func, ast.Name):
                            chain.append(wrapped.func.id)
                        wrapped = wrapped.args[0]
                    if isinstance(wrapped, ast.Name):
                        wraps[target.id] = wrapped.id
                        wrappers[target.id] = tuple(chain)
                if target.id == "ROUTES" and isinstance(value, ast.Dict):
                    for key, handler in zip(value.keys, value.values, strict=True):
                        if isinstance(key, ast.Constant) and isinstance(handler, ast.Name):
                            routes[str(key.value)] = handler.id
    return MainModule(frozenset(names), kinds, wraps, wrappers, routes, functions)


@cache
def _load() -> Infra:
    docs = []
    for path in sorted(INFRA.rglob("*.y*ml")):
        if path.name != "compose.yaml":
            docs += [Doc(str(path.relative_to(ROOT)), body)
                     for body in yaml.safe_load_all(path.read_text()) if body is not None]
    return Infra(
        docs=docs,
        compose=yaml.safe_load((INFRA / "compose.yaml").read_text()),
        dockerfile=(INFRA / "Dockerfile").read_text(),
        dockerignore=(INFRA / "Dockerfile.dockerignore").read_text(),
        scripts={str(p.relative_to(INFRA)): p.read_text() for p in sorted(INFRA.rglob("*.sh"))},
        main=parse_main((ROOT / "functions" / "main.py").read_text()),
        readme=(INFRA / "README.md").read_text(),
    )


@pytest.fixture
def infra() -> Infra:
    return copy.deepcopy(_load())


# --- views over the manifests -------------------------------------------------------------


def workloads(infra: Infra) -> list[Doc]:
    """Documents that run containers (Deployments, Knative and Cloud Run Services)."""
    return [d for d in infra.docs if d.kind in WORKLOAD_KINDS]


def containers(doc: Doc) -> list[dict[str, Any]]:
    return list(doc.pod.get("containers", [])) + list(doc.pod.get("initContainers", []))


def config_maps(infra: Infra) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(d.namespace, d.name): d.body.get("data") or {}
            for d in infra.docs if d.kind == ("v1", "ConfigMap")}


def secrets(infra: Infra) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(d.namespace, d.name): {**(d.body.get("data") or {}), **(d.body.get("stringData") or {})}
            for d in infra.docs if d.kind == ("v1", "Secret")}


def env_of(infra: Infra, doc: Doc, container: dict[str, Any]) -> dict[str, Any]:
    """What the container sees: envFrom ConfigMaps/Secrets, then env (None: from a reference)."""
    env: dict[str, Any] = {}
    maps, secs = config_maps(infra), secrets(infra)
    for source in container.get("envFrom", []):
        if ref := source.get("configMapRef"):
            env.update(maps.get((doc.namespace, ref["name"]), {}))
        if ref := source.get("secretRef"):
            env.update(secs.get((doc.namespace, ref["name"]), {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value") if "value" in item else None
    return env


def target_of(infra: Infra, doc: Doc, container: dict[str, Any]) -> str:
    default = dockerfile_env(infra)["FUNCTION_TARGET"]
    return str(env_of(infra, doc, container).get("FUNCTION_TARGET") or default)


def the_image(infra: Infra) -> str:
    return str(infra.compose["services"]["upload-service"]["image"])


def ours(infra: Infra) -> list[tuple[Doc, dict[str, Any]]]:
    image = the_image(infra)
    return [(d, c) for d in workloads(infra) for c in containers(d) if c.get("image") == image]


def setting(env: dict[str, Any], name: str) -> Any:
    """The effective value of a setting: the environment's, else the default."""
    return env.get(name, Settings.model_fields[name.lower()].default)


def mounted_files(infra: Infra, doc: Doc, container: dict[str, Any]) -> dict[str, str]:
    """Files that Secret/ConfigMap volumes put in the container: path -> source name."""
    volumes = {v["name"]: v for v in doc.pod.get("volumes", [])}
    stores = {**config_maps(infra), **secrets(infra)}
    files = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        source = volume.get("secret") or volume.get("configMap")
        if source:
            name = source.get("secretName") or source.get("name")
            keys = [i["path"] for i in source.get("items", [])] or list(stores.get((doc.namespace, name), {}))
            files.update({f"{mount['mountPath'].rstrip('/')}/{key}": name for key in keys})
    return files


# --- the Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    found = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage(infra: Infra) -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(infra.dockerfile)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def dockerfile_env(infra: Infra) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage(infra):
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def image_user(infra: Infra) -> str:
    users = [rest for word, rest in final_stage(infra) if word == "USER"]
    return users[-1] if users else "root"


def ignored(path: str, patterns: str) -> bool:
    """Docker's ignore-file rule: the last pattern matching the path or a parent wins."""
    result = False
    for raw in (line.strip() for line in patterns.splitlines()):
        if not raw or raw.startswith("#"):
            continue
        negate, pattern = raw.startswith("!"), raw.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


# --- checkers -----------------------------------------------------------------------------


def check_images(infra: Infra) -> list[str]:
    image = the_image(infra)
    problems = [f"{d}: container {c.get('name')} runs {c.get('image')}, not {image}"
                for d in workloads(infra) for c in containers(d) if c.get("image") != image]
    for name, service in infra.compose["services"].items():
        if "build" in service and service.get("image") != image:
            problems.append(f"compose {name}: builds {service.get('image')}, not {image}")
    for name in ("render.sh", "cloudrun/deploy.sh"):
        if f"PLACEHOLDER_IMAGE={image}\n" not in infra.scripts[name]:
            problems.append(f"infra/{name}: PLACEHOLDER_IMAGE is not {image}")
    return problems


class _GivenOnly(Settings):
    """`Settings` built from the given values only, never from this process's environment."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *args: Any,
                                   **kwargs: Any) -> Any:
        return (init_settings,)


def env_problems(where: str, env: dict[str, Any]) -> list[str]:
    fields = {name.upper() for name in Settings.model_fields}
    problems = [f"{where}: {name} is neither a Settings field nor a known platform variable"
                for name in env if name not in fields and name not in ALLOWED_ENV]
    values = {}
    for name, value in env.items():
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: {name}={value!r} is not a string (Kubernetes wants strings)")
        elif name in fields and value == "":
            problems.append(f"{where}: {name} is empty; leave it out instead (empty is not unset)")
        elif name in fields:
            values[name.lower()] = value
    try:
        _GivenOnly(**values)
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
        problems.append(f"{where}: Settings refuses {sorted(values)}: {exc}")
    return problems


def check_env(infra: Infra) -> list[str]:
    problems = []
    env_stores = {**config_maps(infra), **secrets(infra)}
    for doc, container in ours(infra):
        env = env_of(infra, doc, container)
        problems += env_problems(f"{doc}", env)
        if doc.platform in {"knative", "cloudrun"}:
            reserved = sorted(RESERVED_ENV & set(env))
            problems += [f"{doc}: sets {n}, which the platform sets itself" for n in reserved]
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            problems += env_problems(f"{doc} envFrom {ref.get('name')}",
                                     env_stores.get((doc.namespace, ref.get("name")), {}))
    for name, service in compose_ours(infra).items():
        problems += env_problems(f"compose {name}", service.get("environment", {}))
    return problems


def check_auth_and_files(infra: Infra) -> list[str]:
    """AUTH_MODE has what it needs, and every file a setting names is mounted."""
    problems = []
    for doc, container in ours(infra):
        env, files = env_of(infra, doc, container), mounted_files(infra, doc, container)
        mode = setting(env, "AUTH_MODE")
        if mode == "api_key" and not env.get("API_KEYS_FILE"):
            problems.append(f"{doc}: AUTH_MODE=api_key without API_KEYS_FILE")
        if mode == "jwt" and not (env.get("JWT_SECRET") or env.get("JWT_JWKS_FILE") or "JWT_SECRET" in env):
            problems.append(f"{doc}: AUTH_MODE=jwt without JWT_SECRET or JWT_JWKS_FILE")
        for name in FILE_SETTINGS:
            if env.get(name) and env[name] not in files:
                problems.append(f"{doc}: {name}={env[name]} is not mounted (mounted: {sorted(files)})")
    return problems


def check_targets(infra: Infra) -> list[str]:
    problems = []
    for doc, container in ours(infra):
        target = target_of(infra, doc, container)
        if target not in infra.main.names and target not in PLANNED_TARGETS:
            problems.append(f"{doc}: FUNCTION_TARGET {target} is not defined in functions/main.py")
        kind = infra.main.kinds.get(target) if target in infra.main.names else PLANNED_TARGETS.get(target)
        declared = env_of(infra, doc, container).get("FUNCTION_SIGNATURE_TYPE", "http")
        if kind and declared != kind:
            problems.append(f"{doc}: {target} is a {kind} function, FUNCTION_SIGNATURE_TYPE says {declared}")
    for platform in ("knative", "cloudrun"):  # and every target main.py defines is deployed
        deployed = {target_of(infra, d, c) for d, c in ours(infra) if d.platform == platform}
        problems += [f"{platform}/: no service deploys the target {t} of functions/main.py"
                     for t in sorted(set(infra.main.kinds) - deployed)]
    return problems


def probe_port_ok(container: dict[str, Any], port: Any) -> bool:
    ports = container.get("ports", [])
    return port in {p.get("containerPort") for p in ports} | {p.get("name") for p in ports}


def probe_paths(infra: Infra, target: str) -> set[str]:
    """Health paths the target answers with 200; for a planned HTTP target, those a
    single-function target wrapped with `_with_probes` answers."""
    if target in infra.main.names or PLANNED_TARGETS.get(target) != "http":
        return infra.main.probe_paths(target)
    calls, strings = infra.main.functions.get("_with_probes", (frozenset(), frozenset()))
    return strings & infra.main.health_paths() if infra.main.routes.get("/health") in calls else set()


def check_probes(infra: Infra) -> list[str]:
    problems = []
    http_targets = infra.main.http_probe_targets() | {t for t in PLANNED_TARGETS if probe_paths(infra, t)}
    for doc, container in ours(infra):
        target = target_of(infra, doc, container)
        where = f"{doc} ({target})"
        probes = {k: container[k] for k in PROBE_KINDS if k in container}
        if doc.platform != "cloudrun":
            required = {"livenessProbe", "readinessProbe"}
        else:  # Cloud Run: startup probes, and HTTP (not TCP) liveness probes
            required = {"startupProbe", "livenessProbe"} if target in http_targets else {"startupProbe"}
        problems += [f"{where}: no {k}" for k in sorted(required - set(probes))]
        for kind, probe in probes.items():
            action = probe.get("httpGet") or probe.get("tcpSocket") or {}
            if "httpGet" in probe:
                path = urlparse(probe["httpGet"].get("path", "/")).path
                if target not in http_targets:
                    problems.append(f"{where}: {kind} GET {path}, but {target} answers every path with "
                                    "its own function (not 200): use tcpSocket")
                elif path not in (answered := probe_paths(infra, target)):
                    problems.append(f"{where}: {kind} GET {path} is not a health path {sorted(answered)}")
            if not probe_port_ok(container, action.get("port")):
                problems.append(f"{where}: {kind} port {action.get('port')} is not the container's port")
            for field, value in TIMINGS.get(kind, {}).items():
                if probe.get(field) != value:
                    problems.append(f"{where}: {kind}.{field} is {probe.get(field)}, the seed says {value}")
            if doc.platform == "cloudrun" and kind == "livenessProbe" and "tcpSocket" in probe:
                problems.append(f"{where}: Cloud Run has no TCP liveness probe")
    return problems


def check_references(infra: Infra) -> list[str]:
    problems = []
    namespaces = {d.name for d in infra.docs if d.kind == ("v1", "Namespace")}
    maps, secs = config_maps(infra), secrets(infra)
    pvcs = {(d.namespace, d.name) for d in infra.docs if d.kind == ("v1", "PersistentVolumeClaim")}
    used: set[tuple[str | None, str]] = set()
    for doc in infra.docs:
        if doc.kind not in KNOWN_KINDS:
            problems.append(f"{doc}: unexpected apiVersion/kind {doc.kind}")
        if doc.platform != "cloudrun" and doc.kind[1] != "Namespace" and doc.namespace not in namespaces:
            problems.append(f"{doc}: namespace {doc.namespace} is not defined under infra/")
    for doc in (d for d in workloads(infra) if d.platform != "cloudrun"):
        ns = doc.namespace
        volumes = {v["name"]: v for v in doc.pod.get("volumes", [])}
        for volume in volumes.values():
            wanted = [("PVC", pvcs, (volume.get("persistentVolumeClaim") or {}).get("claimName")),
                      ("Secret", secs, (volume.get("secret") or {}).get("secretName")),
                      ("ConfigMap", maps, (volume.get("configMap") or {}).get("name"))]
            for what, table, name in wanted:
                if name and (ns, name) not in table:
                    problems.append(f"{doc}: {what} {name} is not defined under infra/")
                used.add((ns, name))
        for container in containers(doc):
            for source in container.get("envFrom", []):
                for key, what, table in (("configMapRef", "ConfigMap", maps), ("secretRef", "Secret", secs)):
                    if (ref := source.get(key)) and (ns, ref["name"]) not in table:
                        problems.append(f"{doc}: {what} {ref['name']} is not defined under infra/")
                    if ref := source.get(key):
                        used.add((ns, ref["name"]))
            for item in container.get("env", []):
                for key, table in (("configMapKeyRef", maps), ("secretKeyRef", secs)):
                    if ref := item.get("valueFrom", {}).get(key):
                        used.add((ns, ref["name"]))
                        if ref["key"] not in table.get((ns, ref["name"]), {}):
                            problems.append(f"{doc}: {key} {ref['name']}/{ref['key']} does not exist")
            problems += [f"{doc}: volumeMount {m['name']} has no volume"
                         for m in container.get("volumeMounts", []) if m["name"] not in volumes]
    problems += [f"ConfigMap/Secret {name} is defined but nothing uses it"
                 for ns, name in {**maps, **secs} if (ns, name) not in used]
    return problems + check_services(infra) + check_ceph_source(infra)


def check_services(infra: Infra) -> list[str]:
    """Every Kubernetes Service selects pods defined here and targets one of their ports."""
    problems = []
    for svc in (d for d in infra.docs if d.kind == ("v1", "Service")):
        selector = svc.body["spec"].get("selector", {})
        if "knative-eventing-source-name" in selector:
            continue  # the CephSource's receive adapter: check_ceph_source
        pods = [c for d in workloads(infra) if d.kind[0] == "apps/v1" and d.namespace == svc.namespace
                and selector.items() <= d.body["spec"]["template"]["metadata"]["labels"].items()
                for c in containers(d)]
        if not pods:
            problems.append(f"{svc}: selector {selector} matches no Deployment under infra/")
        for port in svc.body["spec"]["ports"]:
            if pods and not any(probe_port_ok(c, port.get("targetPort", port["port"])) for c in pods):
                problems.append(f"{svc}: targetPort {port.get('targetPort')} is no container port")
    return problems


def check_ceph_source(infra: Infra) -> list[str]:
    problems = []
    knative = {(d.namespace, d.name): d for d in workloads(infra) if d.platform == "knative"}
    script = infra.scripts["knative/rgw-notifications.sh"]
    for src in (d for d in infra.docs if d.kind[1] == "CephSource"):
        ref = src.body["spec"]["sink"]["ref"]
        sink = knative.get((src.namespace, ref["name"]))
        if ref.get("kind") != "Service" or sink is None:
            problems.append(f"{src}: sink {ref} is not a Knative Service under infra/knative")
        elif {target_of(infra, sink, c) for c in containers(sink)} != {"on_bundle_uploaded"}:
            problems.append(f"{src}: sink {ref['name']} does not run on_bundle_uploaded")
        adapters = [d for d in infra.docs if d.kind == ("v1", "Service") and d.namespace == src.namespace
                    and d.body["spec"].get("selector", {}).get("knative-eventing-source-name") == src.name]
        if not adapters:
            problems.append(f"{src}: no Service selects its receive adapter (RGW's push endpoint)")
        for adapter in adapters:
            port = int(src.body["spec"]["port"])
            if {p.get("targetPort") for p in adapter.body["spec"]["ports"]} != {port}:
                problems.append(f"{adapter}: targetPort is not the CephSource's port {port}")
            address = f"http://{adapter.name}.{adapter.namespace}.svc.cluster.local"
            if shell_default(script, "PUSH_ENDPOINT") != address:
                problems.append(f"rgw-notifications.sh: default PUSH_ENDPOINT is not {adapter}")
    return problems


def check_timeouts(infra: Infra) -> list[str]:
    problems = []
    for doc, container in ours(infra):
        if doc.platform in {"knative", "cloudrun"} and target_of(infra, doc, container) in BUNDLE_TARGETS:
            want = int(setting(env_of(infra, doc, container), "UPLOAD_TIMEOUT_SECS"))
            if doc.pod.get("timeoutSeconds") != want:
                got = doc.pod.get("timeoutSeconds")
                problems.append(f"{doc}: timeoutSeconds {got} != UPLOAD_TIMEOUT_SECS {want}")
    return problems


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity)
    assert match, quantity
    return float(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def check_cloud_run(infra: Infra) -> list[str]:
    problems = []
    services = [d for d in workloads(infra) if d.platform == "cloudrun"]
    deploy = infra.scripts["cloudrun/deploy.sh"]
    created = set(re.findall(r"^create_secret (\S+)", deploy, re.M))
    settings_env = set()
    for doc in services:
        labels = doc.body["metadata"].get("labels", {})
        problems += [f"{doc}: label {k} is not a valid Cloud Run label key"
                     for k in labels if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k)]
        if doc.body["metadata"].get("annotations", {}).get("run.googleapis.com/ingress") not in {
                "all", "internal", "internal-and-cloud-load-balancing"}:
            problems.append(f"{doc}: run.googleapis.com/ingress missing or invalid")
        secret_names = [v["secret"]["secretName"] for v in doc.pod.get("volumes", []) if "secret" in v]
        for container in containers(doc):
            env, target = env_of(infra, doc, container), target_of(infra, doc, container)
            shared = [e for e in container.get("env", []) if not e["name"].startswith("FUNCTION_")]
            settings_env.add(json.dumps(shared, sort_keys=True))
            secret_names += [ref["name"] for e in container.get("env", [])
                             if (ref := e.get("valueFrom", {}).get("secretKeyRef"))]
            bundle, unpacked = (int(setting(env, n)) for n in ("MAX_BUNDLE_SIZE_MB", "MAX_UNCOMPRESSED_MB"))
            # /tmp is memory: every concurrent bundle, or stored file, is staged there
            staged = bundle + unpacked if target in BUNDLE_TARGETS else 0
            if target in FILE_TARGETS:
                staged = unpacked
            if staged:
                need = doc.pod.get("containerConcurrency", 80) * staged + MEMORY_HEADROOM_MIB
                have = mebibytes(container["resources"]["limits"]["memory"])
                if need > have:
                    problems.append(f"{doc}: staging bundles in /tmp needs {need} MiB, limit {have:.0f}")
        problems += [f"{doc}: secret {n} is not created by cloudrun/deploy.sh"
                     for n in secret_names if n not in created]
    if len(settings_env) > 1:
        problems.append("cloudrun: the services' settings differ (only FUNCTION_* may)")
    listed = re.search(r"^SERVICES=\(([^)]*)\)", deploy, re.M)
    stems = {Path(d.path).stem for d in services}
    if not listed or set(listed.group(1).split()) != stems:
        problems.append(f"cloudrun/deploy.sh SERVICES is not the service files {sorted(stems)}")
    invoked = re.search(r"^HTTP_SERVICES=\(([^)]*)\)", deploy, re.M)  # INVOKER may call these
    public = {d.name for d in services
              if d.body["metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"}
    if not invoked or set(invoked.group(1).split()) != public:
        problems.append(f"cloudrun/deploy.sh HTTP_SERVICES is not the public services {sorted(public)}")
    return problems + check_eventarc(infra, services)


def shell_default(script: str, name: str) -> str:
    match = re.search(rf"^{name}=\$\{{{name}:-([^}}]*)\}}", script, re.M)
    return match.group(1) if match else f"<no default for {name}>"


def check_eventarc(infra: Infra, services: list[Doc]) -> list[str]:
    script = infra.scripts["cloudrun/eventarc.sh"]
    problems = [f"cloudrun/eventarc.sh: missing {needle}" for needle in (
        "gcloud eventarc triggers create", '--event-filters="type=google.cloud.storage.object.v1.finalized"',
        '--event-filters="bucket=$BUCKET"', '--destination-run-service="$SERVICE"') if needle not in script]
    service = re.search(r"^SERVICE=(\S+)", script, re.M)
    runs = {d.name: {target_of(infra, d, c) for c in containers(d)} for d in services}
    if not service or runs.get(service.group(1)) != {"on_bundle_uploaded"}:
        problems.append("cloudrun/eventarc.sh: SERVICE is no Cloud Run service of on_bundle_uploaded")
    buckets = {urlparse(str(env_of(infra, d, c).get("STORAGE_URL"))).netloc
               for d in services for c in containers(d)}
    for name in ("cloudrun/eventarc.sh", "cloudrun/deploy.sh"):
        if {shell_default(infra.scripts[name], "BUCKET")} != buckets:
            problems.append(f"{name}: default BUCKET is not the bucket of STORAGE_URL {sorted(buckets)}")
    return problems


GC_TARGET = "gc_sweep"


def check_schedules(infra: Infra) -> list[str]:
    """Every PingSource POSTs to a Knative Service running the sweep; deploy.sh's Cloud
    Scheduler job calls the Cloud Run service running it, with an OIDC token and the admin token."""
    problems = []
    runs = {(d.platform, d.namespace, d.name): {target_of(infra, d, c) for c in containers(d)}
            for d in workloads(infra)}
    sources = [d for d in infra.docs if d.kind[1] == "PingSource"]
    if not sources:
        problems.append("knative: no PingSource schedules the retention sweep")
    for src in sources:
        ref = src.body["spec"]["sink"]["ref"]
        if ref.get("kind") != "Service" or runs.get(("knative", src.namespace, ref["name"])) != {GC_TARGET}:
            problems.append(f"{src}: sink {ref} is not a Knative Service running {GC_TARGET}")
    deploy = infra.scripts["cloudrun/deploy.sh"]
    swept = [name for (platform, _, name), targets in runs.items()
             if platform == "cloudrun" and targets == {GC_TARGET}]
    for needle in ("gcloud scheduler jobs create http", "--oidc-service-account-email",
                   "X-Admin-Token=", *(f"describe {name} " for name in swept)):
        if needle not in deploy:
            problems.append(f"cloudrun/deploy.sh: the sweep's scheduler job misses {needle!r}")
    if len(swept) != 1:
        problems.append(f"cloudrun: {len(swept)} services run {GC_TARGET}, the scheduler job calls one")
    return problems


def check_rgw_script(infra: Infra) -> list[str]:
    script = infra.scripts["knative/rgw-notifications.sh"]
    problems = [f"rgw-notifications.sh: missing {needle}" for needle in (
        "sns create-topic", "push-endpoint", '\\"persistent\\": \\"true\\"',
        "s3api put-bucket-notification-configuration", '[\\"s3:ObjectCreated:*\\"]',
        '\\"Name\\": \\"prefix\\"', '"${PREFIX:+$PREFIX/}incoming/"') if needle not in script]
    storage_urls = [data["STORAGE_URL"] for data in config_maps(infra).values() if "STORAGE_URL" in data]
    if [shell_default(script, "STORAGE_URL")] != storage_urls:
        problems.append(f"rgw-notifications.sh: default STORAGE_URL is not the ConfigMap's {storage_urls}")
    return problems


def check_dockerfile(infra: Infra) -> list[str]:
    instructions = dockerfile_instructions(infra.dockerfile)
    problems = [f"Dockerfile: FROM {rest} is not python:3.11-slim" for word, rest in instructions
                if word == "FROM" and rest.split()[0] != "python:3.11-slim"]
    uid = image_user(infra).split(":")[0]
    if not uid.isdigit() or int(uid) == 0:
        problems.append(f"Dockerfile: USER {image_user(infra)} is not a numeric non-root uid")
    if not any(word == "WORKDIR" for word, _ in final_stage(infra)):
        problems.append("Dockerfile: the final stage sets no WORKDIR")
    env = dockerfile_env(infra)
    if env.get("FUNCTION_TARGET") != ROUTER_TARGET or env.get("PORT") != "8080":
        problems.append(f"Dockerfile: ENV FUNCTION_TARGET={env.get('FUNCTION_TARGET')}, "
                        f"PORT={env.get('PORT')} (want {ROUTER_TARGET}, 8080)")
    pip = [i for i, (word, rest) in enumerate(instructions)
           if word == "RUN" and re.search(r"pip install (-\S+ )*\.( |$)", rest)]
    if not pip:
        problems.append("Dockerfile: no `RUN pip install .`")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {project["project"]["readme"], "pyproject.toml"} | {
        p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {src.rstrip("/") for word, rest in instructions[: pip[0] if pip else 0] if word == "COPY"
              for src in rest.split()[:-1] if not src.startswith("--")}
    problems += [f"Dockerfile: {n} is not copied before `pip install .`" for n in sorted(needed - copied)]
    for word, rest in instructions:
        if word != "COPY" or "--from" in rest:
            continue
        for src in (s for s in rest.split()[:-1] if not s.startswith("--")):
            if not (ROOT / src).exists():
                problems.append(f"Dockerfile: COPY {src} does not exist")
            elif ignored(src.rstrip("/"), infra.dockerignore):
                problems.append(f"Dockerfile: COPY {src} is excluded by Dockerfile.dockerignore")
    commands = [rest for word, rest in final_stage(infra) if word in {"CMD", "ENTRYPOINT"}]
    argv = json.loads(commands[-1]) if commands and commands[-1].startswith("[") else []
    launcher = argv[:3] == ["python", "-m", "functions.serve"]  # functions-framework + HTTP limits
    if not argv or not (launcher or argv[0] == "functions-framework"):
        problems.append("Dockerfile: CMD is neither `python -m functions.serve` nor functions-framework")
    elif any("$" in a for a in argv) or {"--target", "--port"} & set(argv):
        problems.append("Dockerfile: CMD must take target and port from FUNCTION_TARGET/PORT")
    elif not launcher and ("--source" not in argv or not (ROOT / argv[argv.index("--source") + 1]).is_file()):
        problems.append("Dockerfile: CMD --source is not a file of the repository")
    return problems


def compose_ours(infra: Infra) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in infra.compose["services"].items() if s.get("image") == the_image(infra)}


def pinned(package: str) -> str:
    match = re.search(rf'"{re.escape(package)}==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    return match.group(1) if match else "<not pinned>"


def check_compose(infra: Infra) -> list[str]:
    problems = []
    services = infra.compose["services"]
    for name, service in services.items():
        if build := service.get("build"):
            context = (INFRA / build["context"]).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"compose {name}: no {build.get('dockerfile')} in context {context}")
        elif ":" not in service["image"] or service["image"].endswith(":latest"):
            problems.append(f"compose {name}: image {service['image']} is not pinned")
        problems += [f"compose {name}: depends on unknown {d}" for d in service.get("depends_on", {})
                     if d not in services]
    tags = dict(s["image"].rsplit(":", 1) for s in services.values())
    if tags.get("motoserver/moto") != pinned("moto[server]"):
        problems.append("compose: motoserver/moto is not the moto[server] version pinned in pyproject.toml")
    server, client = (v.lstrip("v").split(".")
                      for v in (tags.get("qdrant/qdrant", "0.0"), pinned("qdrant-client")))
    if server[0] != client[0] or abs(int(server[1]) - int(client[1])) > 1:
        problems.append("compose: qdrant/qdrant is more than one minor version from the qdrant-client pin")
    env = services["upload-service"]["environment"]
    if env.get("FUNCTION_TARGET") != ROUTER_TARGET:
        problems.append("compose upload-service: does not run the router target")
    if not any(str(p).endswith(f":{env.get('PORT')}") for p in services["upload-service"].get("ports", [])):
        problems.append("compose upload-service: publishes no port equal to its PORT")
    for key in ("QDRANT_URL", "S3_ENDPOINT_URL"):
        if urlparse(env[key]).hostname not in services:
            problems.append(f"compose upload-service: {key} host is not a compose service")
    s3 = services.get(urlparse(env["S3_ENDPOINT_URL"]).hostname or "", {})
    presign = urlparse(env.get("S3_PRESIGN_ENDPOINT_URL", ""))
    published = f"{presign.hostname}:{presign.port}:{urlparse(env['S3_ENDPOINT_URL']).port}"
    if published not in s3.get("ports", []):
        problems.append("compose: S3_PRESIGN_ENDPOINT_URL is not where the S3 service is published")
    events = urlparse(services["s3-events"]["entrypoint"][-1])  # RGW's push topic, emulated
    receiver = services.get(events.hostname or "", {}).get("environment", {})
    if (receiver.get("FUNCTION_TARGET") != ROUTER_TARGET or str(events.port) != receiver.get("PORT")
            or infra.main.routes.get(events.path) != infra.main.wraps.get("bundle_events")):
        problems.append(f"compose s3-events: {events.geturl()} is not the router's bundle_events route")
    return problems


def check_seed_kubernetes(infra: Infra) -> list[str]:
    """The seed's deployment: NodePort 30804 -> 8002, the router on CephFS mounted at /work."""
    problems = []
    docs = {(d.kind, d.name): d for d in infra.docs if d.platform == "kubernetes"}
    svc = docs[(("v1", "Service"), "upload-service")].body["spec"]
    if svc["type"] != "NodePort" or [(p["port"], p.get("nodePort")) for p in svc["ports"]] != [(8002, 30804)]:
        problems.append("upload-service Service: not NodePort 30804 -> port 8002")
    pvc = docs[(("v1", "PersistentVolumeClaim"), "upload-work")].body["spec"]
    if pvc["accessModes"] != ["ReadWriteMany"] or pvc.get("storageClassName") != "cephfs":
        problems.append("upload-work PVC: not ReadWriteMany on storageClassName cephfs")
    deployment = docs[(("apps/v1", "Deployment"), "upload-service")]
    for container in containers(deployment):
        env = env_of(infra, deployment, container)
        ports = {p["containerPort"] for p in container["ports"]}
        target = target_of(infra, deployment, container)
        if target != ROUTER_TARGET or ports != {8002} or env.get("PORT") != "8002":
            problems.append("upload-service Deployment: not the router on port 8002")
        if env.get("WORK_DIR") != "/work" or env.get("STORAGE_URL"):
            problems.append("upload-service Deployment: storage is not WORK_DIR=/work")
        if "/work" not in {m["mountPath"] for m in container.get("volumeMounts", [])}:
            problems.append("upload-service Deployment: nothing mounted at /work")
    for doc in workloads(infra):
        run_as = doc.pod.get("securityContext", {}).get("runAsUser")
        if run_as is not None and str(run_as) != image_user(infra).split(":")[0]:
            problems.append(f"{doc}: runAsUser {run_as} is not the image's USER")
    return problems


def check_readme(infra: Infra) -> list[str]:
    """infra/README.md names every target with its service, and applies every Knative service."""
    problems = []
    table = dict(re.findall(r"^\| `(\w+)` \| [^|\n]* \| `([a-z-]+)`", infra.readme, re.M))
    for platform in ("knative", "cloudrun"):
        deployed = {target_of(infra, d, c): d.name for d, c in ours(infra) if d.platform == platform}
        if table != deployed:
            problems.append(f"infra/README.md: the target table {sorted(table.items())} is not "
                            f"what {platform}/ deploys {sorted(deployed.items())}")
    loop = re.search(r"^for f in ([^;\n]*); do\n\s*kubectl apply -f \"\S*/knative/\$f\.yaml\"",
                     infra.readme, re.M)
    files = {Path(d.path).stem for d in workloads(infra) if d.platform == "knative"}
    if not loop or set(loop.group(1).split()) != files:
        problems.append(f"infra/README.md: the Knative apply loop does not name {sorted(files)}")
    return problems


CHECKS = [check_images, check_env, check_auth_and_files, check_targets, check_probes, check_references,
          check_timeouts, check_cloud_run, check_schedules, check_rgw_script, check_dockerfile, check_compose,
          check_seed_kubernetes, check_readme]


# --- tests --------------------------------------------------------------------------------


def test_every_yaml_parses_into_known_documents(infra: Infra) -> None:
    assert {d.platform for d in infra.docs} == set(PLATFORMS)
    assert all(d.kind[0] and d.kind[1] and d.name for d in infra.docs)
    assert infra.main.routes and infra.main.kinds  # the ast reading found the targets
    assert len(ours(infra)) >= 10


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_infra_holds_together(infra: Infra, check: Any) -> None:
    assert check(infra) == []


def test_every_target_has_a_knative_and_a_cloud_run_service(infra: Infra) -> None:
    for platform in ("knative", "cloudrun"):
        deployed = {target_of(infra, d, c) for d, c in ours(infra) if d.platform == platform}
        assert deployed == set(infra.main.kinds) | set(PLANNED_TARGETS), platform


def test_functions_framework_reads_what_the_image_relies_on() -> None:
    from functions_framework import _cli

    envvars = {p.name: p.envvar for p in _cli._cli.params}
    assert envvars["target"] == "FUNCTION_TARGET" and envvars["port"] == "PORT"
    assert {v for v in envvars.values() if v} <= ALLOWED_ENV | {"DEBUG", "FUNCTION_USE_ASGI"}


def test_the_example_key_file_loads_and_opens_nothing(infra: Infra, tmp_path: Path) -> None:
    keys = next(d for d in infra.docs if d.name == "delta-upload-api-keys").body["stringData"]
    for name, text in keys.items():
        (tmp_path / name).write_text(text)
        authenticator = Authenticator(_GivenOnly(auth_mode="api_key", api_keys_file=str(tmp_path / name)))
        digests = {d for tenant in json.loads(text)["tenants"].values() for d in tenant}
        guessable = ("", "change-me", "changeme", "secret", "password", "test", "testing", "alice")
        assert digests.isdisjoint(hash_key(k) for k in guessable)
        assert authenticator.mode == "api_key"


# --- the checks notice breakage -------------------------------------------------------------


def _doc(infra: Infra, path: str, kind: str = "") -> Doc:
    return next(d for d in infra.docs if d.path == path and (not kind or d.body["kind"] == kind))


def _container(infra: Infra, path: str) -> dict[str, Any]:
    return containers(_doc(infra, path, "Deployment" if "kubernetes" in path else "Service"))[0]


def test_a_misspelt_setting_is_caught(infra: Infra) -> None:
    data = _doc(infra, "infra/kubernetes/configmap.yaml").body["data"]
    data["QDRANT_ULR"] = data.pop("QDRANT_URL")
    assert any("QDRANT_ULR" in p for p in check_env(infra))


def test_a_bad_setting_value_is_caught(infra: Infra) -> None:
    _doc(infra, "infra/kubernetes/configmap.yaml").body["data"]["AUTH_MODE"] = "api-key"
    assert any("Settings refuses" in p for p in check_env(infra))


def test_an_unmounted_key_file_is_caught(infra: Infra) -> None:
    _container(infra, "infra/knative/status.yaml")["volumeMounts"][0]["mountPath"] = "/etc/elsewhere"
    assert any("API_KEYS_FILE" in p for p in check_auth_and_files(infra))


def test_an_unknown_target_is_caught(infra: Infra) -> None:
    _container(infra, "infra/knative/upload.yaml")["env"][0]["value"] = "uplaod"
    assert any("uplaod" in p for p in check_targets(infra))


def test_a_signature_type_that_disagrees_is_caught(infra: Infra) -> None:
    infra.main.kinds["on_bundle_uploaded"] = "http"
    assert any("on_bundle_uploaded is a http function" in p for p in check_targets(infra))


def test_a_planned_target_is_accepted_until_defined(infra: Infra, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "import functions_framework\n\n@functions_framework.http\ndef health(request): ...\n"
    infra.main = parse_main(source)  # a main.py without on_bundle_uploaded
    assert any("on_bundle_uploaded is not defined" in p for p in check_targets(infra))
    monkeypatch.setitem(PLANNED_TARGETS, "on_bundle_uploaded", "cloudevent")
    assert not any("on_bundle_uploaded" in p for p in check_targets(infra))


def test_a_missing_config_map_is_caught(infra: Infra) -> None:
    _container(infra, "infra/knative/status.yaml")["envFrom"][0]["configMapRef"]["name"] = "nope"
    assert any("ConfigMap nope" in p for p in check_references(infra))


def test_a_missing_pvc_is_caught(infra: Infra) -> None:
    _doc(infra, "infra/kubernetes/upload-service.yaml", "Deployment").pod["volumes"][0][
        "persistentVolumeClaim"]["claimName"] = "nope"
    assert any("PVC nope" in p for p in check_references(infra))


def test_a_probe_on_a_path_that_is_not_health_is_caught(infra: Infra) -> None:
    probe = _container(infra, "infra/kubernetes/upload-service.yaml")["readinessProbe"]
    probe["httpGet"]["path"] = "/api/v1/delta/status"
    assert any("not a health path" in p for p in check_probes(infra))


def test_an_http_probe_on_an_event_target_is_caught(infra: Infra) -> None:
    _container(infra, "infra/knative/on-bundle-uploaded.yaml")["livenessProbe"] = {
        "httpGet": {"path": "/health", "port": 8080}, **LIVENESS}
    assert any("on_bundle_uploaded answers every path" in p for p in check_probes(infra))


def test_single_function_targets_answer_probes_only_through_with_probes(infra: Infra) -> None:
    assert {"upload", "status", "bundle_events"} <= infra.main.http_probe_targets()
    assert "on_bundle_uploaded" not in infra.main.http_probe_targets()
    wrapped, source = "http(_with_probes(_upload))", (ROOT / "functions" / "main.py").read_text()
    assert wrapped in source
    infra.main = parse_main(source.replace(wrapped, "http(_upload)"))  # upload without _with_probes
    assert "upload" not in infra.main.http_probe_targets()
    problems = check_probes(infra)
    assert any(p.startswith("infra/knative/upload.yaml:") and "use tcpSocket" in p for p in problems)


def test_a_probe_on_a_path_the_wrapper_does_not_answer_is_caught(infra: Infra) -> None:
    probe = _container(infra, "infra/knative/status.yaml")["livenessProbe"]
    probe["httpGet"]["path"] = "/api/v1/delta/status"
    assert any("status.yaml" in p and "not a health path" in p for p in check_probes(infra))
    source = (ROOT / "functions" / "main.py").read_text()
    infra.main = parse_main(source.replace('("/health", "/ready")', '("/health",)'))
    assert any("upload.yaml" in p and "GET /ready is not a health path" in p for p in check_probes(infra))


def test_wrong_probe_timings_are_caught(infra: Infra) -> None:
    _container(infra, "infra/knative/health.yaml")["readinessProbe"]["periodSeconds"] = 10
    assert any("readinessProbe.periodSeconds" in p for p in check_probes(infra))


def test_a_timeout_that_drifts_from_upload_timeout_is_caught(infra: Infra) -> None:
    _doc(infra, "infra/knative/upload.yaml").pod["timeoutSeconds"] = 60
    assert any("timeoutSeconds 60" in p for p in check_timeouts(infra))


def test_a_second_image_is_caught(infra: Infra) -> None:
    _container(infra, "infra/cloudrun/status.yaml")["image"] = "example.com/other:1"
    assert any("example.com/other:1" in p for p in check_images(infra))


def test_a_wrong_node_port_is_caught(infra: Infra) -> None:
    service = _doc(infra, "infra/kubernetes/upload-service.yaml", "Service")
    service.body["spec"]["ports"][0]["nodePort"] = 30805
    assert check_seed_kubernetes(infra)


def test_a_cloud_run_memory_budget_overrun_is_caught(infra: Infra) -> None:
    env = _container(infra, "infra/cloudrun/upload.yaml")["env"]
    next(e for e in env if e["name"] == "MAX_UNCOMPRESSED_MB")["value"] = "1024"
    problems = check_cloud_run(infra)
    assert any("needs 5520 MiB" in p for p in problems)
    assert any("settings differ" in p for p in problems)


def test_a_root_image_is_caught(infra: Infra) -> None:
    infra.dockerfile = infra.dockerfile.replace("USER 10001:10001", "USER root")
    assert any("non-root" in p for p in check_dockerfile(infra))


def test_a_copy_the_ignore_file_drops_is_caught(infra: Infra) -> None:
    infra.dockerignore = infra.dockerignore.replace("!infra/healthcheck.py\n", "")
    assert any("excluded" in p for p in check_dockerfile(infra))


def test_a_broken_compose_wiring_is_caught(infra: Infra) -> None:
    infra.compose["services"]["upload-service"]["environment"]["QDRANT_URL"] = "http://qdrnat:6333"
    infra.compose["services"]["upload-service"]["build"]["dockerfile"] = "Dockerfile"
    assert len(check_compose(infra)) == 2


def test_an_event_poller_posting_elsewhere_is_caught(infra: Infra) -> None:
    infra.compose["services"]["s3-events"]["entrypoint"][-1] = "http://upload-service:8002/api/v1/delta/upload"
    assert any("bundle_events route" in p for p in check_compose(infra))


def test_a_sink_that_is_not_on_bundle_uploaded_is_caught(infra: Infra) -> None:
    source = next(d for d in infra.docs if d.body["kind"] == "CephSource")
    source.body["spec"]["sink"]["ref"]["name"] = "delta-upload"
    assert any("does not run on_bundle_uploaded" in p for p in check_ceph_source(infra))


def test_a_planned_http_target_is_probed_as_if_wrapped_with_probes(infra: Infra) -> None:
    assert probe_paths(infra, "mcp") == {"/health", "/ready"}
    _container(infra, "infra/knative/mcp.yaml")["livenessProbe"]["httpGet"]["path"] = "/mcp"
    assert any("mcp.yaml" in p and "GET /mcp is not a health path" in p for p in check_probes(infra))


def test_a_file_service_over_its_tmp_budget_is_caught(infra: Infra) -> None:
    _doc(infra, "infra/cloudrun/file.yaml").pod["containerConcurrency"] = 8
    assert any("file" in p and "needs 5120 MiB" in p for p in check_cloud_run(infra))


def test_a_target_no_manifest_deploys_is_caught(infra: Infra) -> None:
    infra.docs = [d for d in infra.docs if d.path != "infra/knative/deletion.yaml"]
    assert any("knative/: no service deploys the target deletion" in p for p in check_targets(infra))


def test_a_public_service_the_invoker_binding_misses_is_caught(infra: Infra) -> None:
    infra.scripts["cloudrun/deploy.sh"] = infra.scripts["cloudrun/deploy.sh"].replace(" delta-mcp)", ")")
    assert any("HTTP_SERVICES" in p for p in check_cloud_run(infra))


def test_a_target_the_infra_readme_leaves_out_is_caught(infra: Infra) -> None:
    infra.readme = infra.readme.replace("| `search` |", "| search |").replace(" search file mcp;", ";")
    problems = check_readme(infra)
    assert any("target table" in p for p in problems) and any("apply loop" in p for p in problems)


def test_a_ping_source_aimed_elsewhere_is_caught(infra: Infra) -> None:
    source = next(d for d in infra.docs if d.body["kind"] == "PingSource")
    source.body["spec"]["sink"]["ref"]["name"] = "delta-health"
    assert any("is not a Knative Service running gc_sweep" in p for p in check_schedules(infra))
