"""The Kubernetes deployment (deploy/) holds before it reaches a cluster, which CI has not got:
every manifest against the Kubernetes API schemas, the zero-to-jupyterhub values against the
chart's keys (and its own schema, when a copy of the chart is at hand), the hub's service entry
and roles against JupyterHub itself, the proxy's config against its traits, the files against
each other, and the image's dependency set. Nothing here starts a process."""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import os
import re
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

from jupyter_server_ext.config.check import check_admin_names
from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.dashboard.hub_login import make_hub_auth
from jupyter_server_ext.draining import DRAIN_CLOSE_SECONDS, DRAIN_CUT_SECONDS
from jupyter_server_ext.probes import HEALTH_LIVE, HEALTH_PING_SECONDS, HEALTH_READY
from jupyter_server_ext.service import RSQLProxyService
from tests.helpers import REPO, missing, require

K8S = REPO / "deploy" / "kubernetes"
IMAGE = REPO / "deploy" / "image"
NOT_MANIFESTS = {"z2jh-values.yaml", "kustomization.yaml"}
SECRET_TEMPLATE = "secrets.example.yaml"

# The Kubernetes versions the manifests are validated against (kubernetes-validate's bundled
# schemas, strict: unknown fields are errors): the oldest the zero-to-jupyterhub chart 4.4.0
# supports (its Chart.yaml: kubeVersion >=1.28) and the newest kubernetes-validate 1.37 ships.
K8S_VERSIONS = ("1.28", "1.37")

# A copy of the zero-to-jupyterhub chart (`helm pull jupyterhub/jupyterhub --version 4.4.0`,
# the .tgz or its unpacked folder): with it the values are checked against the chart's own
# defaults and schema, as helm does. No package registry ships the chart, so CI checks the keys
# against CHART_KEYS below instead.
CHART_ENV = "RSQL_Z2JH_CHART"


# -- reading the files --------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every Kubernetes object under deploy/kubernetes."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name not in NOT_MANIFESTS:
            out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def the(kind: str) -> dict[str, Any]:
    """The one object of `kind` that kustomization.yaml applies."""
    applied = set(kustomization()["resources"])
    found = [doc for file, doc in manifests() if file in applied and doc["kind"] == kind]
    assert len(found) == 1, (kind, len(found))
    return found[0]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def values() -> dict[str, Any]:
    return yaml.safe_load((K8S / "z2jh-values.yaml").read_text())


def container() -> dict[str, Any]:
    (c,) = the("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def args() -> dict[str, str]:
    a = container()["args"]
    return {a[i]: a[i + 1] for i in range(0, len(a), 2)}


def secrets() -> dict[str, dict[str, str]]:
    """The Secrets the template documents: name -> key -> placeholder."""
    docs = yaml.safe_load_all((K8S / SECRET_TEMPLATE).read_text())
    return {d["metadata"]["name"]: d["stringData"] for d in docs if d}


def pod_environment() -> dict[str, str]:
    """The container's environment as the kubelet would fill it, with the template's
    placeholders for secrets (and one for the hub chart's generated service token)."""
    env, kept = {}, secrets()
    for var in container()["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = "0" * 64 if ref["name"] == "hub" else kept[ref["name"]][ref["key"]]
    for source in container()["envFrom"]:
        env.update(kept[source["secretRef"]["name"]])
    # the service reads the cookie secret as hex, which the template's placeholder is not
    env["RSQL_COOKIE_SECRET"] = "00" * 32
    return env


def validator() -> Any:
    require("kubernetes_validate", reason="pip install kubernetes-validate (the test extra)")
    import kubernetes_validate

    return kubernetes_validate


# -- every manifest against the Kubernetes API --------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_passes_the_kubernetes_api_schemas(version: str) -> None:
    kv = validator()
    found = manifests()
    assert {d["kind"] for _, d in found} >= {
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
    }
    for file, doc in found:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(
                f"{file}: {doc['kind']} {doc['metadata']['name']} is not valid Kubernetes "
                f"{version}: {'.'.join(map(str, exc.path))}: {exc.message}"
            )


def test_the_validator_refuses_a_broken_manifest() -> None:
    # the check can fail: a misspelt field, a wrong type, a misspelt selector in a policy
    kv = validator()
    deployment, policy = the("Deployment"), the("NetworkPolicy")
    broken = []
    d = copy.deepcopy(deployment)
    d["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    broken.append(d)
    d = copy.deepcopy(deployment)
    d["spec"]["replicas"] = "two"
    broken.append(d)
    p = copy.deepcopy(policy)
    p["spec"]["egress"][0]["to"][0]["namespaceSelektor"] = p["spec"]["egress"][0]["to"][0].pop(
        "namespaceSelector"
    )
    broken.append(p)
    for doc in broken:
        with pytest.raises(kv.ValidationError):
            kv.validate(doc, K8S_VERSIONS[0], strict=True)


def test_kustomize_applies_every_manifest_but_the_secret_template() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - NOT_MANIFESTS
    assert set(kustomization()["resources"]) == files - {SECRET_TEMPLATE}
    # made by hand from the guide's commands, never applied with placeholder keys
    assert {d["kind"] for f, d in manifests() if f == SECRET_TEMPLATE} == {"Secret"}


# -- the zero-to-jupyterhub values --------------------------------------------------------------

OPEN = "open"  # documented; what is inside is the admin's own (names of services, roles, ...)
NETWORK_POLICY_KEYS = {
    "enabled": bool,
    "ingress": list,
    "egress": list,
    "interNamespaceAccessLabels": str,
    "allowedIngressPorts": list,
    "egressAllowRules": dict.fromkeys(
        (
            "cloudMetadataServer",
            "dnsPortsCloudMetadataServer",
            "dnsPortsKubeSystemNamespace",
            "dnsPortsPrivateIPs",
            "nonPrivateIPs",
            "privateIPs",
        ),
        bool,
    ),
}
# The chart's keys as its configuration reference documents them (z2jh 4.x), written for
# this check: the sections an rsql deployment sets are spelt out to their leaves, the rest is
# OPEN. A key missing here is refused, so a typo shows in CI, not as a failed `helm upgrade`.
CHART_KEYS: dict[str, Any] = {
    **dict.fromkeys(
        (
            "enabled",
            "fullnameOverride",
            "nameOverride",
            "imagePullSecret",
            "imagePullSecrets",
            "scheduling",
            "ingress",
            "httpRoute",
            "prePuller",
            "custom",
            "cull",
            "debug",
            "rbac",
            "global",
        ),
        OPEN,
    ),
    "hub": {
        **dict.fromkeys(
            (
                "activeServerLimit",
                "allowNamedServers",
                "annotations",
                "args",
                "authenticatePrometheus",
                "baseUrl",
                "command",
                "concurrentSpawnLimit",
                "config",
                "consecutiveFailureLimit",
                "containerSecurityContext",
                "cookieSecret",
                "db",
                "deploymentStrategy",
                "existingSecret",
                "extraConfig",
                "extraContainers",
                "extraFiles",
                "extraPodSpec",
                "extraVolumeMounts",
                "extraVolumes",
                "fsGid",
                "image",
                "initContainers",
                "labels",
                "lifecycle",
                "livenessProbe",
                "namedServerLimitPerUser",
                "nodeSelector",
                "pdb",
                "podSecurityContext",
                "readinessProbe",
                "redirectToServer",
                "resources",
                "revisionHistoryLimit",
                "service",
                "serviceAccount",
                "shutdownOnLogout",
                "templatePaths",
                "templateVars",
                "tolerations",
            ),
            OPEN,
        ),
        "services": OPEN,  # checked against JupyterHub's Service below
        "loadRoles": OPEN,  # checked against JupyterHub's roles and scopes below
        "extraEnv": (dict, list),
        "networkPolicy": NETWORK_POLICY_KEYS,
    },
    "proxy": {
        **dict.fromkeys(
            (
                "secretToken",
                "annotations",
                "deploymentStrategy",
                "service",
                "secretSync",
                "traefik",
                "https",
                "labels",
            ),
            OPEN,
        ),
        "chp": {
            **dict.fromkeys(
                (
                    "revisionHistoryLimit",
                    "containerSecurityContext",
                    "image",
                    "livenessProbe",
                    "readinessProbe",
                    "resources",
                    "defaultTarget",
                    "errorTarget",
                    "extraEnv",
                    "nodeSelector",
                    "tolerations",
                    "extraCommandLineFlags",
                    "extraPodSpec",
                    "pdb",
                ),
                OPEN,
            ),
            "networkPolicy": NETWORK_POLICY_KEYS,
        },
    },
    "singleuser": {
        **dict.fromkeys(
            (
                "allowPrivilegeEscalation",
                "cloudMetadata",
                "cmd",
                "cpu",
                "defaultUrl",
                "events",
                "extraAnnotations",
                "extraContainers",
                "extraFiles",
                "extraLabels",
                "extraNodeAffinity",
                "extraPodAffinity",
                "extraPodAntiAffinity",
                "extraPodConfig",
                "extraResource",
                "extraTolerations",
                "fsGid",
                "image",
                "initContainers",
                "lifecycleHooks",
                "memory",
                "networkTools",
                "nodeSelector",
                "podNameTemplate",
                "profileList",
                "serviceAccountName",
                "startTimeout",
                "storage",
                "uid",
            ),
            OPEN,
        ),
        "extraEnv": (dict, list),
        "networkPolicy": NETWORK_POLICY_KEYS,
    },
}


def unknown_keys(given: Any, known: Any = CHART_KEYS, path: str = "") -> list[str]:
    """Key paths of `given` the chart does not document, and values of the wrong type."""
    if known == OPEN:
        return []
    if isinstance(known, dict):
        if not isinstance(given, dict):
            return [f"{path or '.'}: expected a map, got {type(given).__name__}"]
        out = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else key
            out += (
                unknown_keys(value, known[key], where)
                if key in known
                else [f"{where}: not a key of the chart"]
            )
        return out
    if isinstance(given, known):
        return []
    wanted = " or ".join(t.__name__ for t in (known if isinstance(known, tuple) else (known,)))
    return [f"{path}: expected {wanted}, got {type(given).__name__}"]


def chart_at_hand() -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(default values, values schema) of the chart named by $RSQL_Z2JH_CHART, if set."""
    where = os.environ.get(CHART_ENV)
    if not where:
        return None
    path = Path(where)
    files: dict[str, str] = {}
    if path.is_file():  # helm pull's .tgz: jupyterhub/values.yaml, jupyterhub/values.schema.json
        with tarfile.open(path) as tgz:
            for member in tgz.getmembers():
                if member.name.count("/") == 1 and member.isfile():
                    files[member.name.split("/")[1]] = tgz.extractfile(member).read().decode()
    else:
        files = {p.name: p.read_text() for p in path.iterdir() if p.is_file()}
    schema = files.get("values.schema.json") or files.get("values.schema.yaml")
    if "values.yaml" not in files or schema is None:
        pytest.fail(f"${CHART_ENV}={where} holds no values.yaml and values.schema.json (or .yaml)")
    return yaml.safe_load(files["values.yaml"]), yaml.safe_load(schema)  # JSON is YAML


def coalesce(base: Any, over: Any) -> Any:
    """Helm's merge of user values onto a chart's defaults: maps merge, anything else replaces,
    null removes the key."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = coalesce(out.get(key), value)
    return out


def schema_errors(given: dict[str, Any], chart: tuple[dict[str, Any], dict[str, Any]]) -> list[str]:
    import jsonschema

    defaults, schema = chart
    check = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in check.iter_errors(coalesce(defaults, given))
    ]


def schema_paths(schema: dict[str, Any], known: Any = CHART_KEYS, path: str = "") -> list[str]:
    """Key paths of CHART_KEYS that the chart's schema does not have: this test's own map of
    the chart, checked against the chart whenever a copy is at hand."""
    if not isinstance(known, dict):
        return []
    props = schema.get("properties", {})
    out = []
    for key, sub in known.items():
        where = f"{path}.{key}" if path else key
        out += schema_paths(props[key], sub, where) if key in props else [where]
    return out


def test_the_values_are_what_the_chart_accepts() -> None:
    given = values()
    assert unknown_keys(given) == []
    # the chart copies the egress rules into users' NetworkPolicy, and the variables into their
    # pods, as they are: both must be what Kubernetes takes there
    kv = validator()
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "x"},
        "spec": {"podSelector": {}, "egress": given["singleuser"]["networkPolicy"]["egress"]},
    }
    kv.validate(policy, K8S_VERSIONS[0], strict=True)
    env = [
        {"name": k, "value": v} if isinstance(v, str) else {"name": k, **v}
        for k, v in given["singleuser"]["extraEnv"].items()
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "x", "image": "x", "env": env}]},
    }
    kv.validate(pod, K8S_VERSIONS[0], strict=True)
    chart = chart_at_hand()
    if chart is not None:  # the chart's own word, and this test's map of it kept honest
        assert schema_errors(given, chart) == []
        assert schema_paths(chart[1]) == []


def test_a_misspelt_values_key_is_refused() -> None:
    given = values()
    given["singleuser"]["networkPolicy"]["egres"] = given["singleuser"]["networkPolicy"].pop(
        "egress"
    )
    given["hub"]["loadRole"] = given["hub"].pop("loadRoles")
    given["singleuser"]["networkPolicy"]["enabled"] = "yes"
    assert unknown_keys(given) == [
        "hub.loadRole: not a key of the chart",
        "singleuser.networkPolicy.egres: not a key of the chart",
        "singleuser.networkPolicy.enabled: expected bool, got str",
    ]
    chart = chart_at_hand()
    if chart is not None:
        assert len(schema_errors(given, chart)) >= 2


ROLE_FIELDS = {"name", "description", "scopes", "users", "groups", "services"}


def scope_problems(scopes: list[str]) -> list[str]:
    """Scopes JupyterHub would refuse at start-up: an unknown name, an unknown filter."""
    from jupyterhub.scopes import scope_definitions

    out = []
    for scope in scopes:
        name, _, where = scope.partition("!")
        if name not in scope_definitions:
            out.append(f"{scope}: no such scope")
        elif (
            where
            and where not in ("user", "service", "server")
            and not re.fullmatch(r"(user|service|group|server)=[^!]+", where)
        ):
            out.append(f"{scope}: no such filter")
    return out


def test_the_hub_service_and_roles_are_what_jupyterhub_accepts() -> None:
    require("jupyterhub")
    from jupyterhub.roles import get_default_roles
    from jupyterhub.services.service import Service

    services = values()["hub"]["services"]
    (name,) = services
    entry = services[name]
    # JupyterHub refuses a service field it does not know ("No such service field") and a
    # value of the wrong type; apiToken is the chart's, which it moves into api_token
    fields = {k: v for k, v in entry.items() if k != "apiToken"}
    assert set(fields) <= set(Service.class_traits(input=True)), set(fields) - set(
        Service.class_traits(input=True)
    )
    service = Service(name=name, base_url="/", **fields)
    assert service.prefix == f"/services/{name}/"

    roles = values()["hub"]["loadRoles"]
    default = {r["name"]: set(r["scopes"]) for r in get_default_roles()}
    scope = f"access:services!service={name}"
    for role_name in ("user", "server"):
        role = roles[role_name]
        assert set(role) <= ROLE_FIELDS
        assert scope_problems(role["scopes"]) == []
        # the role replaces JupyterHub's own: keep everything it grants, and add the one scope
        assert set(role["scopes"]) == default[role_name] | {scope}
    # the check can fail
    assert scope_problems(["access:service!service=rsql", "access:services!servce=rsql"]) == [
        "access:service!service=rsql: no such scope",
        "access:services!servce=rsql: no such filter",
    ]


def test_the_pieces_point_at_each_other() -> None:
    given, deployment, service, policy, pdb = (
        values(),
        the("Deployment"),
        the("Service"),
        the("NetworkPolicy"),
        the("PodDisruptionBudget"),
    )
    (name,) = given["hub"]["services"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    port = {p["name"]: p["containerPort"] for p in container()["ports"]}["http"]
    prefix = f"/services/{name}/"
    env = pod_environment()

    # the hub routes /services/<name>/ to the Service, which forwards to the pods' port
    url = urllib.parse.urlparse(given["hub"]["services"][name]["url"])
    (svc_port,) = service["spec"]["ports"]
    assert (url.hostname, url.port, url.path) == (service["metadata"]["name"], svc_port["port"], "")
    assert svc_port["targetPort"] in ("http", port)
    assert (args()["--base-url"], args()["--port"], args()["--ip"]) == (
        prefix,
        str(port),
        "0.0.0.0",
    )
    # kernels call the Service directly, with their server's token
    assert (
        given["singleuser"]["extraEnv"]["RSQL_PROXY_URL"]
        == f"http://{url.hostname}:{url.port}{prefix}"
    )
    (rule,) = given["singleuser"]["networkPolicy"]["egress"]
    assert rule["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    assert [p["port"] for p in rule["ports"]] == [port]
    # every selector selects these pods, and only by labels they carry
    for selector in (
        deployment["spec"]["selector"],
        policy["spec"]["podSelector"],
        pdb["spec"]["selector"],
    ):
        assert selector["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    # the chart's hub policy lets it in
    assert labels.get("hub.jupyter.org/network-access-hub") == "true"
    # the hub's token for this service, kept by the chart in its Secret "hub"
    (token,) = [v for v in container()["env"] if v["name"] == "JUPYTERHUB_API_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": f"hub.services.{name}.apiToken",
    }
    assert (env["JUPYTERHUB_SERVICE_NAME"], env["JUPYTERHUB_SERVICE_PREFIX"]) == (name, prefix)
    # probes and Prometheus at the paths the service serves
    c = container()
    assert (
        c["livenessProbe"]["httpGet"]["path"]
        == c["startupProbe"]["httpGet"]["path"]
        == prefix + HEALTH_LIVE
    )
    assert c["readinessProbe"]["httpGet"]["path"] == prefix + HEALTH_READY
    notes = pod["metadata"]["annotations"]
    assert (notes["prometheus.io/path"], notes["prometheus.io/port"]) == (
        prefix + "metrics",
        str(port),
    )
    # the config file the service is told to read is the one the ConfigMap mounts
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    configmap = the("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert args()["--config"] == f"{mount['mountPath']}/{next(iter(configmap['data']))}"
    # every Secret key the pod reads is in the template the guide makes them from
    kept = secrets()
    for var in c["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] != "hub":
            assert ref["key"] in kept[ref["name"]], ref


def test_the_service_checks_tokens_as_the_hub_expects(monkeypatch: pytest.MonkeyPatch) -> None:
    # what the pod's environment makes of HubAuth: the hub's own Service tells what to expect
    require("jupyterhub")
    from jupyterhub.services.auth import HubOAuth
    from jupyterhub.services.service import Service

    (name,) = values()["hub"]["services"]
    hub_side = Service(name=name, base_url="/")
    for key, value in pod_environment().items():
        monkeypatch.setenv(key, value)
    HubOAuth.clear_instance()
    try:
        auth = make_hub_auth(60)
        assert isinstance(auth, HubOAuth)  # tokens, and the dashboard's browser login
        # only tokens carrying the service's scope get in: without it, any hub token would
        assert auth.access_scopes == {f"access:services!service={name}"}
        assert auth.oauth_client_id == hub_side.oauth_client_id
        assert auth.oauth_redirect_uri == hub_side.prefix + "oauth_callback"
        assert auth.api_url == "http://hub:8081/hub/api" and auth.login_url.startswith("/hub/")
    finally:
        HubOAuth.clear_instance()


# -- the proxy's own configuration --------------------------------------------------------------


def load_config(source: str, tmp_path: Path) -> Any:
    """A config file loaded as `rsql-proxy --config` loads it, in the pod's environment."""
    (tmp_path / "rsql_config.py").write_text(source)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in pod_environment().items():
            mp.setenv(key, value)
        return PyFileConfigLoader("rsql_config.py", path=str(tmp_path)).load_config()


def config_problems(config: Any) -> list[str]:
    """Every c.Section.name a loaded config sets that is no setting of the service's classes."""
    classes = {
        cls.__name__: cls
        for cls in (RSQLProxy, *RSQLProxyService.__mro__)
        if hasattr(cls, "class_trait_names")
    }
    out = []
    for section, settings in config.items():
        cls = classes.get(section)
        out += [
            f"c.{section}.{key}"
            for key in settings
            if cls is None or key not in cls.class_trait_names(config=True)
        ]
    return out


def proxy_config_source() -> str:
    return the("ConfigMap")["data"]["rsql_config.py"]


def test_the_config_names_only_real_settings_and_starts(tmp_path: Path) -> None:
    source = proxy_config_source()
    config = load_config(source, tmp_path)
    assert config_problems(config) == []
    # the check can fail: a misspelt setting, a misspelt class
    typo = load_config(
        source + "c.RSQLProxy.user_limit = []\nc.RSQLProxyServce.workers = 2\n", tmp_path
    )
    assert config_problems(typo) == ["c.RSQLProxy.user_limit", "c.RSQLProxyServce.workers"]

    # and what start-up checks passes: the upstreams parse, each key's variable is in the
    # provider Secret, the default model is served, admin names are not the old service form
    proxy = RSQLProxy(config=config)
    check_admin_names(proxy)
    keys = set(secrets()["rsql-provider-keys"])
    assert {u["api_key_env"] for u in proxy.upstreams} == keys
    proxy.engine_settings(env={k: "sk-placeholder" for k in keys})
    # several replicas share their state: Redis, PostgreSQL, one pseudonym key
    assert proxy.state_url.startswith("redis://") and proxy.database_url.startswith("postgresql://")
    assert proxy.user_id_secret and not proxy.fail_open
    assert config.RSQLProxyService.static_users  # the Prometheus token, when the Secret has one


def test_the_pod_stops_within_its_termination_grace(tmp_path: Path) -> None:
    grace = load_config(proxy_config_source(), tmp_path).RSQLProxy.shutdown_grace_seconds
    spec, c = the("Deployment")["spec"]["template"]["spec"], container()
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    # preStop, then SIGTERM: the grace for answers in flight, then the proxy's own cut-off and
    # connection close, with time left for the usage log's last flush before any SIGKILL
    needed = pre_stop + grace + DRAIN_CUT_SECONDS + DRAIN_CLOSE_SECONDS
    assert spec["terminationGracePeriodSeconds"] >= needed + 5, (
        spec["terminationGracePeriodSeconds"],
        needed,
    )
    # a liveness probe may not restart a draining pod, and readiness waits out a slow Redis ping
    live = c["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= spec["terminationGracePeriodSeconds"]
    assert c["readinessProbe"]["timeoutSeconds"] > HEALTH_PING_SECONDS
    # more than one replica needs the shared state the config sets
    assert (
        the("Deployment")["spec"]["replicas"] > 1
        and the("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    )


def test_the_pod_runs_unprivileged_on_a_read_only_root() -> None:
    spec, c = the("Deployment")["spec"]["template"]["spec"], container()
    pod, own = spec["securityContext"], c["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0
    assert own == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is False
    # the writable places are volumes; the spool is a folder of its own inside one, since the
    # proxy refuses a spool folder others can write and an emptyDir's root is world-writable
    scratch = {
        m["mountPath"]
        for m in c["volumeMounts"]
        if any(v["name"] == m["name"] and "emptyDir" in v for v in spec["volumes"])
    }
    assert "/tmp" in scratch
    spool = re.search(r'usage_spool_dir = "([^"]+)"', proxy_config_source()).group(1)
    assert any(spool.startswith(m + "/") for m in scratch), (spool, scratch)
    # the image's user is the one the pod runs as
    dockerfile = (IMAGE / "Dockerfile").read_text()
    assert f"USER {pod['runAsUser']}:{pod['runAsGroup']}" in dockerfile


# -- the image ----------------------------------------------------------------------------------

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def unpinned(text: str) -> list[str]:
    """Requirements not pinned to one version with at least one sha256 hash, and any option
    that would let pip fetch from elsewhere."""
    out = []
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split(" #", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("-"):
            out.append(f"option: {entry}")
        elif not PIN.match(entry) or not re.search(r"--hash=sha256:[0-9a-f]{64}\b", entry):
            out.append(entry)
    return out


def test_the_image_installs_only_pinned_hash_checked_packages() -> None:
    dockerfile = (IMAGE / "Dockerfile").read_text()
    runs = [
        step.strip()
        for line in re.sub(r"\\\n", " ", dockerfile).splitlines()
        if line.startswith("RUN ")
        for step in line[4:].split("&&")
    ]
    installs = [step for step in runs if re.search(r"\bpip install\b", step)]
    assert len(installs) >= 3, installs
    for lock in ("requirements.txt", "build-requirements.txt"):
        text = (IMAGE / lock).read_text()
        assert unpinned(text) == [], lock
        assert any(PIN.match(line) for line in text.splitlines())
        assert any(f"-r /tmp/{lock}" in step for step in installs), lock
    for cmd in installs:
        # each install either checks every hash of a lock file, or takes only our own wheel
        assert ("--require-hashes" in cmd and "--no-deps" in cmd and "-r /tmp/" in cmd) or (
            "--no-index" in cmd and "--no-deps" in cmd
        ), cmd
    assert any(
        step.startswith("pip wheel --no-deps --no-build-isolation --no-index") for step in runs
    )
    # the lock was resolved for the base image's Python
    python = re.search(
        r"autogenerated by pip-compile with Python (\d+\.\d+)",
        (IMAGE / "requirements.txt").read_text(),
    )
    assert f"ARG PYTHON_IMAGE=python:{python.group(1)}-slim" in dockerfile
    # what the Dockerfile copies is in the build context its .dockerignore lets through
    kept = [
        line[1:].rstrip("/")
        for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for part in src.split():
            assert (REPO / part).exists() and part in kept, part
    # the check can fail
    assert unpinned(
        "tornado==6.5\nredis>=5 \\\n    --hash=sha256:"
        + "a" * 64
        + "\n--extra-index-url https://x\n"
    ) == [
        "tornado==6.5",
        f"redis>=5      --hash=sha256:{'a' * 64}",
        "option: --extra-index-url https://x",
    ]


# modules of the service's package the image never runs: another host, the kernel side's engine,
# and optional features whose extras the image leaves out (the local model, OpenTelemetry)
NOT_IN_IMAGE = {
    # the MCP endpoint, loaded only when mcp_connections is set (mcp.build_mcp): it needs the
    # SDK and the kernel package's SQL guard, which the proxy-only image leaves out
    "jupyter_server_ext/mcp/endpoint.py",
    "jupyter_server_ext/mcp/tool_calls.py",
    "jupyter_server_ext/extension.py",
    "jupyter_server_ext/inprocess.py",
    "jupyter_server_ext/engine/upstreams/transport/local_worker.py",
    "jupyter_server_ext/engine/monitoring/tracing.py",
}


def imported_distributions() -> set[str]:
    """The distributions the service's modules import, following their imports into our own
    packages (rsql_common, the shared leaves, and rsql_sql, the SQL package the MCP tools run;
    docs/architecture.md). The kernel package is not followed: an import of it would show as a
    distribution of its own, which the image does not ship."""
    todo = [
        p
        for p in (REPO / "jupyter_server_ext").rglob("*.py")
        if str(p.relative_to(REPO)) not in NOT_IN_IMAGE
    ]
    seen: set[Path] = set()
    tops: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.relative_to(REPO).with_suffix("").parts[:-1]
        tree = ast.parse(path.read_text())
        # the service's own modules: every import, lazy ones too (redis, asyncpg, jupyterhub are
        # imported where used); rsql_sql's and rsql_common's: what importing them runs, not
        # their functions'
        nodes = ast.walk(tree) if package[0] == "jupyter_server_ext" else tree.body
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                names = [".".join(filter(None, (base, node.module)))]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] not in ("rsql_sql", "rsql_common"):
                    tops.add(parts[0])
                    continue
                # running rsql_sql.a.b runs rsql_sql/__init__.py and a/__init__.py too
                for i in range(1, len(parts) + 1):
                    for candidate in (
                        REPO.joinpath(*parts[:i], "__init__.py"),
                        REPO.joinpath(*parts[:i]).with_suffix(".py"),
                    ):
                        if candidate.is_file():
                            todo.append(candidate)
    tops -= set(sys.stdlib_module_names) | {"jupyter_server_ext", "__future__", ""}
    owners = importlib.metadata.packages_distributions()
    if not tops <= set(owners):
        missing(f"not installed, so their distributions are unknown: {sorted(tops - set(owners))}")
    return {normal(d) for top in tops for d in owners[top]}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_packages_are_what_the_service_imports() -> None:
    wanted = {
        normal(PIN.match(line).group(1))
        if PIN.match(line)
        else normal(re.split(r"[<>=!~\[ ]", line)[0])
        for line in (IMAGE / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # nothing the service imports is left out, and nothing it does not is put in
    assert imported_distributions() == wanted
    locked = {
        normal(PIN.match(line).group(1))
        for line in (IMAGE / "requirements.txt").read_text().splitlines()
        if PIN.match(line)
    }
    assert wanted <= locked
