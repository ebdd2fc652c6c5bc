"""mmpt.data"""
