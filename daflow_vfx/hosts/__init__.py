"""Host-application glue that needs no host: pure logic used by the DCC plugins in ``plugins/``.

Nothing here imports a host's Python module (``nuke``, ``bpy``): the plugins import these helpers,
not the other way round, so the logic is unit-tested in a plain interpreter.
"""
