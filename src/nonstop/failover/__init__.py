"""nonstop.failover"""
