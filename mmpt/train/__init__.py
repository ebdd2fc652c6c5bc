"""mmpt.train"""
