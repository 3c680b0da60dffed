"""The exception tree. Each stage raises its own branch; `transient` drives retries."""


class CountyDataSyncError(Exception):
    """Base of every error this package raises on purpose."""

    transient = False


class ConfigError(CountyDataSyncError):
    """The settings are missing, malformed or contradict each other."""


class SourceError(CountyDataSyncError):
    """The source database could not be read."""


class TransientSourceError(SourceError):
    """A failure worth retrying: dropped connection, deadlock victim, timeout."""

    transient = True


class PermanentSourceError(SourceError):
    """A failure retrying cannot fix: login failed, table missing, permission denied."""


class SchemaError(SourceError):
    """The source table lacks a configured column, or a column has an unusable type."""


class PublishError(CountyDataSyncError):
    """The staging databases could not be written or committed."""


class RunLockedError(CountyDataSyncError):
    """Another sync holds the run lock."""


class CredentialStoreError(CountyDataSyncError):
    """The OS credential store (keyring) is missing or refused to store or remove a password."""
