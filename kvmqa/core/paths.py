"""Where kvmqa's own files are: data shipped inside the package (read with importlib.resources), report names.

>>> data_file("engine-setup.conf").name
'engine-setup.conf'
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_file(name: str) -> Path:
    """A file of kvmqa/data (answer files, the oVirt CPU list, the guest's init): in a checkout or an
    installed wheel."""
    return Path(str(files("kvmqa.data").joinpath(name)))


def safe_name(name: str) -> str:
    """A host name as a file name (reports/<host>/)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
