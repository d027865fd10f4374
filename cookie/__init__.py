"""CooKIE region representation learning."""
