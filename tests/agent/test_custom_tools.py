"""Loading user tools from a Python file."""

import pytest

from agent.custom_tools import load_tools
from optiq_runtime.errors import BadInputError

TOOLS_FILE = """
from pydantic import BaseModel
from tools import Tool

class Args(BaseModel):
    city: str

def weather(arguments, context):
    return "sunny in " + arguments["city"]

WEATHER = Tool.from_model("weather", "Today's weather in a city.", Args, weather)
"""


def test_module_level_tools_are_found(tmp_path):
    path = tmp_path / "my_tools.py"
    path.write_text(TOOLS_FILE)
    [tool] = load_tools(path)
    assert tool.name == "weather" and tool.parameters["required"] == ["city"]
    assert tool.handler({"city": "Oslo"}, None) == "sunny in Oslo"


def test_a_tools_list_wins(tmp_path):
    path = tmp_path / "my_tools.py"
    path.write_text(TOOLS_FILE + "\nTOOLS = []\n")
    with pytest.raises(BadInputError, match="declares no tools"):
        load_tools(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("def broken(:\n", "not valid Python"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("x = 1\n", "declares no tools"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.py"
    path.write_text(content)
    with pytest.raises(BadInputError, match=message):
        load_tools(path)


def test_a_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="is not a file"):
        load_tools(tmp_path / "nope.py")
