"""Operations: logging with secret redaction, e-mail alerts, credentials from the OS store, `doctor`.

Each concern is one module; the CLI and the server call into them at their edges.
"""
