"""The command line: the only place that reads settings from the environment and prints."""
