"""One direction of imports: the lab (nudgeflow.lab) may import the product, never the reverse."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "nudgeflow"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_product_module_imports_the_lab():
    product = [p for p in PACKAGE.rglob("*.py") if "lab" not in p.relative_to(PACKAGE).parts]
    assert len(product) > 10
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(n for n in _imports(p) if n.startswith("nudgeflow.lab")) for p in product
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_lab_plugs_in_through_the_entry_point():
    from nudgeflow.plugins import plugins

    assert [p.name for p in plugins()] == ["lab"]
