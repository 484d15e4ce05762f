"""nonstop.lab"""
