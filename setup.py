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
            # -ffp-contract=off: no fused multiply-add, so the float64 tables are NumPy's to the bit
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
