"""Actuator control: schedules and rules request outputs; the supervisor alone decides and switches them."""
