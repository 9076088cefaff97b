"""The two ways a dataset can be unusable, so `data check` can tell "not there" from "there but broken".

Both are `UserError`s: the CLI prints them as one line naming the file (and line or entry) at fault.
"""

from __future__ import annotations

from vicreg_bench.errors import UserError


class DatasetMissingError(UserError):
    """The dataset's folder, or a file its layout requires (a list, a json), does not exist."""


class MalformedDataError(UserError):
    """A file exists but cannot be used: bad XML/json, a label out of range, a listed image that is missing."""
