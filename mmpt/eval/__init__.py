"""mmpt.eval"""
