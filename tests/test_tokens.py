"""tokens.json and what it generates: the committed theme files hold exactly the tokens' values.

An independent reading of the tokens (aliases resolved here, in Python) is compared with the
generated shadcn variables and MUI theme, so a hand edit of a generated file, or a token changed
without `just tokens-build`, fails the suite on a machine without Node. (`just tokens-check`
rebuilds with Style Dictionary itself and diffs; CI runs it.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "console" / "src" / "generated"
ALIAS = re.compile(r"^\{([^}]+)\}$")
# shadcn variable -> colour role in tokens.json (a few, one of each kind of role)
SHADCN_ROLES = {"background": "background", "primary": "primary", "foreground": "text", "ring": "focus"}


def resolve(tokens: dict[str, Any], path: str) -> str:
    node: Any = tokens
    for part in path.split("."):
        node = node[part]
    value = node["$value"]
    alias = ALIAS.match(value)
    return resolve(tokens, alias.group(1)) if alias else str(value)


def css_block(css: str, selector: str) -> dict[str, str]:
    body = re.search(re.escape(selector) + r" \{(.*?)\}", css, re.S)
    assert body, f"no {selector} block"
    return dict(re.findall(r"--([\w-]+): ([^;]+);", body.group(1)))


def every_token(node: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, child in node.items():
        if isinstance(child, dict) and not key.startswith("$"):
            here = f"{prefix}{key}"
            paths += [here] if "$value" in child else every_token(child, here + ".")
    return paths


def test_every_token_has_a_value_a_type_and_resolves() -> None:
    tokens = json.loads((ROOT / "tokens.json").read_text())
    paths = every_token(tokens)
    assert len(paths) > 50
    groups = {p.split(".")[0] for p in paths}
    assert groups == {"palette", "color", "typography", "spacing", "radius", "elevation", "motion"}
    for path in paths:
        assert isinstance(resolve(tokens, path), str), path  # an alias to nothing raises KeyError
    light = {p.split(".")[2] for p in paths if p.startswith("color.light.")}
    dark = {p.split(".")[2] for p in paths if p.startswith("color.dark.")}
    assert light == dark  # every role in both schemes


def test_the_generated_shadcn_variables_and_mui_theme_hold_the_tokens_values() -> None:
    tokens = json.loads((ROOT / "tokens.json").read_text())
    css = (GENERATED / "shadcn.gen.css").read_text()
    mui = (GENERATED / "mui-theme.gen.ts").read_text()
    theme = json.loads(mui[mui.index("{") : mui.rindex("}") + 1])
    for selector, mode in ((":root", "light"), (".dark", "dark")):
        variables = css_block(css, selector)
        for variable, role in SHADCN_ROLES.items():
            assert variables[variable] == resolve(tokens, f"color.{mode}.{role}"), (mode, variable)
        palette = theme["colorSchemes"][mode]["palette"]
        assert palette["primary"]["main"] == resolve(tokens, f"color.{mode}.primary")
        assert palette["background"]["default"] == resolve(tokens, f"color.{mode}.background")
    assert css_block(css, ":root")["radius"] == resolve(tokens, "radius.md")
    assert theme["typography"]["fontFamily"] == resolve(tokens, "typography.font-family.sans")
    tailwind = (GENERATED / "tailwind.gen.css").read_text()
    assert "--color-primary: var(--primary);" in tailwind  # Tailwind's utilities read the shadcn variables
