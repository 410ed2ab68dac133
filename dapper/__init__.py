"""dapper: generative data augmentation for fine-grained vehicle classification (a reproduction).

The notebooks in ``notebooks/`` tell the study; this package holds the code they call.
Submodules are imported on demand so ``import dapper`` stays cheap.
"""

__version__ = "0.1.0"
