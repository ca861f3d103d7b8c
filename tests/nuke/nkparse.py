"""A small reader for Nuke's Tcl-like ``.nk`` / ``.gizmo`` syntax, for tests (no Nuke here).

It tokenizes with brace nesting and quoted strings, reads ``Class { knob value ... }`` nodes, and
replays the node stack (``set``/``push``/``inputs N``/``end_group``) so tests can check which node
feeds which input. Input 0 is the top of the stack when a node is created, as in Nuke scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class NkSyntaxError(ValueError):
    pass


@dataclass
class Token:
    kind: str  # "word", "string", "brace", "newline"
    text: str


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            tokens.append(Token("newline", "\n"))
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == '"':  # braces inside a quoted string do not count
                    j += 1
                    while j < n and text[j] != '"':
                        j += 2 if text[j] == "\\" else 1
                elif text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise NkSyntaxError(f"unbalanced brace opened at offset {i}")
            tokens.append(Token("brace", text[i + 1:j - 1]))
            i = j
        elif c == "}":
            raise NkSyntaxError(f"unexpected closing brace at offset {i}")
        elif c == "[":  # Tcl command substitution, e.g. [stack 0]: one token
            j = text.find("]", i)
            if j == -1:
                raise NkSyntaxError(f"unterminated [ at offset {i}")
            tokens.append(Token("word", text[i:j + 1]))
            i = j + 1
        elif c == '"':
            j, out = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    out.append("\n" if nxt == "n" else nxt)
                    j += 2
                else:
                    out.append(text[j])
                    j += 1
            if j >= n:
                raise NkSyntaxError(f"unterminated string at offset {i}")
            tokens.append(Token("string", "".join(out)))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in " \t\r\n{}\"":
                j += 1
            tokens.append(Token("word", text[i:j]))
            i = j
    return tokens


def lines(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.kind == "newline":
            out.append([])
        else:
            out[-1].append(tok)
    return [line for line in out if line]


@dataclass
class Node:
    cls: str
    knobs: dict[str, list[Token]] = field(default_factory=dict)  # knob -> value tokens (last wins)
    user_knobs: list[list[Token]] = field(default_factory=list)  # addUserKnob bodies, tokenized
    inputs: list[Node | None] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)  # Group / Gizmo contents

    @property
    def name(self) -> str:
        return self.value("name") or ""

    def value(self, knob: str) -> str | None:
        toks = self.knobs.get(knob)
        return None if toks is None else " ".join(t.text for t in toks)

    def user_knob(self, name: str) -> dict[str, object] | None:
        """An addUserKnob as {type, name, label, tooltip, script, items, flags}."""
        for body in self.user_knobs:
            if len(body) > 1 and body[1].text == name:
                info: dict[str, object] = {"type": int(body[0].text), "name": name, "flags": []}
                k = 2
                while k < len(body):
                    key = body[k].text
                    if key in ("l", "t", "T", "M") and k + 1 < len(body):
                        field_name = {"l": "label", "t": "tooltip", "T": "script", "M": "items"}[key]
                        info[field_name] = body[k + 1].text
                        k += 2
                    else:
                        info["flags"].append(key)  # type: ignore[union-attr]
                        k += 1
                return info
        return None

    def user_knob_names(self) -> list[str]:
        """Named user knobs (unnamed dividers left out)."""
        return [body[1].text for body in self.user_knobs if len(body) > 1 and body[1].text]


def parse_body(text: str) -> tuple[dict[str, list[Token]], list[list[Token]]]:
    knobs: dict[str, list[Token]] = {}
    user: list[list[Token]] = []
    for line in lines(tokenize(text)):
        key, rest = line[0].text, line[1:]
        if key == "addUserKnob":
            if len(rest) != 1 or rest[0].kind != "brace":
                raise NkSyntaxError(f"addUserKnob needs one brace group, got {rest}")
            user.append([t for t in tokenize(rest[0].text) if t.kind != "newline"])
        else:
            if not rest:
                raise NkSyntaxError(f"knob {key!r} has no value")
            knobs[key] = rest
    return knobs, user


@dataclass
class Script:
    nodes: list[Node]  # top level, in file order
    commands: list[list[str]]  # non-node statements (version, set, push, add_layer, ...)

    def find(self, cls: str) -> list[Node]:
        found = []
        for node in self.nodes:
            if node.cls == cls:
                found.append(node)
            found.extend(child for child in node.children if child.cls == cls)
        return found

    def named(self, name: str) -> Node:
        for node in self.nodes:
            for candidate in (node, *node.children):
                if candidate.name == name:
                    return candidate
        raise KeyError(name)


def parse(text: str) -> Script:
    PASTE = Node("<paste input>")  # what cut_paste_input stands for when a toolset is pasted
    top: list[Node] = []
    commands: list[list[str]] = []
    stacks: list[list[Node | None]] = [[]]
    groups: list[Node] = []
    variables: dict[str, Node | None] = {}
    for line in lines(tokenize(text)):
        head = line[0].text
        if len(line) == 2 and line[1].kind == "brace" and head[:1].isalpha() and head != "add_layer":
            knobs, user = parse_body(line[1].text)
            node = Node(head, knobs, user)
            default_inputs = 0 if head in ("StickyNote", "BackdropNode") else 1
            count = int(node.value("inputs") or default_inputs)
            stack = stacks[-1]
            for _ in range(count):
                node.inputs.append(stack.pop() if stack else None)
            stack.append(node)
            (groups[-1].children if groups else top).append(node)
            if head in ("Group", "Gizmo"):
                groups.append(node)
                stacks.append([])
            continue
        words = [t.text for t in line]
        commands.append(words)
        if head == "set" and len(words) == 3 and words[2] == "[stack 0]":
            stack = stacks[-1]
            variables[words[1]] = stack[-1] if stack else (PASTE if words[1] == "cut_paste_input" else None)
        elif head == "push":
            target = words[1]
            stacks[-1].append(None if target == "0" else variables[target.lstrip("$")])
        elif head == "end_group":
            if not groups:
                raise NkSyntaxError("end_group without a group")
            groups.pop()
            stacks.pop()
        elif head not in ("version", "add_layer", "define_window_layout_xml", "Root"):
            raise NkSyntaxError(f"unknown statement {words}")
    if groups:
        raise NkSyntaxError(f"group {groups[-1].cls} is not closed with end_group")
    return Script(top, commands)
