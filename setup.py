"""The one compiled part of wqfs: libfuse's request log read in C (wqfs/fuse/_requestlog.c).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built,
wqfs/fuse/requests.py reads the log through ctypes instead (slower, the same answers).
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("wqfs.fuse._requestlog", ["wqfs/fuse/_requestlog.c"], optional=True)])
