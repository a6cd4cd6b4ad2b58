"""The error every reader of :mod:`capsjax.data.file_formats` raises: :class:`DataFormatError`.

A module of its own so that the image readers (:mod:`capsjax.data.image_folders`) and the array formats
(:mod:`capsjax.data.file_formats`) share it without importing each other; both modules export it.
"""

from __future__ import annotations

from capsjax.errors import DataError


class DataFormatError(DataError):
    """A data file or folder that cannot be read as its format says (the message names it)."""
