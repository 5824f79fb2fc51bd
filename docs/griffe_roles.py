"""A griffe extension for the API reference: kolmo's reStructuredText habits, read as Markdown.

kolmo's docstrings are prose written for plain ``help()``: they cite other objects with Sphinx
roles (``:class:`~kolmo.errors.CorruptStreamError```), show doctests (``>>> ...``) and end a
paragraph with ``::`` before an indented block. mkdocstrings renders docstrings as Markdown, where
these would show raw (and ``>>>`` would become nested quotes), so this extension rewrites them when
griffe loads the package: a role becomes a code span (``~`` keeps only the last dotted name, as in
Sphinx), a doctest a fenced ``pycon`` block, ``::`` a colon before the indented code block.
"""

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const):`(~?)([^`]+)`")


def _span(m: "re.Match[str]") -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def markdown(text: str) -> str:
    text = ROLE.sub(_span, text)
    out, doctest = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(">>>") and not doctest:
            out += ["```pycon"]
            doctest = True
        elif doctest and not line.strip():
            out += ["```"]
            doctest = False
        out.append(line[:-1] if line.endswith("::") and not doctest else line)
    return "\n".join(out + (["```"] if doctest else []))


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: ANN003
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
