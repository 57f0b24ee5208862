"""depthscope: see, measure and compare depth routing (Attention Residuals and peers) in transformers."""
__version__ = "0.1.0"
