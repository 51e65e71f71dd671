"""The dependency graph is one-way: every import goes down the layers ARCHITECTURE.md lists, or stays inside its
own package; no module imports the package root, no library module imports the command line, and no two modules
import each other, directly or round a longer circle.

The imports are read from the source: every `import` statement, also inside functions and `if TYPE_CHECKING:`
blocks (a type-only import of a module that imports you is a circle a reader still has to follow).
"""

import ast
from pathlib import Path

import pytest


SRC = Path(__file__).resolve().parents[1] / "src"
LIBRARY = "transformers_clipflant5"
CLI = "clip_flant5_cli"

# Bottom to top. A module belongs to the first layer that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("choices", ("clip_flant5_choices",)),
    (
        "leaf utilities",
        tuple(
            f"{LIBRARY}.{name}"
            for name in (
                "version",
                "log_filters",
                "hub_kwargs",
                "json_rows",
                "padding",
                "output_lock",
                "safe_writes",
                "file_permissions",
                "cpu_threads",
            )
        ),
    ),
    (
        "model files",
        tuple(
            f"{LIBRARY}.{name}"
            for name in (
                "configuration_clip_flant5",
                "image_processing_clip_flant5",
                "processing_clip_flant5",
                "input_checks_clip_flant5",
                "modeling_clip_flant5",
            )
        ),
    ),
    ("original format", (f"{LIBRARY}.original",)),
    ("projector", (f"{LIBRARY}.projector",)),
    ("hub", (f"{LIBRARY}.hub",)),
    ("scoring and training", (f"{LIBRARY}.scoring", f"{LIBRARY}.training", f"{LIBRARY}.evaluation")),
    ("applications and fixtures", (f"{LIBRARY}.serving", f"{LIBRARY}.demo", f"{LIBRARY}.testing")),
    ("package root", (LIBRARY,)),
    ("command line", (CLI,)),
]
# Layers of single modules, which may import each other (the circle test still applies); in the other layers each
# package keeps to itself (scoring and training do not import each other).
PEER_LAYERS = {"leaf utilities", "model files"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The modules of this tree that `path` imports (`from package import module` names the module)."""
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined in the module itself (not only its submodules)
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {module for module in found if module in modules}


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the package that places it) of a module of this tree."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)")
    return best


def import_graph() -> dict[str, set[str]]:
    paths = sorted(SRC.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) - {module_name(path)} for path in paths}


GRAPH = import_graph()


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers(module):
    layer, home = layer_of(module)
    for target in sorted(GRAPH[module]):
        target_layer, target_home = layer_of(target)
        if target_layer == layer:
            assert target_home == home or LAYERS[layer][0] in PEER_LAYERS, (
                f"{module} imports {target}: both are in layer {LAYERS[layer][0]!r}, in different packages"
            )
        else:
            assert target_layer < layer or module == f"{LIBRARY}.__main__", (
                f"{module} ({LAYERS[layer][0]}) imports {target} ({LAYERS[target_layer][0]}), a layer above it"
            )


def test_no_module_imports_the_package_root():
    importers = sorted(module for module, targets in GRAPH.items() if LIBRARY in targets)
    assert importers == [], f"these modules import the package root {LIBRARY}: import from its modules instead"


def test_the_library_never_imports_the_command_line():
    offenders = [
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith(LIBRARY) and module != f"{LIBRARY}.__main__"
        for target in targets
        if target == CLI or target.startswith(CLI + ".")
    ]
    assert offenders == []


def test_no_circular_imports():
    # Tarjan's strongly connected components; any component of two or more modules is a circle.
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(module: str) -> None:
        index_of[module] = low[module] = len(index_of)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index_of:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index_of[target])
        if low[module] == index_of[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index_of:
            connect(module)
    assert circles == [], f"modules that import each other: {circles}"


def test_the_command_line_front_end_imports_only_the_standard_library_and_choices():
    # What `--help` imports: the package's __init__ and each command's options module (not its `command`).
    front = [CLI] + [module for module in GRAPH if module.startswith(CLI + ".") and module.count(".") == 1]
    for module in front:
        heavy = [target for target in GRAPH[module] if not target.startswith(("clip_flant5_choices", CLI))]
        assert heavy == [], f"{module} imports {heavy}: `clip-flant5 --help` would import torch"
