"""The common library of phonepatch: codecs, matching, bus, providers, settings, logging."""
