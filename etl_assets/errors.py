"""The exception tree of etl_assets.

Every error the library raises on purpose derives from :class:`EtlError`, so callers can
catch one type; each also derives from the builtin that best describes it, so code that
expects ``ValueError`` or ``TimeoutError`` keeps working::

    EtlError
    ├── SpecError (ValueError)                 a bad extracts file, named by file, resource and key
    ├── SettingsError (ValueError)             a bad environment variable or run config value
    ├── ExtractError                           a run of one extract could not go on
    │   ├── JobTimeoutError (TimeoutError)     the time budget ran out; progress is checkpointed
    │   ├── ExtractAlreadyRunningError         another Dagster run holds the same logical run
    │   ├── SourceError                        the HTTP source misbehaved
    │   │   ├── SourceHTTPError                a status that retrying cannot fix, or retries exhausted
    │   │   ├── SourceUnavailableError         connection errors past the retry budget
    │   │   └── MalformedPageError (ValueError) a page that is not what the spec says
    │   └── WarehouseError                     the database refused a page or a checkpoint
    └── RetryError                             a retry asked for by an operator cannot be done
        ├── RunNotFoundError (LookupError)     no such dw_etl_runs row
        ├── RunConflictError                   the row succeeded, is active, or has no asset
        └── LaunchError                        Dagster could not be asked to run it

Messages name the extract, the position (skip, page, record) and the reason, and never
contain a secret: see :class:`etl_assets.sources.secrets.Redactor`.
"""


class EtlError(Exception):
    """Base of every error etl_assets raises on purpose."""


class SpecError(EtlError, ValueError):
    """The extracts file is invalid; the message names the file, the resource and the key."""


class SettingsError(EtlError, ValueError):
    """An environment variable or a run config value is invalid."""


class CorruptRunError(EtlError, ValueError):
    """A ``dw_etl_runs`` row holds a value this project never writes (edited by hand, or by
    something else); the message names the run, the field and the value."""


class ExtractError(EtlError):
    """A run of one extract stopped before it finished.

    Attributes:
        extract: name of the extract (the asset key).
    """

    def __init__(self, message: str, *, extract: str) -> None:
        super().__init__(message)
        self.extract = extract


class JobTimeoutError(ExtractError, TimeoutError):
    """The run reached its time budget. The checkpoint is saved and the run stays ``running``."""


class ExtractAlreadyRunningError(ExtractError):
    """Another Dagster run is extracting the same logical run right now."""


class SourceError(ExtractError):
    """The HTTP source failed in a way the run cannot work around."""


class SourceHTTPError(SourceError):
    """The source answered with a status that retrying does not fix (or retries ran out)."""

    def __init__(self, message: str, *, extract: str, status_code: int | None) -> None:
        super().__init__(message, extract=extract)
        self.status_code = status_code


class SourceUnavailableError(SourceError):
    """The source could not be reached within the retry budget."""


class MalformedPageError(SourceError, ValueError):
    """A page is not what the extract spec says it is (not JSON, no records, no key...)."""


class WarehouseError(ExtractError):
    """Writing a page or a checkpoint to the warehouse failed."""


class RetryError(EtlError):
    """A retry of a ``dw_etl_runs`` row (API, CLI, Python) cannot be done."""


class RunNotFoundError(RetryError, LookupError):
    """There is no such ``dw_etl_runs`` row."""


class RunConflictError(RetryError):
    """The row succeeded already, is held by an active run, or its extract is not defined."""


class LaunchError(RetryError):
    """The Dagster webserver or instance could not launch the run."""
