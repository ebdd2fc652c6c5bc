"""mmpt.models"""
