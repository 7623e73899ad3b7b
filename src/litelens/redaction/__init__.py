"""The engine behind `litelens.pipeline.redact`: `text` finds and replaces the kinds in one string,
`walk` applies that to a record's fields (one joined scan, copy-on-write replacement).

Standard library only: this package is part of the zero-dependency core.
"""
