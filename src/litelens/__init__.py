"""litelens (placeholder package root on the ``transport`` branch).

This file exists only so that this worktree's ``src`` is a regular package that wins over the editable
install of ``/work/main/src`` in the shared venv. On merge, keep main's ``__init__.py`` and drop this one.
"""
