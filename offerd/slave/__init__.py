"""The offerd slave (agent): offers a machine's resources and runs tasks on it.

See README.md in this package for the pipeline and the words used.
"""

__all__ = ["Slave", "SimulatedFleet"]


def __getattr__(name: str):
    # Lazy, so that reading the slave's flags (e.g. for `offerd --help`) does not
    # import the daemon and its dependencies.
    if name == "Slave":
        from offerd.slave.daemon import Slave

        return Slave
    if name == "SimulatedFleet":
        from offerd.slave.simulate import SimulatedFleet

        return SimulatedFleet
    raise AttributeError(f"module 'offerd.slave' has no attribute {name!r}")
