"""Static checks of docker-compose.yml and the Dockerfile (Docker does not run here).

Each check is a function returning a list of problems; the real files must
have none, and a deliberately broken compose dict shows that every check can
fail.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
STAGES = ("crawler", "classifier", "responder", "indexer", "web")
INFRA_WITH_HEALTHCHECK = ("kafka", "elasticsearch", "postgres", "web")

_VAR_RE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<mod>:?[-?+][^}]*)?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def settings_env_vars(root: Path = ROOT) -> set[str]:
    """YUQING_* names that yuqing/settings.py reads (quoted string literals in the source)."""
    src = (root / "yuqing" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r"""["'](YUQING_[A-Z0-9_]+)["']""", src))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose.get("services") or {}


def _environment(svc: dict[str, Any]) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out: dict[str, str | None] = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else None
        return out
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return [str(c) for c in cmd] if isinstance(cmd, list) else str(cmd).split()


def _depends(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


# -- the checks ----------------------------------------------------------------


def check_images(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        if "build" in svc:
            continue
        image = svc.get("image")
        if not image:
            problems.append(f"{name}: neither image nor build")
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if not tag:
            problems.append(f"{name}: image {image} has no tag")
        elif tag == "latest":
            problems.append(f"{name}: image {image} uses latest")
    return problems


def check_volumes(compose: dict[str, Any], root: Path = ROOT) -> list[str]:
    declared = set((compose.get("volumes") or {}).keys())
    problems = []
    for name, svc in services(compose).items():
        for v in svc.get("volumes") or []:
            if isinstance(v, dict):
                kind, source = v.get("type", "volume"), v.get("source")
            else:
                source = str(v).split(":", 1)[0]
                kind = "bind" if source.startswith(("/", ".", "~", "$")) else "volume"
            if not source:
                continue
            if kind == "volume" and source not in declared:
                problems.append(f"{name}: volume {source} is not declared under volumes:")
            if kind == "bind" and source.startswith(".") and not (root / source).exists():
                problems.append(f"{name}: bind mount source {source} does not exist in the repo")
    return problems


def check_depends_on(compose: dict[str, Any]) -> list[str]:
    svcs = services(compose)
    problems = []
    for name, svc in svcs.items():
        for dep, condition in _depends(svc).items():
            if dep not in svcs:
                problems.append(f"{name}: depends_on {dep}, which is not a service")
                continue
            hc = svcs[dep].get("healthcheck")
            if condition == "service_healthy" and (not hc or hc.get("disable")):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
    return problems


def check_healthchecks(
    compose: dict[str, Any], required: tuple[str, ...] = INFRA_WITH_HEALTHCHECK
) -> list[str]:
    svcs = services(compose)
    problems = []
    for name in required:
        svc = svcs.get(name)
        if svc is None:
            problems.append(f"{name}: missing service")
        elif not (svc.get("healthcheck") or {}).get("test"):
            problems.append(f"{name}: no healthcheck test")
    return problems


def check_yuqing_env(compose: dict[str, Any], known: set[str]) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        for key in _environment(svc):
            if key.startswith("YUQING_") and key not in known:
                problems.append(f"{name}: {key} is not read by yuqing/settings.py")
    return problems


def check_interpolation(raw: str) -> list[str]:
    """Every ${VAR} has a default (or a :? message) or is named in a comment of the file."""
    comments = "\n".join(line for line in raw.splitlines() if line.lstrip().startswith("#"))
    problems = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for m in _VAR_RE.finditer(line.replace("$$", "")):
            var = m.group("braced") or m.group("bare")
            mod = m.group("mod") or ""
            if mod.startswith((":-", "-", ":?", "?")):
                continue
            if not re.search(rf"\b{re.escape(var)}\b", comments):
                problems.append(f"line {lineno}: ${{{var}}} has no default and is not documented")
    return problems


def check_stage_commands(compose: dict[str, Any], require_all: bool = True) -> list[str]:
    problems = []
    seen: list[str] = []
    for name, svc in services(compose).items():
        cmd = _command(svc)
        text = " ".join(cmd)
        for m in re.finditer(r"\byuqing\s+stage\s+(\S+)", text):
            stage = m.group(1)
            seen.append(stage)
            if stage not in STAGES:
                problems.append(f"{name}: `yuqing stage {stage}` is not one of {', '.join(STAGES)}")
        if "build" in svc and not re.search(r"\byuqing\s+stage\s+\S+", text):
            problems.append(f"{name}: a yuqing service must run `yuqing stage NAME`, not {text!r}")
    if require_all:
        for stage in STAGES:
            if stage not in seen:
                problems.append(f"no service runs `yuqing stage {stage}`")
    return problems


def check_builds(compose: dict[str, Any], root: Path = ROOT) -> list[str]:
    problems = []
    for name, svc in services(compose).items():
        build = svc.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = root / build.get("context", ".")
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            problems.append(f"{name}: {dockerfile.relative_to(root)} does not exist")
    return problems


def check_dockerfile(path: Path, root: Path = ROOT) -> list[str]:
    """FROM is pinned and every COPY source exists in the build context."""
    if not path.is_file():
        return [f"{path.name} does not exist"]
    problems = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0].upper() == "FROM":
            image = parts[1]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"line {lineno}: FROM {image} is not pinned")
        elif parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            for src in [p for p in parts[1:-1] if not p.startswith("--")]:
                if not (root / src).exists():
                    problems.append(f"line {lineno}: COPY source {src} does not exist")
    return problems


def compose_problems(compose: dict[str, Any], raw: str, root: Path = ROOT) -> list[str]:
    return (
        check_images(compose)
        + check_volumes(compose, root)
        + check_depends_on(compose)
        + check_healthchecks(compose)
        + check_yuqing_env(compose, settings_env_vars(root))
        + check_interpolation(raw)
        + check_stage_commands(compose)
        + check_builds(compose, root)
    )


# -- the real files ------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    return yaml.safe_load(raw)


def test_compose_file_has_no_problems(compose: dict[str, Any], raw: str) -> None:
    assert compose_problems(compose, raw) == []


def test_dockerfile_has_no_problems() -> None:
    assert check_dockerfile(ROOT / "Dockerfile") == []
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "torch==2.13.0" in text and "download.pytorch.org/whl/cpu" in text
    assert re.search(r"^RUN pip install \.", text, re.M)


def test_compose_runs_the_whole_system(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    assert {"kafka", "elasticsearch", "postgres", *STAGES} <= set(svcs)
    assert svcs["kafka"]["image"].startswith("apache/kafka:3.")
    assert "KAFKA_PROCESS_ROLES" in _environment(svcs["kafka"]), "KRaft mode"
    assert svcs["elasticsearch"]["image"].rsplit(":", 1)[1].startswith("8.")
    assert svcs["postgres"]["image"].rsplit(":", 1)[1].startswith("16.")
    for stage in STAGES:
        env = _environment(svcs[stage])
        assert env["YUQING_TRANSPORT"] == "kafka"
        assert env["YUQING_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert (env["YUQING_STORE_URL"] or "").startswith("postgresql+psycopg://")
        assert env["YUQING_ES_URL"] == "http://elasticsearch:9200"
        assert any(str(v).startswith("./config:") for v in svcs[stage]["volumes"])
        if stage != "indexer":  # the indexer follows the store, not the stream
            assert _depends(svcs[stage]).get("kafka") == "service_healthy"
    for stage in ("responder", "indexer", "web"):
        assert _depends(svcs[stage]).get("postgres") == "service_healthy"
    for stage in ("indexer", "web"):
        assert _depends(svcs[stage]).get("elasticsearch") == "service_healthy"


def test_settings_reads_the_variables_compose_sets() -> None:
    known = settings_env_vars()
    assert {"YUQING_TRANSPORT", "YUQING_KAFKA_BOOTSTRAP", "YUQING_STORE_URL", "YUQING_ES_URL"} <= known
    assert "YUQING_CONFIG_DIR" in known and "YUQING_DATA_DIR" in known


# -- every check can fail ----------------------------------------------------------


def good() -> dict[str, Any]:
    """A small compose dict every check accepts."""
    app = {
        "build": {"context": "."},
        "environment": {"YUQING_TRANSPORT": "kafka"},
        "volumes": ["./config:/etc/yuqing:ro", "data:/var/lib/yuqing"],
        "depends_on": {"kafka": {"condition": "service_healthy"}},
    }
    hc = {"healthcheck": {"test": ["CMD", "true"]}}
    return {
        "services": {
            "kafka": {"image": "apache/kafka:3.9.1", **hc},
            "elasticsearch": {"image": "docker.elastic.co/elasticsearch/elasticsearch:8.19.10", **hc},
            "postgres": {"image": "postgres:16.9", **hc},
            **{
                s: {**copy.deepcopy(app), "command": ["yuqing", "stage", s], **(hc if s == "web" else {})}
                for s in STAGES
            },
        },
        "volumes": {"data": None},
    }


def test_the_good_example_passes() -> None:
    assert compose_problems(good(), "services: {}\n") == []


def test_unpinned_images_fail() -> None:
    c = good()
    c["services"]["kafka"]["image"] = "apache/kafka"
    c["services"]["postgres"]["image"] = "postgres:latest"
    c["services"]["elasticsearch"]["image"] = "registry.local:5000/es"
    problems = check_images(c)
    assert problems == [
        "kafka: image apache/kafka has no tag",
        "elasticsearch: image registry.local:5000/es has no tag",
        "postgres: image postgres:latest uses latest",
    ]
    c["services"]["kafka"]["image"] = "apache/kafka@sha256:" + "0" * 64
    del c["services"]["postgres"]["image"]
    assert check_images(c)[-1] == "postgres: neither image nor build"
    assert not any(p.startswith("kafka") for p in check_images(c))


def test_undeclared_volume_and_missing_bind_source_fail() -> None:
    c = good()
    c["services"]["crawler"]["volumes"].append("cache:/cache")
    c["services"]["web"]["volumes"].append({"type": "volume", "source": "uploads", "target": "/u"})
    c["services"]["classifier"]["volumes"].append("./no-such-dir:/x")
    assert check_volumes(c) == [
        "crawler: volume cache is not declared under volumes:",
        "classifier: bind mount source ./no-such-dir does not exist in the repo",
        "web: volume uploads is not declared under volumes:",
    ]


def test_bad_depends_on_fails() -> None:
    c = good()
    c["services"]["crawler"]["depends_on"] = {"zookeeper": {"condition": "service_started"}}
    del c["services"]["kafka"]["healthcheck"]
    assert check_depends_on(c) == [
        "crawler: depends_on zookeeper, which is not a service",
        "classifier: waits for kafka to be healthy, but kafka has no healthcheck",
        "responder: waits for kafka to be healthy, but kafka has no healthcheck",
        "indexer: waits for kafka to be healthy, but kafka has no healthcheck",
        "web: waits for kafka to be healthy, but kafka has no healthcheck",
    ]
    assert check_healthchecks(c) == ["kafka: no healthcheck test"]


def test_unknown_yuqing_variable_fails() -> None:
    c = good()
    c["services"]["web"]["environment"]["YUQING_WEB_HOST"] = "0.0.0.0"
    c["services"]["crawler"]["environment"] = ["YUQING_TRANSPORT=kafka", "YUQING_KAFKA_BROKERS=kafka:9092"]
    known = {"YUQING_TRANSPORT"}
    assert check_yuqing_env(c, known) == [
        "crawler: YUQING_KAFKA_BROKERS is not read by yuqing/settings.py",
        "web: YUQING_WEB_HOST is not read by yuqing/settings.py",
    ]


def test_undocumented_variable_without_default_fails() -> None:
    raw = (
        "# SECRET_TOKEN: the API token\n"
        "services:\n"
        "  a:\n"
        "    environment:\n"
        "      A: ${WITH_DEFAULT:-x}\n"
        "      B: ${REQUIRED:?set REQUIRED}\n"
        "      C: ${SECRET_TOKEN}\n"
        "      D: ${MYSTERY}\n"
        "      E: $BARE and $$ESCAPED\n"
    )
    assert check_interpolation(raw) == [
        "line 8: ${MYSTERY} has no default and is not documented",
        "line 9: ${BARE} has no default and is not documented",
    ]


def test_bad_stage_commands_fail() -> None:
    c = good()
    c["services"]["crawler"]["command"] = "yuqing stage spider"
    c["services"]["web"]["command"] = ["uvicorn", "responder.web:app"]
    assert check_stage_commands(c) == [
        "crawler: `yuqing stage spider` is not one of crawler, classifier, responder, indexer, web",
        "web: a yuqing service must run `yuqing stage NAME`, not 'uvicorn responder.web:app'",
        "no service runs `yuqing stage crawler`",
        "no service runs `yuqing stage web`",
    ]


def test_missing_dockerfile_fails(tmp_path: Path) -> None:
    c = good()
    c["services"]["web"]["build"] = {"context": ".", "dockerfile": "Dockerfile.web"}
    assert check_builds(c) == ["web: Dockerfile.web does not exist"]
    assert check_dockerfile(tmp_path / "Dockerfile") == ["Dockerfile does not exist"]
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nFROM node:latest\nCOPY pyproject.toml nowhere/ ./\nCOPY --from=0 /x /y\n")
    assert check_dockerfile(bad) == [
        "line 1: FROM python is not pinned",
        "line 2: FROM node:latest is not pinned",
        "line 3: COPY source nowhere/ does not exist",
    ]


# -- the OpenSearch variant (docker-compose.opensearch.yml) ----------------------

OPENSEARCH_OVERRIDE = ROOT / "docker-compose.opensearch.yml"


class _Reset:
    """``!reset``: the key is removed from the merged file."""


class _Override:
    """``!override``: the value replaces the base's instead of merging with it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> _Override:
    if isinstance(node, yaml.MappingNode):
        return _Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Override(loader.construct_sequence(node, deep=True))
    return _Override(loader.construct_scalar(node))  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor("!override", _construct_override)


def merge_compose(base: Any, override: Any) -> Any:
    """Docker Compose's merge of ``-f base -f override``: mappings merge key by
    key, ``!reset`` removes, ``!override`` replaces, anything else replaces."""
    if isinstance(override, _Override):
        return copy.deepcopy(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            if isinstance(value, _Reset):
                out.pop(key, None)
            elif key in out:
                out[key] = merge_compose(out[key], value)
            else:
                out[key] = merge_compose({}, value) if isinstance(value, dict) else copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def active_services(compose: dict[str, Any]) -> dict[str, Any]:
    """The file as ``docker compose up`` runs it: services in a profile are left out."""
    return {**compose, "services": {k: v for k, v in services(compose).items() if not v.get("profiles")}}


def test_merge_follows_compose_rules() -> None:
    base = {"services": {"a": {"environment": {"X": "1", "Y": "2"}, "depends_on": {"b": {}, "c": {}}}}}
    over = yaml.load(
        "services:\n  a:\n    environment:\n      X: !reset null\n      Z: '3'\n"
        "    depends_on: !override\n      d: {}\n",
        Loader=_ComposeLoader,
    )
    merged = merge_compose(base, over)
    assert merged["services"]["a"] == {"environment": {"Y": "2", "Z": "3"}, "depends_on": {"d": {}}}
    # Without !override the dependencies would merge, keeping b and c.
    plain = merge_compose(base, {"services": {"a": {"depends_on": {"d": {}}}}})
    assert set(plain["services"]["a"]["depends_on"]) == {"b", "c", "d"}


@pytest.fixture(scope="module")
def opensearch_compose(compose: dict[str, Any]) -> dict[str, Any]:
    over = yaml.load(OPENSEARCH_OVERRIDE.read_text(encoding="utf-8"), Loader=_ComposeLoader)
    return active_services(merge_compose(compose, over))


def test_opensearch_variant_has_no_problems(opensearch_compose: dict[str, Any]) -> None:
    raw = OPENSEARCH_OVERRIDE.read_text(encoding="utf-8")
    required = tuple("opensearch" if s == "elasticsearch" else s for s in INFRA_WITH_HEALTHCHECK)
    problems = (
        check_images(opensearch_compose)
        + check_volumes(opensearch_compose)
        + check_depends_on(opensearch_compose)
        + check_healthchecks(opensearch_compose, required)
        + check_yuqing_env(opensearch_compose, settings_env_vars())
        + check_interpolation(raw)
        + check_stage_commands(opensearch_compose)
    )
    assert problems == []


def test_opensearch_variant_runs_every_stage_on_opensearch(opensearch_compose: dict[str, Any]) -> None:
    svcs = services(opensearch_compose)
    assert "elasticsearch" not in svcs, "the variant does not start Elasticsearch"
    assert svcs["opensearch"]["image"].startswith("opensearchproject/opensearch:3.")
    for stage in STAGES:
        env = _environment(svcs[stage])
        assert "YUQING_ES_URL" not in env  # settings.py refuses both at once
        assert env["YUQING_OPENSEARCH_URL"] == "http://opensearch:9200"
        assert env["YUQING_TRANSPORT"] == "kafka" and env["YUQING_STORE_URL"]
    for stage in ("indexer", "web"):
        assert _depends(svcs[stage]).get("opensearch") == "service_healthy"
        assert _depends(svcs[stage]).get("postgres") == "service_healthy"
    assert _depends(svcs["web"]).get("kafka") == "service_healthy"
    assert "YUQING_OPENSEARCH_URL" in settings_env_vars()
