"""mmpt.store"""
