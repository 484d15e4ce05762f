"""nonstop.resources"""
