"""nonstop.heartbeat"""
