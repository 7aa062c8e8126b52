"""The build layer: scan SRC, settle labels and splits, plan, decode on the workers, write and commit the file.

``pipeline.run_build`` is the one orchestrator, and ``api.build`` is ``xraycache.build``: read
``pipeline.py`` first, it names the module of each step. Imports the imaging, analysis and core layers,
never the read side (``xraycache.read``) or the command line.
"""
