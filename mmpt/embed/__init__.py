"""mmpt.embed"""
