"""FaceStudio: identity-preserving portrait generation with the FACT face adapter."""

__version__ = "0.1.0"
