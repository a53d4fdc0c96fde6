"""The one error an export raises (exporter, gates): the message says why; nothing was written."""


class ExportError(RuntimeError):
    """Export refused; the message says why and nothing was written."""
