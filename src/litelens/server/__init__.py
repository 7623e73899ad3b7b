"""The litelens collector (extra "server"): OTLP and event ingest, stores, query API, dashboard.

Never imports `litelens.otel`, `litelens.callback` or LiteLLM: a collector host need not install them.
"""
