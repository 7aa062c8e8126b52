"""The compiled kernel (xraycache/imaging/_kernel.c), built by ``pip install .``; everything else is in pyproject.toml.

``optional=True``: where no C compiler is present the install still succeeds, and the NumPy kernel, which
gives the same bytes, runs instead (``xraycache --version`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xraycache.imaging._kernel",
            sources=["xraycache/imaging/_kernel.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
