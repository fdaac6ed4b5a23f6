"""DICOM parsing for ingest: Part 10 scanning, DICOM JSON, UIDs, transfer syntaxes.

Modules: ``part10_scanner`` (streaming scan with frame offsets), ``dicom_json``
(PS3.18 F.2 encoding), ``attributes`` (index columns), ``uids``,
``transfer_syntaxes``, ``frame_layout`` and ``parse_errors``.
"""
