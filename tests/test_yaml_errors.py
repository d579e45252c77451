"""A YAML syntax error names the line where the broken construct starts, not the line where PyYAML gave up.

Each case opens a construct on one line and only breaks it lines later (or at the end of the file); the
message
must carry the opening line, in inventories, profiles and waivers alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmqa.config.inventory import InventoryError, load_inventory
from kvmqa.config.profile import ProfileError, load_profile
from kvmqa.policy.waivers import WaiverError, load_waivers
from kvmqa.stages import builtin

# (text, line where the broken construct starts, line where PyYAML gave up or None when it is the same)
BROKEN = [
    # a flow sequence opened on line 6 that never closes: PyYAML gives up at the next key or the end of the
    # file
    (
        "hosts:\n  - name: hv1\n    address: 127.0.0.1\n    port: 22\n    user: qa\n    sudo: [yes\n    "
        "roles: x\n",
        6,
        7,
    ),
    ("hosts:\n  - name: hv1\n    address: 127.0.0.1\n    port: 22\n    user: qa\n    sudo: [yes\n", 6, 7),
    # a flow mapping opened on line 2
    ("hosts:\n  - {name: hv1, address: 127.0.0.1\n  - name: hv2\n", 2, 3),
    # a quoted scalar opened on line 3 and never closed
    ('hosts:\n  - name: hv1\n    user: "qa\n    port: 22\n', 3, 5),
    # a mis-indented key in a block mapping: the bad line itself (the block's start would point at the whole
    # list)
    ("hosts:\n  - name: a\n    address: 127.0.0.1\n   port: 22\n", 4, None),
]


def _loaders():
    def inventory(path: Path) -> None:
        load_inventory(path)

    def profile(path: Path) -> None:
        load_profile(path, builtin().columns())

    def waivers(path: Path) -> None:
        load_waivers.cache_clear()
        load_waivers(path)

    return [(inventory, InventoryError), (profile, ProfileError), (waivers, WaiverError)]


@pytest.mark.parametrize("text,line,gave_up", BROKEN)
def test_the_line_where_the_broken_construct_starts_is_named(
    tmp_path: Path, text: str, line: int, gave_up: int | None
) -> None:
    path = tmp_path / "input.yaml"
    path.write_text(text)
    for load, error in _loaders():
        with pytest.raises(error) as err:
            load(path)
        message = str(err.value)
        assert message.startswith(f"{path}:{line}: malformed YAML"), (load.__name__, message)
        assert "\n" not in message
        if gave_up:  # the end mark, where PyYAML gave up, is named as well when it is another line
            assert message.endswith(f"the parser gave up at line {gave_up}"), message
        else:
            assert "gave up" not in message, message
