"""The first-VM stage's machinery: build a guest kit, describe a domain, boot it and observe it.

Every libvirt object this package creates is named ``kvmqa-…`` and removed again.
"""
