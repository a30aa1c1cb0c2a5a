"""README.md stays true: its set-up block and its Python example."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
