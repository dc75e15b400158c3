"""The escape corpus: every known way out of RestrictedPython-style sandboxes must fail,
with no side effect outside the worker (each payload would create a marker file)."""

import os

import pytest

from sandbox import Sandbox

# (name, code, expected error_kind). {m} is the marker file's path; every payload, if it got out,
# would create it. The marker folder is world-writable so only the sandbox stands in the way.
ESCAPES = [
    ("import_os", "import os\nos.system('touch {m}')", "policy"),
    ("import_os_as", "import os as o\no.system('touch {m}')", "policy"),
    ("from_os_import", "from os import system\nsystem('touch {m}')", "policy"),
    ("import_submodule", "import os.path", "policy"),
    ("import_subprocess", "import subprocess\nsubprocess.run(['touch', '{m}'])", "policy"),
    ("import_sys", "import sys\nsys.modules['os'].system('touch {m}')", "policy"),
    ("import_builtins", "import builtins\nbuiltins.open('{m}', 'w')", "policy"),
    ("import_importlib", "import importlib\nimportlib.import_module('os').system('touch {m}')", "policy"),
    ("import_ctypes", "import ctypes", "policy"),
    ("relative_import", "from . import x", "policy"),
    ("star_import", "from math import *", "policy"),
    ("dunder_import", "__import__('os').system('touch {m}')", "policy"),
    ("open_builtin", "open('{m}', 'w').write('x')", "policy"),
    ("eval_builtin", "eval(\"__import__('os').system('touch {m}')\")", "policy"),
    ("exec_builtin", "exec(\"open('{m}', 'w')\")", "policy"),
    ("exec_via_name", "f = exec\nf(\"open('{m}', 'w')\")", "policy"),
    ("compile_builtin", "compile('1', 'x', 'exec')", "policy"),
    ("globals_builtin", "globals()['__builtins__']['open']('{m}', 'w')", "policy"),
    ("vars_builtin", "vars()", "policy"),
    ("setattr_builtin", "import math\nsetattr(math, 'pi', 3)", "policy"),
    ("builtins_name", "__builtins__['open']('{m}', 'w')", "policy"),
    ("type_three_args", "X = type('X', (), {{}})", "policy"),
    ("type_of_type", "T = type(type(0))\nT('X', (), {{}})", "policy"),
    ("type_of_enum_class", "import re\ntype(re.RegexFlag)", "policy"),
    (
        "str_subclass_name",
        "class S(str):\n    def startswith(self, p):\n        return False\ngetattr((), S('__class__'))",
        "runtime",
    ),
    (
        "str_subclass_hasattr",
        "class S(str):\n    def startswith(self, p):\n        return False\nhasattr((), S('__class__'))",
        "runtime",
    ),
    # class-hierarchy walks
    ("subclasses", "().__class__.__bases__[0].__subclasses__()", "policy"),
    ("object_subclasses", "object.__subclasses__()", "policy"),
    ("getattr_class", "getattr((), '__class__')", "policy"),
    ("getattr_built_name", "getattr((), '__cl' + 'ass__')", "policy"),
    ("hasattr_private", "hasattr((), '__class__')", "policy"),
    ("mro", "type(()).mro()[-1]", "policy"),
    ("getattr_mro", "getattr(int, 'mro')()", "policy"),
    ("func_globals", "def f(): pass\nf.__globals__['__builtins__']", "policy"),
    ("getattr_globals", "def f(): pass\ngetattr(f, '__glo' + 'bals__')", "policy"),
    ("bound_method_self", "print.__self__", "policy"),
    ("code_object", "def f(): pass\nf.__code__", "policy"),
    # str.format and string.Formatter read attributes from C
    ("str_format", "'{{0.__class__.__base__}}'.format(1)", "policy"),
    ("str_format_unbound", "str.format('{{0.__class__}}', 1)", "policy"),
    ("str_format_getattr", "getattr('{{0.__class__}}', 'format')(1)", "policy"),
    ("str_format_map", "'{{x.__class__}}'.format_map({{'x': 1}})", "policy"),
    ("string_formatter", "import string\nstring.Formatter().format('{{0.__class__}}', 1)", "policy"),
    ("from_string_formatter", "from string import Formatter", "policy"),
    # generator, coroutine, frame and traceback attributes
    ("gi_frame", "g = (x for x in [1])\ng.gi_frame.f_back.f_globals", "policy"),
    ("gi_frame_getattr", "g = (x for x in [1])\ngetattr(g, 'gi_' + 'frame')", "policy"),
    ("gi_code", "g = (x for x in [1])\ngetattr(g, 'gi_code')", "policy"),
    ("tb_frame", "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame", "policy"),
    ("tb_frame_getattr", "try:\n    1/0\nexcept Exception as e:\n    t = getattr(e, '__trace' + 'back__')", "policy"),
    ("f_globals_name", "def f(): pass\nx = getattr(f, 'f_globals')", "policy"),
    ("attribute_error_obj", "try:\n    (1).nope\nexcept AttributeError as e:\n    o = e.obj", "policy"),
    (
        "attribute_error_obj_getattr",
        "try:\n    (1).nope\nexcept AttributeError as e:\n    o = getattr(e, 'obj')",
        "policy",
    ),
    ("try_star", "try:\n    pass\nexcept* ValueError:\n    pass", "policy"),
    # rebinding the guards' names
    ("posonly_shadow", "def f(_getattr_, /):\n    return _getattr_\nf(getattr)", "policy"),
    ("default_arg_shadow", "def f(_getattr_=None):\n    return ().__class__\nf()", "policy"),
    ("lambda_shadow", "f = lambda _getitem_=None: 1", "policy"),
    ("kwonly_shadow", "def f(*, _write_=None): pass", "policy"),
    ("assign_guard", "_getattr_ = lambda o, n: 1", "policy"),
    ("import_as_guard", "import math as _getattr_", "policy"),
    ("default_arg_getattr", "def f(g=getattr):\n    return g((), '__class__')\nf()", "policy"),
    ("except_as_guard", "try:\n    1/0\nexcept Exception as _getattr_:\n    pass", "policy"),
    # decorators
    ("functools_wraps", "import functools\n@functools.wraps(print)\ndef f(): pass", "policy"),
    ("update_wrapper", "import functools\nfunctools.update_wrapper", "policy"),
    ("singledispatch", "from functools import singledispatch", "policy"),
    ("decorator_globals", "@(lambda f: f.__globals__)\ndef g(): pass", "policy"),
    ("decorator_getattr", "def leak(f):\n    return getattr(f, '__globals__')\n@leak\ndef g(): pass", "policy"),
    # f-string conversions
    ("fstring_class", "f'{{().__class__!r}}'", "policy"),
    ("fstring_format", "f\"{{'{{0.__class__}}'.format(1)!s}}\"", "policy"),
    ("fstring_getattr", "f'{{getattr(1, \"__class__\")!a}}'", "policy"),
    # module proxies: no module-valued attributes, no writes, vetted names only
    ("module_attr_codecs", "import json\njson.codecs.open('{m}', 'w')", "policy"),
    ("module_attr_enum", "import re\nre.enum", "policy"),
    ("module_attr_abc", "import collections\ncollections.abc", "policy"),
    ("module_attr_sys", "import statistics\nstatistics.sys", "policy"),
    ("module_attr_getattr", "import textwrap\ngetattr(textwrap, 're')", "policy"),
    ("from_module_import_module", "from json import codecs", "policy"),
    ("module_private", "import random\nrandom._os", "policy"),
    ("module_write", "import math\nmath.pi = 3", "policy"),
    ("module_delete", "import math\ndel math.pi", "policy"),
    ("module_dict", "import math\nmath.__dict__", "policy"),
    ("module_loader", "import json\ngetattr(json, '__loader__')", "policy"),
    ("function_write", "def f(): pass\nf.x = 1", "policy"),
    ("builtin_type_write", "int.x = 1", "policy"),
]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as box:
        yield box


@pytest.fixture
def marker(tmp_path):
    os.chmod(tmp_path, 0o777)
    return tmp_path / "escaped"


@pytest.mark.parametrize("name,code,kind", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_escape_is_refused(sandbox, marker, name, code, kind):
    result = sandbox.run(code.format(m=marker), timeout=5)
    assert not result.ok, result
    assert result.error_kind == kind, result
    assert result.error
    assert not marker.exists()


def test_policy_error_names_what_was_refused(sandbox):
    assert "'os'" in sandbox.run("import os").error
    assert "'Formatter'" in sandbox.run("import string\nstring.Formatter").error
    assert "'format'" in sandbox.run("'x'.format()").error
    assert "'open'" in sandbox.run("open('x')").error
    assert "line 2" in sandbox.run("x = 1\nimport os").error


def test_caught_policy_error_does_not_leak(sandbox, marker):
    code = "try:\n    import os\nexcept Exception:\n    os = None\nos"
    result = sandbox.run(code)
    assert result.ok and result.value is None
    assert not marker.exists()


def test_allowed_modules_work(sandbox):
    code = (
        "import math, json, re, statistics, itertools, functools, collections, datetime, decimal\n"
        "import fractions, random, string, textwrap, heapq, bisect, cmath\n"
        "c = collections.Counter('hello')\n"
        "[math.sqrt(16), json.dumps({'a': 1}), re.findall(r'l+', 'hello'), statistics.mean([1, 2, 3]),\n"
        " list(itertools.islice(itertools.count(), 3)), functools.reduce(lambda a, b: a + b, [1, 2, 3]),\n"
        " c['l'], str(decimal.Decimal('0.1') + decimal.Decimal('0.2')), str(fractions.Fraction(1, 3)),\n"
        " string.Template('$x!').substitute(x='hi'), heapq.nsmallest(1, [3, 1]), bisect.bisect([1, 3], 2)]"
    )
    result = sandbox.run(code)
    assert result.ok, result
    assert result.value == "[4.0, '{\"a\": 1}', ['ll'], 2, [0, 1, 2], 6, 2, '0.3', '1/3', 'hi!', [1], 1]"


def test_classes_may_set_their_own_attributes(sandbox):
    code = (
        "class Point:\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
        "    def moved(self, d):\n"
        "        return Point(self.x + d)\n"
        "Point(1).moved(2).x"
    )
    result = sandbox.run(code)
    assert result.ok, result
    assert result.value == "3"


def test_random_differs_between_runs(sandbox):
    values = {sandbox.run("import random\nrandom.random()").value for _ in range(3)}
    assert len(values) == 3
