"""The lab's exceptions: one small hierarchy, caught at the edges (CLI, pages, worker).

Every message names the bad value and how to fix it, in one readable line.
"""


class LabError(Exception):
    """Base of every error the lab raises on purpose."""


class DataError(LabError):
    """A data source is missing, unreadable or malformed."""


class SpecError(LabError):
    """An experiment spec is invalid. `layer` is the index of the layer at fault, if any."""

    def __init__(self, message: str, layer: int | None = None, field: str | None = None):
        super().__init__(message)
        self.layer = layer
        self.field = field


class SpecErrors(SpecError):
    """Several spec problems at once, so a builder can show each beside its layer."""

    def __init__(self, errors: list[SpecError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class StoreError(LabError):
    """The store cannot be opened or holds something unexpected."""


class NotFound(LabError):
    """A job, run or experiment id that does not exist."""


class UploadError(LabError):
    """An uploaded file (spec or image) was rejected."""
