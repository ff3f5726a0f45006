"""The shell: Kopf, the work-queue controller, and the API and registry calls. It reads the
cluster, calls the core, and writes what the core decided.
"""
