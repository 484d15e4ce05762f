"""Coordination: the right to hold a resource group as a key under a lease in etcd.

``lease`` is the pure part (timings, what this node may believe at ``now``); ``port`` the
interface every store driver implements; ``etcd`` the real driver (etcd's v3 JSON gateway),
``memory`` the recording one for tests; ``keeper`` the asyncio task that drives a port.
"""
