"""The master daemon: frameworks, slaves, offers and status updates (see README.md).

``offerd.master.daemon.Master`` is the entry point; flags live in
``offerd.master.flags``.
"""
