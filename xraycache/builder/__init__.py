"""The build layer: scan SRC, settle labels and splits, plan, decode on the workers, write the file.

``pipeline.build`` is ``xraycache.build``. Imports the imaging and core layers (and may import analysis),
never the read side (``xraycache.read``) or the command line.
"""
