"""comfykit's default plugins: the ``trylast`` answers of the decision hooks, registered as ``core.*``.

Each module is an ordinary plugin (module-level hookimpls), kept together as
llm keeps its ``default_plugins``: :mod:`~comfykit.defaults.workflow` reads,
converts and validates workflows, :mod:`~comfykit.defaults.polling` is the
event source used when no plugin provides live events, and
:mod:`~comfykit.defaults.retry` decides which failures deserve another try.
They cannot be disabled; any plugin that answers the same hook wins.
"""
