"""The chaos drill of ``bench/chaos.py``, one concern a module.

- ``settings``: the two modes (short, full), every timeout and limit, the log events read.
- ``processes``: the gateway processes and their JSON-lines logs; ``clients``: games and calls.
- ``drill``: what one run starts and owns, and views of it (sessions, pairs, a Redis snapshot).
- ``population``: games and patched calls, brought back to full strength after each fault.
- ``liveness``: whether transcripts, game texts, new games and new calls get through.
- ``judging``: pool, leases, claims, ended sessions and process trouble after a fault.
- ``faults``: one module a fault (kills, outage, stall, leaving), and what orphans tell.
- ``report``: each fault's figures as printed, and the summary; ``runner``: the whole run.

It borrows the fakes and the Redis server of ``tests/`` (``peers``, ``redis_server``), which
``bench/chaos.py`` puts on ``sys.path`` before importing it.
"""
