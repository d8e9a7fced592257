"""A renderer for the part of Helm's template language deploy/helm/ferroserve uses, for machines without
Helm: `{{ .Values.x }}`, `.Release.Name`, `.Chart.*`, string literals; pipelines through `toYaml`, `nindent N`,
`indent N`, `quote` and `default X`; `if` / `else` / `end`; and the `{{-` / `-}}` whitespace trimming.
Anything else is an error, so a template that outgrows it fails the test instead of rendering wrong.

    python tests/python/helm_lite.py deploy/helm/ferroserve [RELEASE]   # prints the manifests
"""

import pathlib
import re
import sys

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def tokens(source):
    """Text and actions, with the trim markers applied to the text around them."""
    out, pos = [], 0
    for m in ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if out and out[-1][0] == "trim-next":
            out.pop()
            text = text.lstrip()
        out.append(("text", text))
        out.append(("action", m.group(2)))
        if m.group(3):
            out.append(("trim-next", None))
        pos = m.end()
    text = source[pos:]
    if out and out[-1][0] == "trim-next":
        out.pop()
        text = text.lstrip()
    out.append(("text", text))
    return out


def parse(items, i=0, stop=()):
    """A list of nodes up to an `else`/`end` in `stop`; returns (nodes, index, the stop word)."""
    nodes = []
    while i < len(items):
        kind, value = items[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
        elif value.startswith("if "):
            then, i, word = parse(items, i, ("else", "end"))
            otherwise = []
            if word == "else":
                otherwise, i, word = parse(items, i, ("end",))
            nodes.append(("if", value[3:], then, otherwise))
        elif value in stop:
            return nodes, i, value
        elif value in ("else", "end"):
            raise ValueError(f"unexpected {value}")
        else:
            nodes.append(("expr", value))
    if stop:
        raise ValueError(f"missing {stop[-1]}")
    return nodes, i, None


def lookup(path, scope):
    value = scope
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def term(text, scope):
    if text.startswith('"'):
        return text[1:-1]
    if text.startswith("."):
        return lookup(text, scope)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    raise ValueError(f"unsupported term {text!r}")


def evaluate(expr, scope):
    stages = [s.strip() for s in expr.split("|")]
    first = stages[0].split()
    if first[0] == "toYaml":
        value = yaml.safe_dump(term(first[1], scope), default_flow_style=False, sort_keys=False).rstrip("\n")
    else:
        value = term(first[0], scope)
    for stage in stages[1:]:
        fn, *args = stage.split()
        if fn == "quote":
            value = '"' + str(value).replace('"', '\\"') + '"'
        elif fn in ("nindent", "indent"):
            pad = " " * int(args[0])
            body = "\n".join(pad + line if line else line for line in str(value).rstrip("\n").split("\n"))
            value = ("\n" if fn == "nindent" else "") + body
        elif fn == "default":
            value = value if value else term(args[0], scope)
        else:
            raise ValueError(f"unsupported function {fn!r}")
    return value


def render_nodes(nodes, scope):
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            value = evaluate(node[1], scope)
            out.append("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        else:
            _, condition, then, otherwise = node
            out.append(render_nodes(then if evaluate(condition, scope) else otherwise, scope))
    return "".join(out)


def render(chart_dir, release="ferroserve", overrides=None):
    """Every template of the chart rendered: {file name: text}."""
    chart_dir = pathlib.Path(chart_dir)
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    for key, value in (overrides or {}).items():
        target = values
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    scope = {"Values": values, "Release": {"Name": release, "Namespace": "default"},
             "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}}
    rendered = {}
    for template in sorted((chart_dir / "templates").glob("*.yaml")):
        nodes, _, _ = parse(tokens(template.read_text()))
        rendered[template.name] = render_nodes(nodes, scope)
    return rendered


if __name__ == "__main__":
    for name, text in render(sys.argv[1], *(sys.argv[2:3] or ["ferroserve"])).items():
        if text.strip():
            print(f"---\n# Source: {name}\n{text.strip()}")
