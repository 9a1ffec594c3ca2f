"""Materializers ZenML does not already ship: folders as plain tar (`FolderMaterializer`). The
typed artifacts between steps, frozen pydantic models such as `SFTRecord`, `ProxyRow`,
`SelectionSummary` and `SFTReport`, travel through ZenML's own pydantic materializer."""

from materializers.folder import FolderMaterializer

__all__ = ["FolderMaterializer"]
