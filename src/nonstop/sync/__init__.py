"""nonstop.sync"""
