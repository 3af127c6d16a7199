"""The API reference's signatures: readable dataclass defaults and short type names."""
from __future__ import annotations

import dataclasses

from tools.api_signatures import readable


@dataclasses.dataclass
class _Record:
    name: str = ""
    values: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)
    made: object = dataclasses.field(default_factory=object)


def test_dataclass_factories_are_shown_as_what_they_make_and_types_lose_their_tilde():
    signature = ("(name: str = '', values: list[~torch.Tensor] = <factory>, extra: dict = <factory>, "
                 "made: object = <factory>)")
    assert readable(_Record, signature) == ("(name: str = '', values: list[torch.Tensor] = [], extra: dict = {}, "
                                            "made: object = object())")
    # Sphinx renders the `~` of other signatures itself
    assert readable(readable, "(x: ~torch.Tensor)") == "(x: ~torch.Tensor)"
    assert readable(None, None) is None and readable(_Record, "") == ""
