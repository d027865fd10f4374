"""Readers: raw geodata in, DataFrames with the project's column names out (extract edge)."""
