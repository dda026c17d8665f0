"""The house's layout, read from the code: wings import only the wings below them, the engine never
imports discord, bot/ never imports cogs/."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Floor by floor, lowest first; a wing may import only wings on a lower floor (and itself).
FLOORS = [
    {"floor"},
    {"textgen", "store"},
    {"jobs", "translation"},
    {"memory", "pictures"},
    {"game"},
    {"table"},
]
FLOOR_OF = {wing: level for level, wings in enumerate(FLOORS) for wing in wings}


def wing_of_module(name: str) -> str | None:
    """engine.memory.bank -> memory; engine.records -> floor; anything outside engine -> None."""
    parts = name.split(".")
    if parts[0] != "engine":
        return None
    if len(parts) == 1:
        return "floor"
    return parts[1] if parts[1] in FLOOR_OF else "floor"


def wing_of_file(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root / "engine").parts
    return parts[0] if len(parts) > 1 else "floor"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def layout_faults(root: Path = ROOT) -> list[str]:
    faults = []
    for path in sorted((root / "engine").rglob("*.py")):
        own = wing_of_file(path, root)
        if own not in FLOOR_OF:
            faults.append(f"{path.relative_to(root)}: engine/{own}/ is on no floor of this test")
            continue
        for line, module in imported_modules(path):
            where = f"{path.relative_to(root)}:{line}"
            if module.split(".")[0] == "discord":
                faults.append(f"{where} imports discord")
            if module.split(".")[0] in ("bot", "cogs"):
                faults.append(f"{where} imports {module}")
            other = wing_of_module(module)
            if other is not None and other != own and FLOOR_OF[other] >= FLOOR_OF[own]:
                faults.append(f"{where}: {own} imports {module} ({other} is not below it)")
    for path in sorted((root / "bot").rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] == "cogs":
                faults.append(f"{path.relative_to(root)}:{line} imports {module}: cogs load as extensions")
    return faults


def test_wings_import_only_wings_below_them():
    assert layout_faults() == []


def test_every_wing_says_its_job(tmp_path):
    for init in (ROOT / "engine").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()[0]) > 20, f"{init.relative_to(ROOT)} has no one-line docstring"


def test_the_check_finds_an_import_running_back_up(tmp_path):
    """The checker itself: a store module importing the table, and an engine module importing discord."""
    (tmp_path / "engine" / "store").mkdir(parents=True)
    (tmp_path / "engine" / "table").mkdir()
    (tmp_path / "bot").mkdir()
    (tmp_path / "engine" / "store" / "rows.py").write_text("from engine.table.narrator import Narrator\n")
    (tmp_path / "engine" / "table" / "narrator.py").write_text("import discord\nfrom engine.store import Store\n")
    (tmp_path / "bot" / "app.py").write_text("from cogs.dm import DungeonMaster\n")
    faults = layout_faults(tmp_path)
    assert any("store imports engine.table.narrator" in f for f in faults)
    assert any("narrator.py:1 imports discord" in f for f in faults)
    assert any("bot/app.py:1 imports cogs.dm" in f for f in faults)
    assert not any("engine.store" in f and "table/narrator" in f for f in faults)  # downward is fine


def test_large_classes_say_what_they_are():
    """A class over 50 lines opens with a docstring (a reader should not need to read it to know it)."""
    missing = []
    for folder in ("engine", "bot", "cogs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 50 \
                        and not ast.get_docstring(node):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert missing == []
