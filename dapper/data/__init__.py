"""Data for the study: the embedded ``toycars`` world, Stanford Cars, and shared image intake.

Submodules are imported on demand (``from dapper.data import toycars``) so importing the package
stays cheap.
"""
