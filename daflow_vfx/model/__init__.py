"""The DA-Flow network (torch only). Build variants with the factories in :mod:`.daflow`."""
