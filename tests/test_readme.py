"""README.md stays true: its set-up block and its Python example."""

import ast
import re
import sys
from importlib.metadata import requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def code_blocks(language):
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_opens_with_the_two_set_up_commands():
    first_block = code_blocks("bash")[0].strip().splitlines()
    assert len(first_block) == 2
    demo, tests = first_block
    assert demo.startswith("pip install") and "python -m skcrossmodal demo" in demo
    assert tests.startswith('pip install ".[test]"') and "python -m pytest" in tests
    # It is the first code block of the file.
    text = README.read_text(encoding="utf-8")
    assert text.index("```bash") == text.index("```")


def test_readme_python_example_runs():
    (example,) = code_blocks("python")
    namespace = {}
    exec(compile(example, str(README), "exec"), namespace)
    model = namespace["model"]
    assert list(model[1].modalities_) == ["text", "image"]
    assert model.score(namespace["emoji"].data, namespace["emoji"].target) > 0.5


def test_demo_command_installs_every_package_the_demo_imports():
    """A fresh machine runs only README's first command: its extras must
    bring every third-party package the demo imports, beyond the core."""
    demo_command = code_blocks("bash")[0].strip().splitlines()[0]
    extras = re.search(r'"\.\[([\w,]+)\]"', demo_command).group(1).split(",")
    # The installed metadata, built from pyproject.toml ("pandas>=1.5;
    # extra == 'demo'"); Python 3.10 has no tomllib to read the file itself.
    requirements = [
        requirement
        for requirement in requires("skcrossmodal")
        if "extra ==" not in requirement
        or any(f'extra == "{extra}"' in requirement for extra in extras)
    ]
    installed = {re.match(r"[\w-]+", r).group(0).lower() for r in requirements}
    installed |= {"threadpoolctl"}  # scikit-learn's own dependency

    source = (ROOT / "skcrossmodal" / "_demo.py").read_text()
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        and not getattr(node, "level", 0)
        for alias in node.names
    }
    third_party = imported - set(sys.stdlib_module_names) - {"skcrossmodal"}
    import_names = {"sklearn": "scikit-learn"}
    missing = {import_names.get(name, name) for name in third_party} - installed
    assert not missing, f"README's demo command does not install {missing}"
