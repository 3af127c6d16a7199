"""Sphinx extension: signatures in the API reference that read like the code that calls them.

In a dataclass's signature autodoc writes a field with a ``default_factory`` as ``<factory>``,
and a type as ``~torch.Tensor`` (the ``~`` is left in the page there, unlike in functions); this
shows ``[]``, ``{}`` or ``factory()``, and ``torch.Tensor``.
Long signatures are broken one parameter a line by Sphinx itself
(``maximum_signature_line_length`` in _config.yml).
"""
from __future__ import annotations

import dataclasses
import re

_SHORT_TYPE = re.compile(r"~((?:\w+\.)*\w+)")
_EMPTY = {list: "[]", dict: "{}", set: "set()", tuple: "()"}


def _factory_text(factory) -> str:
    return _EMPTY.get(factory, f"{getattr(factory, '__name__', 'factory')}()")


def readable(obj, signature: str | None) -> str | None:
    """The signature of dataclass ``obj`` with each ``<factory>`` replaced and no ``~`` before types.

    Other signatures are returned unchanged (Sphinx renders their ``~`` itself)."""
    if not signature or not (dataclasses.is_dataclass(obj) and isinstance(obj, type)):
        return signature
    factories = [f.default_factory for f in dataclasses.fields(obj)
                 if f.init and f.default_factory is not dataclasses.MISSING]
    for factory in factories:
        signature = signature.replace("<factory>", _factory_text(factory), 1)
    return _SHORT_TYPE.sub(lambda m: m[1], signature)


def _process_signature(app, what, name, obj, options, signature, return_annotation):
    return readable(obj, signature), return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _process_signature)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
