"""The tiny-agent chat template: Qwen3.5's layout (ChatML, `# Tools` block, XML tool calls).

The format-instruction paragraph is shorter than Qwen3.5's (one example call, no
<IMPORTANT> reminder) so that the tiny model spends its short context on the task;
everything the agent parses is rendered exactly as Qwen3.5 renders it.
"""

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
)

TOOLS_HEADER = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
TOOLS_FOOTER = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format "
    "with NO suffix:\n\n<tool_call>\n<function=example_function_name>\n"
    "<parameter=example_parameter_1>\nvalue_1\n</parameter>\n</function>\n</tool_call>"
)

# OpenAI clients send `function.arguments` as a JSON string; Jinja has no fromjson, so the
# `parse_json_object` macro below reads a JSON object character by character: string values
# come back decoded (common escapes), every other value as its raw JSON text.
_JSON_MACRO = r"""
{%- macro render_args(args) -%}
{%- if args is mapping -%}
{%- for name, value in args|items -%}
{{- '<parameter=' + name + '>\n' }}
{%- if value is string %}{{- value }}{%- else %}{{- value | tojson }}{%- endif %}
{{- '\n</parameter>\n' }}
{%- endfor -%}
{%- elif args is string -%}
{%- set st = namespace(mode='key', inq=false, esc=false, depth=0, buf='', key='', isstr=false, started=false) -%}
{%- set escapes = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', '\\': '\\', '/': '/', 'b': '', 'f': ''} -%}
{%- for ch in args -%}
{%- if not st.started -%}
{%- if ch == '{' %}{%- set st.started = true %}{%- endif -%}
{%- elif st.inq -%}
{%- if st.esc -%}
{%- set st.esc = false -%}
{%- if st.depth > 0 %}{%- set st.buf = st.buf + '\\' + ch %}{%- else %}{%- set st.buf = st.buf + escapes.get(ch, ch) %}{%- endif -%}
{%- elif ch == '\\' -%}{%- set st.esc = true -%}
{%- elif ch == '"' -%}
{%- set st.inq = false -%}
{%- if st.depth > 0 %}{%- set st.buf = st.buf + ch %}{%- endif -%}
{%- else -%}{%- set st.buf = st.buf + ch -%}
{%- endif -%}
{%- elif ch == '"' -%}
{%- set st.inq = true -%}
{%- if st.depth > 0 %}{%- set st.buf = st.buf + ch %}{%- elif st.mode == 'value' %}{%- set st.isstr = true %}{%- endif -%}
{%- elif ch in '{[' -%}{%- set st.depth = st.depth + 1 %}{%- set st.buf = st.buf + ch -%}
{%- elif ch in ']' or (ch == '}' and st.depth > 0) -%}{%- set st.depth = st.depth - 1 %}{%- set st.buf = st.buf + ch -%}
{%- elif st.depth > 0 -%}{%- if ch not in ' \n\t\r' %}{%- set st.buf = st.buf + ch %}{%- endif -%}
{%- elif ch == ':' and st.mode == 'key' -%}{%- set st.key = st.buf %}{%- set st.buf = '' %}{%- set st.mode = 'value' -%}
{%- elif (ch == ',' or ch == '}') and st.mode == 'value' -%}
{{- '<parameter=' + st.key + '>\n' + (st.buf if st.isstr else st.buf | trim) + '\n</parameter>\n' }}
{%- set st.buf = '' %}{%- set st.key = '' %}{%- set st.isstr = false %}{%- set st.mode = 'key' -%}
{%- elif ch not in ' \n\t\r' and st.mode == 'value' -%}{%- set st.buf = st.buf + ch -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
"""

CHAT_TEMPLATE = (
    _JSON_MACRO.strip()
    + r"""
{%- if tools %}
{{- '<|im_start|>system\n' + '"""
    + TOOLS_HEADER.replace("\n", "\\n")
    + r"""' }}
{%- for tool in tools %}
{{- '\n' }}{{- tool | tojson }}
{%- endfor %}
{{- '"""
    + TOOLS_FOOTER.replace("\n", "\\n")
    + r"""' }}
{%- if messages and messages[0].role == 'system' and messages[0].content %}
{{- '\n\n' + messages[0].content }}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- elif messages and messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(last_query=-1) %}
{%- for message in messages %}
{%- if message.role == 'user' and message.content is string and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
{%- set ns.last_query = loop.index0 %}
{%- endif %}
{%- endfor %}
{%- for message in messages %}
{%- set content = message.content if message.content is string else '' %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{%- set reasoning = message.reasoning_content if message.reasoning_content is string else '' %}
{%- if '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] %}
{%- set content = content.split('</think>')[-1] %}
{%- endif %}
{%- set reasoning = reasoning.strip('\n') %}
{%- set content = content.lstrip('\n') %}
{%- if loop.index0 > ns.last_query %}
{{- '<|im_start|>assistant\n<think>\n' + reasoning + '\n</think>\n\n' + content }}
{%- else %}
{{- '<|im_start|>assistant\n' + content }}
{%- endif %}
{%- if message.tool_calls %}
{%- for tool_call in message.tool_calls %}
{%- set call = tool_call.function if tool_call.function is defined else tool_call %}
{%- if not loop.first %}{{- '\n' }}{%- elif content | trim %}{{- '\n\n' }}{%- endif %}
{{- '<tool_call>\n<function=' + call.name + '>\n' }}
{%- if call.arguments is defined %}{{- render_args(call.arguments) }}{%- endif %}
{{- '</function>\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\n\n</think>\n\n' }}
{%- else %}
{{- '<think>\n' }}
{%- endif %}
{%- endif %}
"""
)


def _environment():
    # The same Jinja settings transformers uses for apply_chat_template, so training text
    # matches what the runtime renders token for token.
    import json

    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    return env


_COMPILED = None


def render(
    messages: list[dict],
    tools: list[dict] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool = False,
) -> str:
    """Render a conversation with the tiny-agent template, as ``apply_chat_template`` would."""
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = _environment().from_string(CHAT_TEMPLATE)
    return _COMPILED.render(
        messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
    )
