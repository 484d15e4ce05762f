"""nonstop.config"""
