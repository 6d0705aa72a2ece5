"""The exceptions soundalike raises on purpose.

Every message names the file, track or setting involved and the reason, so that the CLI and the web
app can show it as one line without a traceback.
"""

from __future__ import annotations


class SoundalikeError(Exception):
    """Base class for every expected failure."""


class AudioError(SoundalikeError):
    """A file could not be turned into analysable audio.

    ``reason`` is a short machine-readable code (``"empty"``, ``"not-audio"`` …) kept in the catalog
    beside the human message.
    """

    reason = "audio"

    def __init__(self, source: object, detail: str) -> None:
        self.source = str(source)
        self.detail = detail
        super().__init__(f"{self.source}: {detail}")


class UnreadableFileError(AudioError):
    reason = "unreadable"


class EmptyFileError(AudioError):
    reason = "empty"


class NotAudioError(AudioError):
    reason = "not-audio"


class CorruptAudioError(AudioError):
    reason = "corrupt"


class TruncatedAudioError(AudioError):
    reason = "truncated"


class TooShortError(AudioError):
    reason = "too-short"


class TooLongError(AudioError):
    reason = "too-long"


class SilentAudioError(AudioError):
    reason = "silent"


class IngestPathError(SoundalikeError):
    """A path given to ingest does not exist, or holds no audio files: a usage error, nothing is stored."""


class CatalogError(SoundalikeError):
    """The catalog could not be opened, read or written."""


class IndexMismatchError(SoundalikeError):
    """A saved index does not belong to the catalog or the code that loads it."""


class EmptyLibraryError(SoundalikeError):
    """There is nothing to search: no analysed track in the library."""


class TrackNotFoundError(SoundalikeError):
    """No catalog track matches the id or path that was asked for."""


class ConfigError(SoundalikeError):
    """A setting has a value that cannot be used."""


class LabelError(SoundalikeError):
    """A labels file cannot be read or does not fit the library."""


class TuneError(SoundalikeError):
    """Tuning cannot run or found no configuration meeting the target."""


class ClusterError(SoundalikeError):
    """The Dask cluster cannot be started, reached or used."""


class ModelError(SoundalikeError):
    """A shipped model file is missing, altered or cannot be loaded."""


class RadioError(SoundalikeError):
    """A radio or path request that cannot be answered (bad drift, unknown weights, too few tracks)."""
