"""The functional core: planning, rendering, diagnosis and status as pure functions of typed
data. It imports no kopf, kubernetes or requests (the import contract in .importlinter).
"""
