"""The litelens collector: ingest, storage, query API and dashboard (extra "server").

Nothing under `litelens.server` imports LiteLLM, `litelens.callback` or `litelens.otel`: a collector host
need not install them. It meets the other layers only in `litelens.record`.
"""
