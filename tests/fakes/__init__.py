"""Stand-ins for the peers of the part under test, for tests that must script
every message that part receives (each module says why a fake and not the real
part): a master for the slave's tests, and a master and a slave for the SDK's."""
