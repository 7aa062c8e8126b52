"""The imaging layer: one file's bytes in, one stored array and its provenance out.

``decode.decode_file`` reads and hashes a file and hands its bytes to the first decoder plugin of
``decoders`` that claims them (DICOM, then JPEG/PNG through Pillow); ``window`` maps deep sources to
[0, 1] by the high-bit policy; ``resize`` shapes every image the same way, whatever its dtype. Imports
only the core layer.
"""
