"""oVirt engine and vdsm: protocol clients, probe parsing and install actions."""
