"""Print `module.name - first paragraph of its docstring` lines for the Python standard library.

The demo's fallback corpus on machines without man pages.
"""
import importlib
import inspect
import sys

MODULES = sorted(m for m in sys.stdlib_module_names if not m.startswith("_") and m not in {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle"})


def first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


for name in MODULES:
    try:
        module = importlib.import_module(name)
    except Exception:  # platform-specific modules
        continue
    for attr, obj in [(name, module)] + [(f"{name}.{a}", getattr(module, a, None)) for a in getattr(module, "__all__", [])[:40]]:
        doc = inspect.getdoc(obj) if obj is not None else None
        if doc and not attr.startswith("_"):
            print(f"{attr} - {first_paragraph(doc)[:300]}")
