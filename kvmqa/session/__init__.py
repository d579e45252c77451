"""One host during one run: its session (facts, libvirt connection, findings), above config, transport and
gather."""
