"""DICOMweb HTTP primitives shared by the STOW, QIDO and WADO services.

``media_types`` (parsing and constants), ``accept`` (Accept negotiation),
``multipart`` (streaming multipart/related), ``urls`` (public base and resource
URLs) and ``status`` (STOW failure and warning reasons).
"""
