"""Command-line client for the sora-relay HTTP API (talks HTTP only; never imports the server package)."""

from sora_relay_cli.api import ApiClient, ApiError, Download, Video, VideoList

__version__ = "0.1.0"

__all__ = ["ApiClient", "ApiError", "Download", "Video", "VideoList", "__version__"]
