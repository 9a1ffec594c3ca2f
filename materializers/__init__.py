"""Materializers ZenML does not already ship (none needed yet: folders travel as Path, and the
typed artifacts between steps, frozen pydantic models such as `SFTRecord`, `ProxyRow`,
`SelectionSummary` and `SFTReport`, through ZenML's own pydantic materializer)."""
