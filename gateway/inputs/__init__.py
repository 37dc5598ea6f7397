"""Inputs turn the outside world (GPIO pins, MQTT buttons) into feed commands."""
