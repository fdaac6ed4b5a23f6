"""SkyPACS benchmark: one corpus, one load generator, SkyPACS and Orthanc side by side.

Run it with ``python -m bench`` (or ``make bench``); ``--help`` lists the knobs.
"""
